"""The `fw-load` command line: one subcommand per module, each with `add_arguments` and `run`."""

import sys

from fwc.loader.daemon import fast_apply
from fwc.loader.errors import LoaderError

# the console script imports this module: what it imports counts in every command's time
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["COMMANDS", "LoaderError", "main"]

# subcommand -> (module under fwc.loader, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "inspect": ("commands.inspect", "show an artifact's manifest, program and maps"),
    "apply": ("commands.apply", "load an artifact and attach it to the selected interfaces"),
    "run": ("commands.run", "apply, then follow interfaces as they come and go"),
    "status": ("commands.status", "show what is attached where"),
    "stats": ("commands.stats", "show per-rule counters"),
    "events": ("commands.events", "follow the verdict events of log: true rules"),
    "detach": ("commands.detach", "detach programs and remove their pins"),
}


def main(argv: "Sequence[str] | None" = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    # `fw-load apply` that the daemon answers: no argparse, no command module
    code = fast_apply.run(args)
    if code is not None:
        return code
    from fwc.dispatch import dispatch

    return dispatch(
        "fw-load", "Load fwc artifacts onto a node.", "fwc.loader", COMMANDS, (LoaderError,), args
    )


if __name__ == "__main__":
    sys.exit(main())
