"""The reference evaluator: packets parsed and judged exactly as docs/semantics.md says."""
