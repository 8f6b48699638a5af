"""The `fw-load` command line: one subcommand per module, each with `add_arguments` and `run`."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from fwc.dispatch import dispatch
from fwc.loader.errors import LoaderError

__all__ = ["COMMANDS", "main"]

# subcommand -> (module under fwc.loader, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "inspect": ("commands.inspect", "show an artifact's manifest, program and maps"),
    "apply": ("commands.apply", "load an artifact and attach it to the selected interfaces"),
    "run": ("commands.run", "apply, then follow interfaces as they come and go"),
    "set": ("commands.set", "add and remove members of an address set of the live policy"),
    "status": ("commands.status", "show what is attached where"),
    "stats": ("commands.stats", "show per-rule counters"),
    "events": ("commands.events", "follow the verdict events of log: true rules"),
    "detach": ("commands.detach", "detach programs and remove their pins"),
}


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch(
        "fw-load", "Load fwc artifacts onto a node.", "fwc.loader", COMMANDS, (LoaderError,), argv
    )


if __name__ == "__main__":
    sys.exit(main())
