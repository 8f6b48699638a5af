"""The Rego gate: the organisation's invariants evaluated over the normalized policy."""
