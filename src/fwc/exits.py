"""Exit handling shared by both command lines: stdout that went away, filled up or was closed."""

import os
import sys
from typing import Any


class OutputError(Exception):
    """Stdout cannot take what the command writes (closed, /dev/full, an I/O error)."""


def reader_gone() -> int:
    """The reader of stdout went away (`| head`): say nothing more, and keep the interpreter
    from complaining when it flushes stdout at exit. The exit code is 1."""
    _drop_stdout()
    return 1


def output_lost(prog: str, command: str, exc: OutputError) -> int:
    """Stdout failed: one line on stderr, exit 2, and nothing more tried on stdout."""
    _drop_stdout()
    print(f"{prog} {command}: {exc}", file=sys.stderr)
    return 2


def flush_stdout() -> None:
    """Flush stdout now, so a failure is ours to report (at exit it would be a traceback)."""
    if sys.stdout is None:
        raise OutputError("stdout is closed; nothing can be reported")
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise OutputError(f"cannot write to stdout: {exc.strerror or exc}") from None


class GuardedStdout:
    """Stdout as the command sees it: a failed write or flush (not a broken pipe) is an
    OutputError, which the dispatcher words in one line, whichever command printed."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        try:
            written = self.stream.write(text)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise OutputError(f"cannot write to stdout: {exc.strerror or exc}") from None
        return len(text) if written is None else int(written)

    def flush(self) -> None:
        try:
            self.stream.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise OutputError(f"cannot write to stdout: {exc.strerror or exc}") from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def guard_standard_fds() -> bool:
    """Put /dev/null on any of fds 0, 1, 2 that is closed, so no file or pipe the command
    opens lands there and is mistaken for one; whether stdout was open."""
    stdout_open = True
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            stdout_open = stdout_open and fd != 1
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    return stdout_open and sys.stdout is not None


def _drop_stdout() -> None:
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.close(null)
