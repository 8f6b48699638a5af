"""The live update's error: it failed before the flip, so the live generation is untouched."""

from __future__ import annotations

from fwc.loader.errors import LoaderError


class LiveUpdateError(LoaderError):
    """The live update failed before the flip: the live generation is untouched."""
