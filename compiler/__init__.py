"""The policy compiler: YAML in, findings and a verified XDP artifact out."""

from fwc import __version__

__all__ = ["__version__"]
