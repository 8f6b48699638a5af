"""The loader's user-facing error: one line, exit 2."""


class LoaderError(Exception):
    """Anything that stops fw-load: printed as one line, exit 2."""
