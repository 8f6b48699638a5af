"""Reports of a check run: one module per format, each a view of the same findings."""
