"""The artifact contract both halves import: format, sections, layouts, and the typed manifest."""
