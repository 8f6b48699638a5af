"""Exit handling shared by both command lines."""

import os
import sys


def reader_gone() -> int:
    """The reader of stdout went away (`| head`): say nothing more, and keep the interpreter
    from complaining when it flushes stdout at exit. The exit code is 1."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 1
