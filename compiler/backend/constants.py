"""The constants strategy: plans each rule as one straight-line block of literal comparisons."""

from __future__ import annotations

from dataclasses import dataclass

from fwc.compiler.backend.options import DEFAULT_OPTIONS, EVENTS_SIZE, CompileOptions
from fwc.compiler.backend.plan import MapInfo, Plan, counter_slots, special_slots
from fwc.compiler.oracle.ratelimit import gcra
from fwc.compiler.policy.findings import Finding, Location, error
from fwc.compiler.policy.ir import (
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    Action,
    AddressRange,
    Family,
    Policy,
    PortRange,
    Protocol,
    Rule,
)

TEMPLATE = "constants.c.j2"

# sizeof(struct fwc_pkt) in templates/bpf/fwc_parse.h, for the fwc_scratch map;
# read_artifact cross-checks it against the BTF of every build.
PKT_SIZE = 56

# Every rule block ends in a jump to the shared verdict code, and BPF conditional
# jumps reach at most 32,767 instructions: that, not the verifier, bounds this
# strategy. (The verifier's budget is 1,000,000 processed instructions; a
# 1,000-rule policy with port ranges over both families, ~20,600 instructions,
# verifies with ~87,500 processed on kernel 6.18.) `estimated_insns` is an upper
# bound per test, measured from clang 22's output; the limit keeps a margin for
# the parser and for layout differences between clang releases.
MAX_INSNS = 32_000
PARSER_INSNS = 800
SUBPROGRAM_INSNS = 120  # fwc_rate_take or fwc_log with their verdict hooks, clang 22

# A rate_limit rule's packets pass unless the bucket is empty (decided at run time).
_XDP_ACTIONS = {Action.ALLOW: "XDP_PASS", Action.DENY: "XDP_DROP", Action.RATE_LIMIT: "XDP_PASS"}
# sizeof(struct fwc_bucket_key) in templates/bpf/fwc_ratelimit.h, and of its u64 value.
BUCKET_KEY_SIZE = 24
BUCKET_VALUE_SIZE = 8
# sizeof(struct fwc_log_window) in templates/bpf/fwc_log.h.
LOG_WINDOW_SIZE = 16


@dataclass(frozen=True)
class V4Net:
    network: int
    mask: int
    prefix_len: int


@dataclass(frozen=True)
class V6Net:
    net_hi: int
    net_lo: int
    mask_hi: int
    mask_lo: int
    prefix_len: int


@dataclass(frozen=True)
class Condition:
    """One conjunct of a rule's condition; `kind` picks the template macro that prints it."""

    kind: str  # l4 | proto | addr | ports | tcp_flags | icmp
    field: str = ""  # addr: src/dst; ports: sport/dport
    values: tuple[int, ...] = ()  # proto numbers, icmp types
    v4: tuple[V4Net, ...] = ()
    v6: tuple[V6Net, ...] = ()
    ranges: tuple[PortRange, ...] = ()
    mask: int = 0
    want: int = 0


@dataclass(frozen=True)
class RuleBlock:
    id: int
    name: str
    priority: int
    action: str
    xdp_action: str
    tests: tuple[Condition, ...]
    interval: int = 0  # rate_limit rules: GCRA emission interval in ns (0: not rate-limited)
    tolerance: int = 0
    log: bool = False


def estimated_insns(policy: Policy) -> int:
    """An upper bound of the program's instruction count (BPF instructions, not bytes)."""
    rules = sum(_rule_insns(t) for r in policy.rules for t in (*_tests(r), None))
    limited = [r for r in policy.rules if r.action is Action.RATE_LIMIT]
    logged = [r for r in policy.rules if r.log]
    # two 64-bit immediates (4 instructions) per rate_limit rule, one store per log rule,
    # and the shared subprograms once
    extra = 4 * len(limited) + len(logged)
    extra += (SUBPROGRAM_INSNS if limited else 0) + (SUBPROGRAM_INSNS if logged else 0)
    return PARSER_INSNS + rules + extra


def _rule_insns(test: Condition | None) -> int:
    """Instructions of one test; None stands for the block's own slot, action and jump."""
    if test is None:
        return 3
    if test.kind in ("proto", "icmp"):
        return 1 + 2 * len(test.values)
    if test.kind == "ports":
        return 1 + 4 * len(test.ranges)
    if test.kind == "addr":
        v6 = sum(7 if n.prefix_len <= 64 else 12 for n in test.v6)
        return 4 + 4 * len(test.v4) + v6
    return 3


def findings(policy: Policy) -> list[Finding]:
    """Why this strategy cannot compile `policy` (empty when it can)."""
    out: list[Finding] = []
    size = estimated_insns(policy)
    if size > MAX_INSNS:
        out.append(
            error(
                "FWC051",
                f"the policy needs about {size} BPF instructions; the constants strategy "
                f"stops at {MAX_INSNS} (the reach of a BPF jump); use --strategy tables",
                Location(policy.source_file),
            )
        )
    return out


def plan(policy: Policy, dry_run: bool, options: CompileOptions = DEFAULT_OPTIONS) -> Plan:
    """The plan of a policy that `findings` accepts.

    The bucket map exists only when a rule rate-limits, the event maps only when a
    rule logs; `log_rate` is 0 without them.
    """
    slots = counter_slots(policy)
    buckets = options.rate_limit_buckets if _rate_limits(policy) else 0
    log_rate = options.log_rate if any(r.log for r in policy.rules) else 0
    maps = [
        MapInfo("fwc_counters", "percpu_array", 4, 16, len(slots)),
        MapInfo("fwc_scratch", "percpu_array", 4, PKT_SIZE, 1),
    ]
    if buckets:
        maps.append(MapInfo("fwc_buckets", "lru_hash", BUCKET_KEY_SIZE, BUCKET_VALUE_SIZE, buckets))
    if log_rate:
        maps.append(MapInfo("fwc_events", "ringbuf", 0, 0, EVENTS_SIZE))
        maps.append(MapInfo("fwc_log_window", "percpu_array", 4, LOG_WINDOW_SIZE, 1))
    return Plan(
        policy=policy,
        strategy="constants",
        template=TEMPLATE,
        context={
            "policy_name": policy.name,
            "rules": tuple(_block(r) for r in policy.rules),
            "default_action": _XDP_ACTIONS[policy.default_action],
            "dry_run": dry_run,
            **{f"slot_{name}": index for name, index in special_slots(policy).items()},
            "slot_count": len(slots),
            "rate_limit_buckets": buckets,
            "log_rate": log_rate,
            "events_size": EVENTS_SIZE,
        },
        maps=tuple(maps),
        dry_run=dry_run,
        log_rate=log_rate,
        counter_slots=slots,
    )


def _rate_limits(policy: Policy) -> bool:
    return any(r.action is Action.RATE_LIMIT for r in policy.rules)


def _block(rule: Rule) -> RuleBlock:
    params = gcra(rule) if rule.action is Action.RATE_LIMIT else None
    return RuleBlock(
        id=rule.id,
        name=rule.name,
        priority=rule.priority,
        action=rule.action.value,
        xdp_action=_XDP_ACTIONS[rule.action],
        tests=tuple(_tests(rule)),
        interval=params.interval if params else 0,
        tolerance=params.tolerance if params else 0,
        log=rule.log,
    )


def _tests(rule: Rule) -> list[Condition]:
    """The rule's conjuncts, cheapest and most selective first."""
    tests: list[Condition] = []
    protocols = _protocols(rule)
    if protocols is not None:
        tests.append(Condition("proto", values=protocols))
    if rule.needs_l4:
        tests.append(Condition("l4"))
    for field, ranges in (("dport", rule.destination_ports), ("sport", rule.source_ports)):
        merged = _merge_ports(ranges)
        if merged and merged != (PortRange(0, 65535),):
            tests.append(Condition("ports", field=field, ranges=merged))
    if rule.has_tcp_flags:
        mask = rule.tcp_flags_set | rule.tcp_flags_clear
        tests.append(Condition("tcp_flags", mask=mask, want=rule.tcp_flags_set))
    if rule.icmp_types:
        tests.append(Condition("icmp", values=tuple(sorted(set(rule.icmp_types)))))
    for field, nets in (("src", rule.sources), ("dst", rule.destinations)):
        if nets:
            tests.append(_address_test(field, nets))
    return tests


def _protocols(rule: Rule) -> tuple[int, ...] | None:
    """The protocol numbers a matching packet may carry; None when any will do."""
    allowed: set[int] | None = None
    constraints: list[set[int]] = []
    if rule.protocol is not Protocol.ANY and rule.protocol.number is not None:
        constraints.append({rule.protocol.number})
    if rule.has_ports:
        constraints.append({IPPROTO_TCP, IPPROTO_UDP})
    if rule.has_tcp_flags:
        constraints.append({IPPROTO_TCP})
    if rule.icmp_types:
        constraints.append({IPPROTO_ICMP, IPPROTO_ICMPV6})
    for c in constraints:
        allowed = c if allowed is None else allowed & c
    return None if allowed is None else tuple(sorted(allowed))


def _merge_ports(ranges: tuple[PortRange, ...]) -> tuple[PortRange, ...]:
    merged: list[PortRange] = []
    for r in sorted(ranges):
        if merged and r.first <= merged[-1].last + 1:
            last = merged[-1]
            merged[-1] = PortRange(last.first, max(last.last, r.last))
        else:
            merged.append(r)
    return tuple(merged)


def _address_test(field: str, nets: tuple[AddressRange, ...]) -> Condition:
    v4: list[V4Net] = []
    v6: list[V6Net] = []
    for net in dict.fromkeys(nets):
        if net.family is Family.IPV4:
            mask = (0xFFFFFFFF << (32 - net.prefix_len)) & 0xFFFFFFFF
            v4.append(V4Net(net.network, mask, net.prefix_len))
        else:
            mask = ((1 << 128) - 1) ^ ((1 << (128 - net.prefix_len)) - 1)
            v6.append(
                V6Net(
                    net_hi=net.network >> 64,
                    net_lo=net.network & _U64,
                    mask_hi=mask >> 64,
                    mask_lo=mask & _U64,
                    prefix_len=net.prefix_len,
                )
            )
    return Condition("addr", field=field, v4=_widest_v4(v4), v6=_widest_v6(v6))


def _widest_v4(nets: list[V4Net]) -> tuple[V4Net, ...]:
    """All of the family when one entry is /0 (the other entries add nothing)."""
    whole = [n for n in nets if n.prefix_len == 0]
    return tuple(whole[:1] or nets)


def _widest_v6(nets: list[V6Net]) -> tuple[V6Net, ...]:
    whole = [n for n in nets if n.prefix_len == 0]
    return tuple(whole[:1] or nets)


_U64 = (1 << 64) - 1
