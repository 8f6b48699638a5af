"""The compiler's user-facing errors: one line, exit 2."""


class UsageError(Exception):
    """A user's mistake in flags or files: exit 2 with one clear line."""


class ToolError(Exception):
    """The tool or its environment failed (clang missing, kernel refused): exit 2."""
