"""Owners of kernel resources: each has a close(), and `with` calls it."""

from __future__ import annotations

from typing import Self


class Closing:
    """A base for classes that own file descriptors or kernel objects."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
