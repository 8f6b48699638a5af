"""`fw-load set`'s whole run as a value: a live set change, its report (text or JSON) and exit
code. The command runs it in its own process; `fw-load run` runs the very same function for a
`set` request that came through its control socket."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fwc.compiler.importers.model import SourceError
from fwc.compiler.importers.plainlist import read_lists
from fwc.loader.apply import recovery
from fwc.loader.apply.manifest_cache import ManifestCache
from fwc.loader.apply.report import Outcome
from fwc.loader.apply.transaction import check_privileges
from fwc.loader.errors import LoaderError
from fwc.loader.kernel.meta import read_meta_map
from fwc.loader.live.set_change import SetChanged, SetDelta, change_set
from fwc.loader.node import pins
from fwc.loader.node.bpffs import require_bpffs
from fwc.terminal import escape_lines

# the options a set request carries (the daemon rebuilds SetOptions from them)
FIELDS = ("set", "add", "remove", "policy")


@dataclass(frozen=True)
class SetOptions:
    set: str
    root: Path
    add: tuple[Path, ...] = ()
    remove: tuple[Path, ...] = ()
    policy: str | None = None  # None: the one policy pinned in this network namespace
    manifests: ManifestCache | None = None
    received: float | None = None  # perf_counter when the daemon received the request


def options(
    fields: Mapping[str, Any], root: str | Path, manifests: ManifestCache | None = None
) -> SetOptions:
    """SetOptions from the command's options (the control request's FIELDS)."""
    return SetOptions(
        set=str(fields["set"]),
        root=pins.pin_root(root),
        add=tuple(Path(p) for p in fields["add"] or ()),
        remove=tuple(Path(p) for p in fields["remove"] or ()),
        policy=str(fields["policy"]) if fields["policy"] else None,
        manifests=manifests,
    )


def delta(opts: SetOptions) -> SetDelta:
    """The prefixes the files list, read as `fwc import list` reads them."""
    sides = []
    for paths in (opts.add, opts.remove):
        try:
            read = read_lists([str(p) for p in paths])
        except SourceError as exc:
            raise LoaderError(str(exc)) from exc
        if read.errors:
            raise LoaderError(f"{read.errors[0]} (and {len(read.errors) - 1} more)")
        sides.append(tuple(read.entries))
    return SetDelta(*sides)


def _policy(root: Path, name: str | None) -> pins.PolicyPins:
    if name is not None:
        found = pins.policy_pins(root, pins.checked_name(name))
        if not found.exists() or not found.mine():
            raise LoaderError(
                f"policy {name!r} is not applied here (nothing pinned at {found.dir})"
            )
        return found
    mine = [p for p in pins.policies(root) if p.mine()]
    if len(mine) != 1:
        what = "no policy is" if not mine else f"{len(mine)} policies are"
        raise LoaderError(f"{what} applied under {root}; name one with --policy")
    return mine[0]


def change(opts: SetOptions) -> tuple[SetChanged, tuple[str, ...]]:
    """The live set change under the pin-root lock, after crash recovery; what recovery did."""
    check_privileges()
    require_bpffs(opts.root)
    edit = delta(opts)
    try:
        with pins.locked(opts.root):
            recovered = tuple(recovery.recover(opts.root, opts.manifests))
            policy = _policy(opts.root, opts.policy)
            meta_id: int | None = None
            if opts.manifests is not None:
                live = opts.manifests.read(policy.meta)
                meta_id = opts.manifests.kept_id(policy.meta)
            else:
                live = read_meta_map(policy.meta)
            done = change_set(opts.root, live, opts.set, edit, opts.received, meta_id)
            if opts.manifests is not None:
                opts.manifests.keep(policy.meta, done.meta_id, done.manifest)
            return done, recovered
    except OSError as exc:
        raise LoaderError(f"{exc.filename or opts.root}: {exc.strerror or exc}") from exc


def as_dict(done: SetChanged, recovered: tuple[str, ...]) -> dict[str, Any]:
    since = done.since_artifact
    return {
        "policy": done.policy,
        "set": done.set,
        "added": done.added,
        "removed": done.removed,
        "members": done.members,
        "since_artifact": {"added": since.added, "removed": since.removed},
        "from_generation": done.from_generation,
        "to_generation": done.to_generation,
        "caught_up": done.caught_up,
        "flipped_at_boottime_ns": done.flipped_at,
        "timings_ms": {k: round(v * 1e3, 3) for k, v in done.timings.items()},
        "recovered": list(recovered),
    }


def render(done: SetChanged, recovered: tuple[str, ...]) -> str:
    since = done.since_artifact
    lines = [
        f"policy {done.policy} set {done.set}: +{done.added} -{done.removed}, "
        f"{done.members} members; generation {done.from_generation} -> {done.to_generation}",
        f"  since the artifact was applied: +{since.added} -{since.removed}",
    ]
    lines += [f"  recovered first: {change}" for change in recovered]
    return escape_lines("\n".join(lines))


@dataclass(frozen=True)
class SetOutcome(Outcome):
    """What the command prints and returns, and the change (None when refused)."""

    changed: SetChanged | None = None


def execute(opts: SetOptions, as_json: bool) -> SetOutcome:
    """Change the set, and say it as `fw-load set` does: exit 0, or 2 with nothing changed."""
    try:
        done, recovered = change(opts)
    except LoaderError as exc:
        return SetOutcome(2, "", f"fw-load set: {exc}\n")
    text = json.dumps(as_dict(done, recovered), indent=2) if as_json else render(done, recovered)
    return SetOutcome(0, text + "\n", "", changed=done)


def now() -> float:
    """The clock `SetOptions.received` reads."""
    return time.perf_counter()
