"""`fwc import`: an iptables-save or nft JSON ruleset as an fwc policy, exactly or not at all;
or plain address lists as a set that a policy denies."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fwc.artifact import names
from fwc.compiler.errors import UsageError
from fwc.compiler.importers.assemble import Source, assemble
from fwc.compiler.importers.ipset import read_ipsets
from fwc.compiler.importers.iptables import detect_family, read_iptables
from fwc.compiler.importers.model import Gap, SourceError
from fwc.compiler.importers.nft import read_nft
from fwc.compiler.importers.plainlist import SET_NAME, read_lists, render_list
from fwc.compiler.importers.render import Imported, render
from fwc.compiler.progress import Progress

FORMATS = ("iptables", "nft", "list")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("format", choices=FORMATS, help="the ruleset's format")
    parser.add_argument(
        "files",
        metavar="FILE",
        nargs="+",
        help="iptables: iptables-save and/or ip6tables-save output; nft: `nft -j list ruleset`; "
        "list: files of one address or CIDR a line (# and ; start comments)",
    )
    parser.add_argument(
        "--ipset",
        metavar="FILE",
        action="append",
        default=None,
        help="`ipset save` output with the sets the rules name (iptables; repeatable)",
    )
    parser.add_argument(
        "-o", "--output", metavar="FILE", help="write the policy here (default: stdout)"
    )
    parser.add_argument("--name", default="imported", help="the policy's name (default: imported)")
    parser.add_argument(
        "--lossy",
        action="store_true",
        help="write the policy even when rules cannot be expressed: each is left out, "
        "listed on stderr and in the policy's comments, and the policy differs from the source",
    )
    parser.add_argument(
        "--set",
        dest="set_name",
        default="blocklist",
        metavar="NAME",
        help="list: the set's name (default: blocklist)",
    )
    parser.add_argument(
        "--priority",
        type=int,
        default=10,
        metavar="N",
        help="list: the priority of the rule that denies the set (default: 10)",
    )


def run(args: argparse.Namespace) -> int:
    for path in [*args.files, *(args.ipset or [])]:
        if not Path(path).is_file():
            raise UsageError(f"{path}: no such file")
    if args.format == "list":
        return _run_list(args)
    try:
        with Progress("fwc import") as progress:
            progress.stage("read and flatten")
            result = _import(args)
    except SourceError as exc:
        raise UsageError(str(exc)) from None
    warned = {(flat.origin, w): None for flat in result.rules for w in flat.warnings}
    for origin, warning in warned:
        print(f"warning: {origin}: {warning}", file=sys.stderr)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    if result.gaps and not args.lossy:
        for gap in result.gaps:
            print(_finding(gap), file=sys.stderr)
        print(
            f"fwc import: {len(result.gaps)} rule(s) cannot be expressed exactly; "
            "nothing written (--lossy writes the rest, marked as different)",
            file=sys.stderr,
        )
        return 1
    for gap in result.gaps:
        print(_finding(gap) + " [left out]", file=sys.stderr)
    if result.gaps:
        print(
            "fwc import: the policy written DIFFERS from the source: see the rules left out",
            file=sys.stderr,
        )
    _write(args, render(result, list(args.files), args.lossy))
    return 0


def _run_list(args: argparse.Namespace) -> int:
    if args.ipset:
        raise UsageError("list takes no --ipset")
    if not SET_NAME.fullmatch(args.set_name):
        raise UsageError(
            f"--set {args.set_name}: not a set name (letters, digits and _, at most 58)"
        )
    if not names.is_policy_name(args.name):
        raise UsageError(f"--name {args.name}: not a policy name ({names.WORDS})")
    if not 0 <= args.priority <= 65535:
        raise UsageError(f"--priority {args.priority}: not in 0..65535")
    try:
        with Progress("fwc import") as progress:
            progress.stage("read")
            result = read_lists(list(args.files))
    except SourceError as exc:
        raise UsageError(str(exc)) from None
    for problem in result.problems:
        left = " [left out]" if problem.error and args.lossy else ""
        print(f"{problem}{left}", file=sys.stderr)
    if result.errors and not args.lossy:
        print(
            f"fwc import: {len(result.errors)} line(s) are not addresses; nothing written "
            "(--lossy writes the rest, marked as different)",
            file=sys.stderr,
        )
        return 1
    if not result.entries:
        raise UsageError("the lists hold no address: an empty set would match every source")
    _write(args, render_list(result, args.name, args.set_name, args.priority, args.lossy))
    return 0


def _write(args: argparse.Namespace, text: str) -> None:
    if args.output:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"{args.output}: cannot write: {exc.strerror}") from None
    else:
        sys.stdout.write(text)


def _finding(gap: Gap) -> str:
    effect = "verdicts change" if gap.verdicts else "verdicts unchanged"
    return f"{gap.origin}: {gap.reason} ({effect}): {gap.text}"


def _import(args: argparse.Namespace) -> Imported:
    if args.format == "nft":
        if len(args.files) != 1 or args.ipset:
            raise UsageError("nft takes one FILE (`nft -j list ruleset`) and no --ipset")
        return assemble(args.name, [Source(read_nft(args.files[0]), "nft_h")])
    if len(args.files) > 2:
        raise UsageError("iptables takes one or two FILEs (iptables-save, ip6tables-save)")
    ipsets = read_ipsets(args.ipset) if args.ipset else None
    families: list[int] = []
    sources = []
    for path in args.files:
        try:
            family = detect_family(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"{path}: cannot read: {exc}") from None
        if family in families:
            raise UsageError(f"{path}: a second IPv{family} ruleset; give one of each family")
        families.append(family)
        sources.append(Source(read_iptables(path, ipsets, family), f"v{family}_l"))
    return assemble(args.name, sources)
