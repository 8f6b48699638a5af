"""The artifact contract both halves import: format, sections, manifest and table layouts."""
