"""The apply transaction: load, guard the operator's session, pin, swap atomically."""
