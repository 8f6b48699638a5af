"""The constants strategy: plans each rule as one straight-line block of literal comparisons."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath
from typing import ClassVar

from fwc.artifact.ifclass import IFACES_ENTRIES, IFACES_HASH_ENTRIES
from fwc.compiler.backend.options import DEFAULT_OPTIONS, EVENTS_SIZE, CompileOptions
from fwc.compiler.backend.plan import (
    MapInfo,
    Plan,
    PlanError,
    counter_slots,
    interface_maps,
    planned_interfaces,
    program_name,
    rate_limit_slots,
    special_slots,
)
from fwc.compiler.oracle.ratelimit import gcra
from fwc.compiler.policy.findings import Finding, Location, error
from fwc.compiler.policy.interfaces import NO_INTERFACES, InterfaceClasses
from fwc.compiler.policy.ir import (
    CT_STATES,
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
CT_LOOKUP_INSNS = 160  # fwc_ct_lookup (templates/bpf/fwc_ct.h), clang 22
# a state test: the cached state, the call when it is not there yet, the mask
STATE_TEST_INSNS = 8

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
    """One conjunct of a rule's condition; `kind` picks the template macro that prints it,
    `insns` bounds the BPF instructions that macro's C compiles to (set where it is built)."""

    kind: str  # l4 | proto | addr | ports | tcp_flags | icmp | iface | state
    insns: int = 3
    field: str = ""  # addr: src/dst; ports: sport/dport
    values: tuple[int, ...] = ()  # proto numbers, icmp types
    v4: tuple[V4Net, ...] = ()
    v6: tuple[V6Net, ...] = ()
    ranges: tuple[PortRange, ...] = ()
    mask: int = 0
    want: int = 0


@dataclass(frozen=True)
class RuleBlock:
    """One rule's block of C: its tests, its verdict, and what its heading comment shows."""

    id: int
    name: str
    priority: int
    action: str
    xdp_action: str
    tests: tuple[Condition, ...]
    where: str  # policy file:line; the file's name only, so the C does not depend on the cwd
    sources: tuple[str, ...]  # CIDRs, for the comment
    destinations: tuple[str, ...]
    interval: int = 0  # rate_limit rules: GCRA emission interval in ns (0: not rate-limited)
    tolerance: int = 0
    limited_slot: int = 0  # rate_limit rules: the rate_limit_pass counter slot (drop: next)
    log: bool = False
    interfaces: tuple[str, ...] = ()  # the rule's patterns, `!` ones last, for the comment
    states: tuple[str, ...] = ()  # the connection states the rule names, for the comment


@dataclass(frozen=True)
class ConstantsProgram:
    """The variables of constants.c.j2."""

    template: ClassVar[str] = TEMPLATE
    program_name: str
    policy_name: str
    rules: tuple[RuleBlock, ...]
    default_action: str
    dry_run: bool
    slot_default: int
    slot_malformed: int
    slot_non_ip: int
    slot_would_drop: int
    slot_count: int
    rate_limit_buckets: int
    log_rate: int
    events_size: int
    iface_entries: int = 0  # fwc_ifaces' size; 0: no rule names interfaces, no lookup
    iface_classes: int = 0  # the interface classes the rules tell apart
    iface_hash_entries: int = IFACES_HASH_ENTRIES
    conntrack: bool = False  # a rule has `state`: fwc_ct.h and its kfuncs are in the program


# the block's own slot, action and jump
BLOCK_INSNS = 3


def estimated_insns(policy: Policy) -> int:
    """An upper bound of the program's instruction count (BPF instructions, not bytes)."""
    return _estimated_insns(policy, _blocks(policy))


def _estimated_insns(policy: Policy, blocks: list[RuleBlock]) -> int:
    rules = sum(BLOCK_INSNS + sum(t.insns for t in b.tests) for b in blocks)
    limited = [r for r in policy.rules if r.action is Action.RATE_LIMIT]
    logged = [r for r in policy.rules if r.log]
    # two 64-bit immediates and a slot (5 instructions) per rate_limit rule, one store per
    # log rule, and the shared subprograms once
    extra = 5 * len(limited) + len(logged)
    extra += (SUBPROGRAM_INSNS if limited else 0) + (SUBPROGRAM_INSNS if logged else 0)
    extra += CT_LOOKUP_INSNS if any(r.has_state for r in policy.rules) else 0
    return PARSER_INSNS + rules + extra


def findings(policy: Policy) -> list[Finding]:
    """Why this strategy cannot compile `policy` (empty when it can)."""
    return _refusals(policy, estimated_insns(policy))


def _refusals(policy: Policy, size: int) -> list[Finding]:
    if size <= MAX_INSNS:
        return []
    return [
        error(
            "FWC051",
            f"the policy needs about {size} BPF instructions; the constants strategy "
            f"stops at {MAX_INSNS} (the reach of a BPF jump); use --strategy tables",
            Location(policy.source_file),
        )
    ]


def plan(policy: Policy, dry_run: bool, options: CompileOptions = DEFAULT_OPTIONS) -> Plan:
    """The plan of a policy that `findings` accepts.

    The bucket map exists only when a rule rate-limits, the event maps only when a
    rule logs; `log_rate` is 0 without them. Raises PlanError when the program would be
    too large for this strategy.
    """
    interfaces = planned_interfaces(policy)
    blocks = _blocks(policy, interfaces)
    refused = _refusals(policy, _estimated_insns(policy, blocks))
    if refused:
        raise PlanError(refused)
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
    iface_entries = IFACES_ENTRIES if interfaces.used else 0
    if iface_entries:
        maps += interface_maps()
    special = special_slots(policy)
    return Plan(
        policy=policy,
        strategy="constants",
        program=ConstantsProgram(
            program_name=program_name(policy),
            policy_name=policy.name,
            rules=tuple(blocks),
            default_action=_XDP_ACTIONS[policy.default_action],
            dry_run=dry_run,
            slot_default=special["default"],
            slot_malformed=special["malformed"],
            slot_non_ip=special["non_ip"],
            slot_would_drop=special["would_drop"],
            slot_count=len(slots),
            rate_limit_buckets=buckets,
            log_rate=log_rate,
            events_size=EVENTS_SIZE,
            iface_entries=iface_entries,
            iface_classes=len(interfaces.classes),
            conntrack=any(r.has_state for r in policy.rules),
        ),
        maps=tuple(maps),
        dry_run=dry_run,
        log_rate=log_rate,
        counter_slots=slots,
        interfaces=interfaces,
    )


def _rate_limits(policy: Policy) -> bool:
    return any(r.action is Action.RATE_LIMIT for r in policy.rules)


def _blocks(policy: Policy, interfaces: InterfaceClasses = NO_INTERFACES) -> list[RuleBlock]:
    limited = rate_limit_slots(policy)
    return [_block(r, limited.get(r.id, 0), interfaces) for r in policy.rules]


def _block(rule: Rule, limited_slot: int, interfaces: InterfaceClasses) -> RuleBlock:
    params = gcra(rule) if rule.action is Action.RATE_LIMIT else None
    return RuleBlock(
        id=rule.id,
        name=rule.name,
        priority=rule.priority,
        action=rule.action.value,
        xdp_action=_XDP_ACTIONS[rule.action],
        tests=tuple(_tests(rule, interfaces)),
        where=f"{PurePath(rule.location.file).name}:{rule.location.line}",
        sources=tuple(str(n) for n in dict.fromkeys(rule.sources)),
        destinations=tuple(str(n) for n in dict.fromkeys(rule.destinations)),
        interval=params.interval if params else 0,
        tolerance=params.tolerance if params else 0,
        limited_slot=limited_slot,
        log=rule.log,
        interfaces=(*rule.interfaces, *("!" + g for g in rule.not_interfaces)),
        states=tuple(s for s, bit in CT_STATES.items() if rule.ct_states & bit),
    )


def _tests(rule: Rule, interfaces: InterfaceClasses = NO_INTERFACES) -> list[Condition]:
    """The rule's conjuncts, cheapest and most selective first."""
    tests: list[Condition] = []
    if rule.has_interfaces:
        mask = interfaces.rule_mask(rule) if interfaces.used else 0
        tests.append(Condition("iface", 4, mask=mask))
    protocols = _protocols(rule)
    if protocols is not None:
        tests.append(Condition("proto", 1 + 2 * len(protocols), values=protocols))
    if rule.needs_l4:
        tests.append(Condition("l4"))
    for field, ranges in (("dport", rule.destination_ports), ("sport", rule.source_ports)):
        merged = _merge_ports(ranges)
        if merged and merged != (PortRange(0, 65535),):
            tests.append(Condition("ports", 1 + 4 * len(merged), field=field, ranges=merged))
    if rule.has_tcp_flags:
        mask = rule.tcp_flags_set | rule.tcp_flags_clear
        tests.append(Condition("tcp_flags", mask=mask, want=rule.tcp_flags_set))
    if rule.icmp_types:
        types = tuple(sorted(set(rule.icmp_types)))
        tests.append(Condition("icmp", 1 + 2 * len(types), values=types))
    for field, nets in (("src", rule.sources), ("dst", rule.destinations)):
        if nets:
            tests.append(_address_test(field, nets))
    if rule.has_state:
        # last: the only test that may cost a conntrack lookup, made once per packet
        tests.append(Condition("state", STATE_TEST_INSNS, mask=rule.ct_states))
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
    v4s, v6s = _widest_v4(v4), _widest_v6(v6)
    insns = 4 + 4 * len(v4s) + sum(7 if n.prefix_len <= 64 else 12 for n in v6s)
    return Condition("addr", insns, field=field, v4=v4s, v6=v6s)


def _widest_v4(nets: list[V4Net]) -> tuple[V4Net, ...]:
    """All of the family when one entry is /0 (the other entries add nothing)."""
    whole = [n for n in nets if n.prefix_len == 0]
    return tuple(whole[:1] or nets)


def _widest_v6(nets: list[V6Net]) -> tuple[V6Net, ...]:
    whole = [n for n in nets if n.prefix_len == 0]
    return tuple(whole[:1] or nets)


_U64 = (1 << 64) - 1
