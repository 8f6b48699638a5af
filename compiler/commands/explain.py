"""`fwc explain`: the verdict for one packet, the rule that decides it, and the near misses."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from fwc.compiler.check import CheckOptions, check_file
from fwc.compiler.errors import UsageError
from fwc.compiler.oracle.evaluate import XDP_PASS
from fwc.compiler.oracle.explain import (
    Explanation,
    address_text,
    describe_packet,
    explain,
    protocol_name,
    untracked_why,
)
from fwc.compiler.oracle.frames import FrameError, build_frame, fields_from_mapping
from fwc.compiler.oracle.packet import Packet
from fwc.compiler.policy.findings import Severity
from fwc.compiler.policy.ir import CT_STATES, Policy, Rule
from fwc.compiler.reports.text import line
from fwc.terminal import escape_lines

# flag -> packet field (docs/testing-policies.md names the fields)
_FIELDS = {
    "src": "src",
    "dst": "dst",
    "proto": "proto",
    "sport": "sport",
    "dport": "dport",
    "flags": "flags",
    "icmp_type": "icmp_type",
    "vlan": "vlan",
    "fragment": "fragment",
    "ext_header": "ext_headers",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("policy", metavar="POLICY", help="the policy file")
    parser.add_argument("--src", help="source address (its family decides IPv4 or IPv6)")
    parser.add_argument("--dst", help="destination address")
    parser.add_argument("--proto", help="tcp, udp, icmp, icmpv6 or a protocol number")
    parser.add_argument("--sport", type=int, help="source port")
    parser.add_argument("--dport", type=int, help="destination port")
    parser.add_argument("--flags", help="TCP flags that are set, e.g. SYN,ACK (default: SYN)")
    parser.add_argument("--icmp-type", type=int, help="ICMP or ICMPv6 type")
    parser.add_argument(
        "--vlan", type=int, action="append", help="VLAN id (repeat for a second tag)"
    )
    parser.add_argument("--fragment", choices=("first", "non-first"), help="an IP fragment")
    parser.add_argument(
        "--ext-header",
        action="append",
        choices=("hop", "routing", "dest", "fragment"),
        help="IPv6 extension header (repeatable, in order)",
    )
    parser.add_argument(
        "--interface",
        metavar="NAME",
        help="the ingress interface (default: one no pattern matches)",
    )
    parser.add_argument(
        "--state",
        choices=tuple(CT_STATES),
        default="new",
        help="the kernel's connection state for a tracked packet (default: new)",
    )
    parser.add_argument("--frame", metavar="HEX", help="explain these raw frame bytes instead")
    parser.add_argument("--dry-run", action="store_true", help="as a dry-run program would")
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    if not Path(args.policy).exists():
        raise UsageError(f"{args.policy}: no such file")
    if not Path(args.policy).is_file():
        raise UsageError(f"{args.policy}: not a file")
    frame = _frame(args)
    checked = check_file(args.policy, CheckOptions(gate=None))
    errors = [f for f in checked.findings if f.severity is Severity.ERROR]
    if errors or checked.policy is None:
        sys.stdout.write("".join(line(f) + "\n" for f in errors))
        return 1
    result = explain(checked.policy, frame, args.dry_run, args.interface, args.state)
    if args.json:
        sys.stdout.write(json.dumps(_json(checked.policy, result), indent=2) + "\n")
    else:
        sys.stdout.write(escape_lines(_text(checked.policy, result)))
    return 0


def _frame(args: argparse.Namespace) -> bytes:
    if args.frame is not None:
        given = [flag for flag in _FIELDS if getattr(args, flag) is not None]
        if given:
            raise UsageError(f"--frame replaces the packet flags; drop --{given[0]}")
        try:
            return bytes.fromhex("".join(args.frame.split()))
        except ValueError:
            raise UsageError("--frame must be hex bytes") from None
    values = {
        field: getattr(args, flag)
        for flag, field in _FIELDS.items()
        if getattr(args, flag) is not None
    }
    try:
        return build_frame(fields_from_mapping(values))
    except FrameError as exc:
        raise UsageError(str(exc).replace("`", "")) from None


def _rule_line(rule: Rule) -> str:
    return f"rule `{rule.name}` (priority {rule.priority}, {rule.location})"


def _text(policy: Policy, result: Explanation) -> str:
    verdict = result.verdict
    packet = verdict.packet
    lines = [f"packet:  {describe_packet(packet)}"]
    if packet.klass == "ip" and any(r.has_state for r in policy.rules):
        state = packet.ct_state or f"untracked ({untracked_why(packet)})"
        lines.append(f"state:   {state}")
    word = "pass" if verdict.xdp_action == XDP_PASS else "drop"
    if verdict.would_drop:
        word += " (dry run: would drop)"
    if verdict.rule is not None:
        by = f"{_rule_line(verdict.rule)}, action {verdict.rule.action.value}"
    elif verdict.klass == "default":
        by = f"the default action ({policy.default_action.value}): no rule matched"
    elif verdict.klass == "malformed":
        by = f"the default action ({policy.default_action.value}) for malformed packets"
    else:
        by = "the non-IP rule: frames that are not IPv4 or IPv6 always pass"
    lines.append(f"verdict: {word}, by {by}")
    if result.near_misses:
        lines.append("near misses (earlier rules that failed one or two fields):")
        for miss in result.near_misses:
            lines.append(f"  {_rule_line(miss.rule)}: {'; '.join(miss.reasons)}")
    return "\n".join(lines) + "\n"


def _rule_dict(rule: Rule) -> dict[str, Any]:
    loc = rule.location
    return {
        "name": rule.name,
        "priority": rule.priority,
        "action": rule.action.value,
        "file": loc.file,
        "line": loc.line,
        "column": loc.column,
    }


def _inner(packet: Packet) -> dict[str, Any] | None:
    if packet.inner_protocol is None:
        return None
    return {
        "protocol": protocol_name(packet.inner_protocol),
        "src": address_text(packet.family, packet.inner_src),
        "dst": address_text(packet.family, packet.inner_dst),
        "sport": packet.inner_sport,
        "dport": packet.inner_dport,
    }


def _json(policy: Policy, result: Explanation) -> dict[str, Any]:
    verdict = result.verdict
    packet = verdict.packet
    return {
        "policy": policy.name,
        "packet": {
            "class": packet.klass,
            "reason": packet.reason or None,
            "length": packet.length,
            "vlans": list(packet.vlans),
            "family": int(packet.family) if packet.family is not None else None,
            "src": address_text(packet.family, packet.src) if packet.src is not None else None,
            "dst": address_text(packet.family, packet.dst) if packet.dst is not None else None,
            "protocol": protocol_name(packet.protocol) if packet.protocol is not None else None,
            "protocol_number": packet.protocol,
            "fragment": packet.fragment,
            "sport": packet.sport,
            "dport": packet.dport,
            "tcp_flags": packet.tcp_flags,
            "icmp_type": packet.icmp_type,
            "interface": packet.interface,
            "tracked": packet.tracked,
            "state": packet.ct_state,
            "inner": _inner(packet),
        },
        "verdict": "pass" if verdict.xdp_action == XDP_PASS else "drop",
        "xdp_action": verdict.xdp_action,
        "class": verdict.klass,
        "would_drop": verdict.would_drop,
        "counter_slot": verdict.counter_slot,
        "rule": _rule_dict(verdict.rule) if verdict.rule is not None else None,
        "near_misses": [
            {**_rule_dict(m.rule), "reasons": list(m.reasons)} for m in result.near_misses
        ],
    }
