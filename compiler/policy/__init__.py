"""The policy front end: YAML with places, the JSON Schema, semantic checks, and the IR."""
