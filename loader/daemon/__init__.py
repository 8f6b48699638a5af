"""`fw-load run`: the daemon loop, its control socket and its metrics."""
