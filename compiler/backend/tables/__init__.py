"""The tables strategy: per-field classification tables seeded by the loader."""
