"""`fw-load apply` handed to `fw-load run` without argparse: the request cmd_apply builds, from
the command lines this module reads fully; any other command line goes to the full parser."""

import os
import sys

from fwc.exits import reader_gone
from fwc.loader.daemon import control
from fwc.loader.errors import LoaderError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

# apply's flags as cmd_apply.add_arguments declares them (--no-daemon, -h and the rest: the
# full parser); a switch -> its request key
_SWITCHES = {
    "--force": "force",
    "--offload": "offload",
    "--replace-foreign": "replace_foreign",
    "--dry-run": "dry_run",
    "--no-live-update": "no_live_update",
    "--json": "json",
}
_VALUED = ("--expect-hash", "--keep-access", "--pin-root")
# the command-line options a request carries (the daemon rebuilds ApplyOptions from them)
FIELDS = (
    "artifact",
    "expect_hash",
    "keep_access",
    "force",
    "offload",
    "replace_foreign",
    "dry_run",
    "no_live_update",
)


def apply_request(options: "Mapping[str, object]", root: str, as_json: bool) -> dict[str, object]:
    """The control request of `fw-load apply`: its FIELDS (the artifact's path made absolute),
    the pin root, and this command's SSH session, which the daemon's lockout check must
    protect."""
    return {
        "command": "apply",
        "root": root,
        "options": {**options, "artifact": os.path.abspath(str(options["artifact"]))},
        "ssh_connection": os.environ.get("SSH_CONNECTION"),
        "json": as_json,
    }


def request(argv: "Sequence[str]") -> dict[str, object] | None:
    """What cmd_apply.request sends for `fw-load ARGV`; None unless argv is `apply` with
    exact flag names, values that do not start with "-" (or given as --flag=value) and one
    artifact."""
    if not argv or argv[0] != "apply":
        return None
    artifact: str | None = None
    values: dict[str, str | None] = dict.fromkeys(_VALUED)
    keep_access: list[str] = []
    switches = dict.fromkeys(_SWITCHES.values(), False)
    i = 1
    while i < len(argv):
        token = argv[i]
        i += 1
        if not token.startswith("-"):
            if artifact is not None:
                return None
            artifact = token
            continue
        if token in _SWITCHES:
            switches[_SWITCHES[token]] = True
            continue
        name, equals, value = token.partition("=")
        if name not in _VALUED:
            return None
        if not equals:
            if i == len(argv) or argv[i].startswith("-"):
                return None
            value = argv[i]
            i += 1
        if name == "--keep-access":
            keep_access.append(value)
        else:
            values[name] = value
    if artifact is None:
        return None
    options = {
        "artifact": artifact,
        "expect_hash": values["--expect-hash"],
        "keep_access": keep_access,
        "force": switches["force"],
        "offload": switches["offload"],
        "replace_foreign": switches["replace_foreign"],
        "dry_run": switches["dry_run"],
        "no_live_update": switches["no_live_update"],
    }
    return apply_request(options, control.pin_root(values["--pin-root"]), switches["json"])


def run(argv: "Sequence[str]") -> int | None:
    """The exit code of `fw-load ARGV` answered by the daemon, as cmd_apply.run and dispatch
    give it; None when this module does not read argv or no daemon answers."""
    try:
        try:
            message = request(argv)
        except OSError:
            return None  # no working directory: the full route reports it
        if message is None:
            return None
        reply = control.ask(str(message["root"]), message)
        if reply is None:
            return None
        return said(reply)
    except LoaderError as exc:
        print(f"fw-load apply: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return reader_gone()


def said(reply: dict[str, object]) -> int:
    """Print the daemon's reply as the command's own output; its exit code."""
    sys.stdout.write(str(reply.get("stdout", "")))
    sys.stderr.write(str(reply.get("stderr", "")))
    code = reply.get("code")
    return code if isinstance(code, int) else 2
