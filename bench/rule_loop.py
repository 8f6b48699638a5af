"""The rule-loop baseline (bench/rule_loop.c): build it, fill its rule map from a policy, time it.

Run `python bench/rule_loop.py` for ns/packet at 10..50k rules beside a parse-only program.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fwc.compiler.policy.ir import Action, AddressRange, Policy, PortRange, Rule
from fwc.loader.kernel import libbpf
from fwc.loader.kernel.resource import Closing

BENCH = Path(__file__).resolve().parent
SOURCE = BENCH / "rule_loop.c"
HEADERS = BENCH.parent / "templates" / "bpf"
CLANG = "/usr/bin/clang-22"
PROGRAM = "rl_xdp"

XDP_DROP, XDP_PASS = 1, 2
RL_PORTS, RL_TCP_FLAGS, RL_ICMP_TYPE = 0x01, 0x02, 0x04
# struct rl_rule and struct rl_config in rule_loop.c, native byte order.
RULE = struct.Struct("=8Q4H8B2I")
CONFIG = struct.Struct("=II")
KEY = struct.Struct("=I")
_ALL_PORTS = PortRange(0, 65535)
# The bpf_loop helper runs at most 1 << 23 iterations per call.
BPF_LOOP_MAX = 1 << 23


class UnsupportedRule(ValueError):
    """A policy rule the rule-loop baseline cannot express (rate limits)."""


@dataclass(frozen=True)
class Variant:
    """One build of rule_loop.c."""

    name: str
    bpf_loop: bool = False
    parse_only: bool = False
    inline: bool = False

    @property
    def defines(self) -> list[str]:
        return [
            f"-DRL_BPF_LOOP={int(self.bpf_loop)}",
            f"-DRL_PARSE_ONLY={int(self.parse_only)}",
            f"-DRL_INLINE={int(self.inline)}",
        ]


INLINE_LOOP = Variant("rule-loop (for, inline)", inline=True)
FOR_LOOP = Variant("rule-loop (for)")
BPF_LOOP = Variant("rule-loop (bpf_loop)", bpf_loop=True)
PARSE_ONLY = Variant("parse-only", parse_only=True)


def _address_words(r: AddressRange | None) -> tuple[int, int, int, int]:
    """(net_hi, net_lo, mask_hi, mask_lo) as rl_rule holds them; None matches everything."""
    if r is None:
        return 0, 0, 0, 0
    width = r.family.width
    mask = ((1 << width) - 1) ^ ((1 << (width - r.prefix_len)) - 1)
    m64 = (1 << 64) - 1
    return r.network >> 64, r.network & m64, mask >> 64, mask & m64


def rule_entries(rule: Rule) -> list[bytes]:
    """The single-valued rl_rule records for one policy rule: the product of its lists."""
    if rule.action is Action.RATE_LIMIT:
        raise UnsupportedRule(f"rule `{rule.name}`: the rule loop has no rate limiter")
    action = XDP_PASS if rule.action is Action.ALLOW else XDP_DROP
    flags = (
        (RL_PORTS if rule.has_ports else 0)
        | (RL_TCP_FLAGS if rule.has_tcp_flags else 0)
        | (RL_ICMP_TYPE if rule.icmp_types else 0)
    )
    sources: Sequence[AddressRange | None] = rule.sources or (None,)
    destinations: Sequence[AddressRange | None] = rule.destinations or (None,)
    out = []
    for src, dst in itertools.product(sources, destinations):
        families = {a.family for a in (src, dst) if a is not None}
        if len(families) > 1:
            continue  # an IPv4 source and an IPv6 destination: no packet has both
        family = int(families.pop()) if families else 0
        for sp, dp, icmp in itertools.product(
            rule.source_ports or (_ALL_PORTS,),
            rule.destination_ports or (_ALL_PORTS,),
            rule.icmp_types or (0,),
        ):
            out.append(
                RULE.pack(
                    *_address_words(src),
                    *_address_words(dst),
                    sp.first,
                    sp.last,
                    dp.first,
                    dp.last,
                    family,
                    rule.protocol.number or 0,
                    flags,
                    rule.tcp_flags_set,
                    rule.tcp_flags_clear,
                    icmp,
                    action,
                    0,
                    rule.id,
                    0,
                )
            )
    return out


def policy_entries(policy: Policy) -> list[bytes]:
    """Every rule's records in evaluation order."""
    return [e for rule in policy.rules for e in rule_entries(rule)]


def build(variant: Variant, max_rules: int, out_dir: Path) -> Path:
    """Compile rule_loop.c for `max_rules` map slots; returns the object's path."""
    tag = "".join(d[-1] for d in variant.defines)
    out = out_dir / f"rule_loop-{tag}-{max_rules}.o"
    if not out.exists():
        subprocess.run(
            [
                CLANG,
                "-O2",
                "-g",
                "-target",
                "bpf",
                "-Wall",
                f"-I{HEADERS}",
                f"-DRL_MAX_RULES={max_rules}",
                *variant.defines,
                "-c",
                str(SOURCE),
                "-o",
                str(out),
            ],
            check=True,
            capture_output=True,
        )
    return out


class RuleLoop(Closing):
    """A loaded rule-loop program with its rule map filled; owns its fds until `close()`."""

    def __init__(self, obj_path: Path, entries: Sequence[bytes], default: Action) -> None:
        self._obj = libbpf.Object(obj_path.read_bytes())
        try:
            with libbpf.capture_messages() as messages:
                try:
                    self._obj.load()
                except libbpf.KernelError as exc:
                    log = libbpf.verifier_log(messages)
                    raise libbpf.KernelError(f"verifier: {_reason(log)}", exc.errno, log) from exc
            self.prog_fd = self._obj.program_fd(PROGRAM)
            self.insns = self._obj.program_insn_count(PROGRAM)
            rules_fd = self._obj.map_fd("rl_rules")
            for index, record in enumerate(entries):
                libbpf.map_update(rules_fd, KEY.pack(index), record)
            default_action = XDP_PASS if default is Action.ALLOW else XDP_DROP
            config = CONFIG.pack(len(entries), default_action)
            libbpf.map_update(self._obj.map_fd("rl_config"), KEY.pack(0), config)
            self.stats_fd = self._obj.map_fd("rl_stats")
        except BaseException:
            self._obj.close()
            raise

    def stats(self) -> tuple[int, int]:
        """(passed, dropped) packets so far, summed over CPUs."""
        out = []
        for key in (0, 1):
            raw = libbpf.map_lookup(self.stats_fd, KEY.pack(key), 8 * _cpus()) or b""
            out.append(sum(struct.unpack(f"={len(raw) // 8}Q", raw)))
        return out[0], out[1]

    @classmethod
    def for_policy(
        cls, policy: Policy, variant: Variant, out_dir: Path, slots: int | None = None
    ) -> RuleLoop:
        """Build and load `variant` sized for `policy` (or `slots` map entries)."""
        entries = [] if variant.parse_only else policy_entries(policy)
        obj = build(variant, max(1, slots or len(entries)), out_dir)
        return cls(obj, entries, policy.default_action)

    def test_run(self, frame: bytes, repeat: int = 1) -> tuple[int, int]:
        """(XDP verdict, mean ns per run) from BPF_PROG_TEST_RUN."""
        retval, duration, _ = libbpf.prog_test_run(self.prog_fd, frame, repeat)
        return retval, duration

    def close(self) -> None:
        self._obj.close()


def _reason(log: str) -> str:
    """The verifier's own reason for refusing: its last line that is neither code nor stats."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    words = [line for line in lines if not line[0].isdigit() and not line.startswith("processed ")]
    return (words or lines or ["no log"])[-1]


def _cpus() -> int:
    text = Path("/sys/devices/system/cpu/possible").read_text().strip()
    return max(int(part.split("-")[-1]) for part in text.split(",")) + 1


def verifier_cap(variant: Variant, out_dir: Path, start: int = 64) -> tuple[int, str]:
    """About the largest rule-map size (within 1/8) whose build of `variant` the verifier loads.

    Returns (size, the verifier's last words on the first size it refused).
    """
    good, bad, reason = 0, 0, ""
    size = start
    while not bad or bad - good > max(16, good // 8):
        try:
            RuleLoop(build(variant, size, out_dir), [], Action.DENY).close()
            good = size
        except libbpf.KernelError as exc:
            bad, reason = size, str(exc)
        size = (good + bad) // 2 if bad else size * 2
        if not bad and size > BPF_LOOP_MAX:
            break
    return good, reason


# ---- the micro benchmark ------------------------------------------------------------


def _time(prog: RuleLoop, frames: Iterable[tuple[str, bytes]], repeat: int) -> dict[str, float]:
    per: dict[str, list[int]] = {}
    for label, frame in frames:
        _, ns = prog.test_run(frame, repeat)
        per.setdefault(label, []).append(ns)
    out = {label: statistics.fmean(v) for label, v in per.items()}
    out["all"] = statistics.fmean(ns for v in per.values() for ns in v)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    sys.path.insert(0, str(BENCH))
    from policies import load_policy, make_policy_yaml, make_traffic

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="10,100,1000,10000,50000")
    ap.add_argument("--repeat", type=int, default=10000)
    ap.add_argument("--per-label", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-cap", action="store_true", help="skip the verifier cap search")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]

    results: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="fwc-rule-loop-") as tmp:
        out_dir = Path(tmp)
        caps: dict[Variant, int] = {}
        for variant in () if args.no_cap else (INLINE_LOOP, FOR_LOOP):
            caps[variant], reason = verifier_cap(variant, out_dir)
            print(
                f"{variant.name}: the verifier loads up to ~{caps[variant]} rule slots; "
                f"beyond: {reason}",
                flush=True,
            )
        print(
            f"BPF_PROG_TEST_RUN, repeat {args.repeat}, {args.per_label} frames per label; "
            "ns/packet (first / late / default / all)"
        )
        print(
            f"{'rules':>6} {'slots':>7}  {'program':<24} {'first':>9} {'late':>9} "
            f"{'default':>9} {'all':>9}  {'x parse':>8}"
        )
        for n in sizes:
            policy = load_policy(make_policy_yaml(n, args.seed))
            # Past 10k rules a late packet costs milliseconds: fewer frames keep the run short.
            frames = make_traffic(policy, args.seed, args.per_label if n <= 10000 else 2)
            slots = len(policy_entries(policy))
            baseline = 0.0
            for variant in (PARSE_ONLY, INLINE_LOOP, FOR_LOOP, BPF_LOOP):
                cap = caps.get(variant, 0)
                if cap and slots > cap:
                    row: dict[str, object] = {"refused": f"over the verifier cap (~{cap} slots)"}
                else:
                    try:
                        t0 = time.monotonic()
                        with RuleLoop.for_policy(policy, variant, out_dir) as prog:
                            load_s = time.monotonic() - t0
                            row = dict(_time(prog, frames, args.repeat), load_s=load_s)
                    except libbpf.KernelError as exc:
                        row = {"refused": str(exc)}
                row.update(rules=n, slots=slots, program=variant.name)
                results.append(row)
                if variant.parse_only:
                    baseline = float(row["all"])  # type: ignore[arg-type]
                _print_row(row, baseline)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def _print_row(row: dict[str, object], baseline: float) -> None:
    head = f"{row['rules']:>6} {row['slots']:>7}  {row['program']!s:<24}"
    if "refused" in row:
        print(f"{head} refused: {row['refused']}")
        return
    cells = " ".join(f"{float(row[k]):>9.1f}" for k in ("first", "late", "default", "all"))  # type: ignore[arg-type]
    ratio = float(row["all"]) / baseline if baseline else 0.0  # type: ignore[arg-type]
    print(f"{head} {cells}  {ratio:>7.1f}x", flush=True)


if __name__ == "__main__":
    sys.exit(main())
