"""The `fwc` command line: one subcommand per module, each with `add_arguments` and `run`."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from fwc.compiler.errors import ToolError, UsageError
from fwc.dispatch import dispatch

__all__ = ["COMMANDS", "ToolError", "UsageError", "main"]

# subcommand -> (module under fwc.compiler, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "check": ("commands.check", "gate policies: schema, semantics and Rego invariants"),
    "schema": ("commands.schema", "print the policy JSON Schema"),
    "compile": ("commands.compile", "compile a policy to an XDP artifact"),
    "test": ("commands.test", "run packet cases against a policy"),
    "explain": ("commands.explain", "explain the verdict for one packet"),
    "diff": ("commands.diff", "the packets whose verdict changes between two policies"),
    "import": ("commands.import_", "an iptables-save or nft ruleset as a policy, exactly"),
}


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch(
        "fwc",
        "Policy-as-code XDP firewall.",
        "fwc.compiler",
        COMMANDS,
        (UsageError, ToolError),
        argv,
    )


if __name__ == "__main__":
    sys.exit(main())
