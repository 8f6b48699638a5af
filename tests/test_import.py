"""`fwc import`: what each source construct becomes, findings, bad input, and the exactness
of flattening jumps against a direct walk of the chains."""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fwc.compiler.check import CheckOptions, check_file
from fwc.compiler.cli import main
from fwc.compiler.importers.assemble import Source, assemble
from fwc.compiler.importers.iptables import read_iptables
from fwc.compiler.importers.model import Match, Ruleset, Verdict
from fwc.compiler.importers.nft import read_nft
from fwc.compiler.importers.render import render
from fwc.compiler.oracle import frames as fr
from fwc.compiler.oracle.evaluate import evaluate
from fwc.compiler.oracle.packet import Packet, parse
from fwc.compiler.policy.findings import Severity
from fwc.compiler.policy.ir import CT_STATES, Family
from tests.compile_helpers import policy_of

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path("tests/import")
GOLDEN = CORPUS / "golden"
UPDATE = bool(os.environ.get("FWC_UPDATE_GOLDEN"))

HEAD = "*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def save(tmp_path: Path, text: str, name: str = "rules.v4") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def imported_rules(tmp_path: Path, rules: str, extra_chains: str = "") -> list[str]:
    """The key lines of the imported rules (without name, priority and description)."""
    path = save(tmp_path, HEAD + extra_chains + rules + "COMMIT\n")
    text = render(assemble("t", [Source(read_iptables(path, None), "v4_l")]), [path], False)
    keep = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(("- name", "priority", "description", "#")) or not line.startswith(
            "    "
        ):
            if stripped.startswith("- name"):
                keep.append("--")
            continue
        keep.append(stripped)
    return keep


MAPPINGS = [
    ("-A INPUT -s 10.0.0.0/8 -j ACCEPT", ["action: allow", 'source_cidrs: ["10.0.0.0/8"]']),
    (
        "-A INPUT ! -s 128.0.0.0/1 -j ACCEPT",
        ["action: allow", 'source_cidrs: ["0.0.0.0/1"]'],
    ),
    (
        "-A INPUT -p tcp -m multiport --dports 22,80:81 -j ACCEPT",
        [
            "action: allow",
            "protocol: tcp",
            'source_cidrs: ["0.0.0.0/0"]',
            'destination_ports: [22, "80-81"]',
        ],
    ),
    (
        "-A INPUT -p udp -m udp ! --dport 1:65535 -j DROP",
        ["action: deny", "protocol: udp", 'source_cidrs: ["0.0.0.0/0"]', "destination_ports: [0]"],
    ),
    (
        "-A INPUT -m iprange --dst-range 192.0.2.1-192.0.2.2 -j ACCEPT",
        ["action: allow", 'destination_cidrs: ["192.0.2.1/32", "192.0.2.2/32"]'],
    ),
    (
        "-A INPUT -p tcp -m tcp --syn -j DROP",
        [
            "action: deny",
            "protocol: tcp",
            'source_cidrs: ["0.0.0.0/0"]',
            'tcp_flags: "!FIN,SYN,!RST,!ACK"',
        ],
    ),
    (
        "-A INPUT -p icmp -m icmp --icmp-type echo-request -j ACCEPT",
        ["action: allow", "protocol: icmp", 'source_cidrs: ["0.0.0.0/0"]', "icmp_types: [8]"],
    ),
    (
        "-A INPUT -p tcp -j REJECT --reject-with tcp-reset",
        ["action: deny", "protocol: tcp", 'source_cidrs: ["0.0.0.0/0"]'],
    ),
    (
        "-A INPUT -p tcp -m tcp --dport 23 -j LOG\n-A INPUT -p tcp -m tcp --dport 23 -j DROP",
        [
            "action: deny",
            "protocol: tcp",
            'source_cidrs: ["0.0.0.0/0"]',
            "destination_ports: [23]",
            "log: true",
        ],
    ),
]


ANY4 = 'source_cidrs: ["0.0.0.0/0"]'
MAPPINGS += [
    (rule, ["action: allow" if "ACCEPT" in rule else "action: deny", ANY4, *iface])
    for rule, iface in (
        ("-A INPUT -i eth0 -j ACCEPT", ['interfaces: ["eth0"]']),
        ("-A INPUT -i eth+ -j ACCEPT", ['interfaces: ["eth*"]']),
        ("-A INPUT ! -i wg0 -j DROP", ['interfaces: ["!wg0"]']),
        ("-A INPUT --in-interface + -j ACCEPT", []),
    )
]  # fmt: skip


MAPPINGS += [
    (rule, ["action: allow" if "ACCEPT" in rule else "action: deny", *rest, ANY4, state])
    for rule, rest, state in (
        ("-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT", [],
         "state: [established, related]"),
        ("-A INPUT -m state --state INVALID -j DROP", [], "state: [invalid]"),
        ("-A INPUT -p tcp -m conntrack --ctstate NEW -j ACCEPT", ["protocol: tcp"],
         "state: [new]"),
        ("-A INPUT -m conntrack ! --ctstate RELATED,ESTABLISHED -j DROP", [],
         "state: [new, invalid]"),
        ("-A INPUT -m state ! --state new -j ACCEPT", [],
         "state: [established, related, invalid]"),
    )
]  # fmt: skip


@pytest.mark.parametrize(("rule", "fields"), MAPPINGS, ids=[m[0][:40] for m in MAPPINGS])
def test_mapping(rule: str, fields: list[str], tmp_path: Path) -> None:
    got = imported_rules(tmp_path, rule + "\n")
    assert got[: len(fields) + 1] == ["--", *fields]


def test_return_in_a_user_chain_is_split_by_order(tmp_path: Path) -> None:
    chains = ":svc - [0:0]\n"
    rules = (
        "-A INPUT -p tcp -j svc\n-A INPUT -s 10.1.0.0/16 -j ACCEPT\n"
        "-A svc -s 10.0.0.0/8 -j RETURN\n-A svc -j ACCEPT\n"
    )
    got = imported_rules(tmp_path, rules, chains)
    # tcp from 10/8 returns: the rest of INPUT decides it (accept from 10.1/16, else the
    # policy); only then does the chain's ACCEPT take the other tcp packets.
    assert got == [
        "--", "action: allow", "protocol: tcp", 'source_cidrs: ["10.1.0.0/16"]',
        "--", "action: deny", "protocol: tcp", 'source_cidrs: ["10.0.0.0/8"]',
        "--", "action: allow", "protocol: tcp", 'source_cidrs: ["0.0.0.0/0"]',
        "--", "action: allow", 'source_cidrs: ["10.1.0.0/16"]',
        "--", "action: allow", 'source_cidrs: ["::/0"]',
    ]  # fmt: skip


def corpus_cases() -> list[tuple[str, list[str]]]:
    return [
        ("web_server", ["iptables", "web-server.v4", "web-server.v6"]),
        ("bastion", ["iptables", "bastion.v4"]),
        ("router_input", ["iptables", "router-input.v4", "router-input.v6"]),
        ("fail2ban", ["iptables", "fail2ban.v4"]),
        ("ufw", ["iptables", "ufw.v4"]),
        ("docker", ["iptables", "docker-user.v4"]),
        (
            "ipset_blocklist",
            ["iptables", "blocklist.v4", "blocklist.v6", "--ipset", "blocklist.ipset"],
        ),
        ("web_server_nft", ["nft", "web-server.nft.json"]),
        ("two_chains_nft", ["nft", "two-chains.nft.json"]),
        ("blocklist_nft", ["nft", "blocklist.nft.json"]),
        ("router_input_nft", ["nft", "router-input.nft.json"]),
        ("interfaces", ["iptables", "interfaces.v4", "interfaces.v6"]),
        ("interfaces_nft", ["nft", "interfaces.nft.json"]),
        ("web_state", ["iptables", "web-state.v4", "web-state.v6"]),
        ("bastion_state", ["iptables", "bastion-state.v4"]),
        ("ufw_state", ["iptables", "ufw-state.v4"]),
        ("docker_state", ["iptables", "docker-state.v4"]),
        ("stateful_nft", ["nft", "stateful.nft.json"]),
    ]


def _argv(args: list[str]) -> list[str]:
    return [a if a.startswith("-") or a in ("iptables", "nft") else str(CORPUS / a) for a in args]


def _golden(path: Path, text: str) -> None:
    if UPDATE:
        path.write_text(text)
    assert path.is_file(), f"{path}: run FWC_UPDATE_GOLDEN=1 to create it"
    assert text == path.read_text()


@pytest.mark.parametrize(("name", "args"), corpus_cases(), ids=[c[0] for c in corpus_cases()])
def test_golden_policy(
    name: str,
    args: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Each corpus ruleset imports (exit 0), passes `fwc check` but for the organisation's
    Rego invariants, and reads as its golden file."""
    monkeypatch.chdir(ROOT)
    code, out, err = run(["import", *_argv(args), "--name", name.replace("_", "-")], capsys)
    assert code == 0, err
    policy = tmp_path / f"{name}.yaml"
    policy.write_text(out)
    result = check_file(policy, CheckOptions(gate=None))
    assert [f for f in result.findings if f.severity is Severity.ERROR] == []
    _golden(GOLDEN / f"{name}.yaml", out)


UNSUPPORTED = [
    ("host_basics", ["iptables", "unsupported/host-basics.v4"]),
    ("ufw_real", ["iptables", "unsupported/ufw-real.v4"]),
    ("ct_iif_nft", ["nft", "unsupported/ct-iif.nft.json"]),
    ("ct_options", ["iptables", "unsupported/ct-options.v4"]),
]


@pytest.mark.parametrize(("name", "args"), UNSUPPORTED, ids=[u[0] for u in UNSUPPORTED])
def test_golden_findings(
    name: str, args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every rule fwc cannot say is named with its place and reason; nothing is written."""
    monkeypatch.chdir(ROOT)
    code, out, err = run(["import", *_argv(args)], capsys)
    assert (code, out) == (1, "")
    _golden(GOLDEN / f"{name}.findings.txt", err)


def test_lossy_writes_the_rest_and_says_it_differs(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(ROOT)
    out_file = tmp_path / "lossy.yaml"
    code, _, err = run(
        [
            "import",
            "iptables",
            "--lossy",
            "tests/import/unsupported/ufw-real.v4",
            "-o",
            str(out_file),
        ],
        capsys,
    )
    assert code == 0
    text = out_file.read_text()
    assert "THIS POLICY DIFFERS FROM THE SOURCE" in text
    assert "ufw-real.v4:25: addrtype depends on the host's routes" in text
    assert "DIFFERS" in err and err.count("[left out]") == 5
    result = check_file(out_file, CheckOptions(gate=None))
    assert [f for f in result.findings if f.severity is Severity.ERROR] == []


BAD = [
    ("-A INPUT -j ACCEPT\n", "rules.v4:1: a line outside a table"),
    (
        HEAD + "-A INPUT -s 10.0.0.300 -j ACCEPT\nCOMMIT\n",
        "rules.v4:5: '10.0.0.300' is not an address",
    ),
    (HEAD + "-A INPUT -j ACCEPT\n", "rules.v4: table filter has no COMMIT line"),
    (
        HEAD + "-A NOPE -j ACCEPT\nCOMMIT\n",
        "rules.v4:5: chain 'NOPE' is not declared in table filter",
    ),
    (
        HEAD + "-A INPUT -p tcp --dport 9:1 -j ACCEPT\nCOMMIT\n",
        "rules.v4:5: port range 9:1 ends before it starts",
    ),
    (
        HEAD + '-A INPUT -m comment --comment "open -j ACCEPT\nCOMMIT\n',
        "rules.v4:5: a quote or backslash is not closed",
    ),
    (
        HEAD + "-A INPUT -m set --match-set bad src -j DROP\nCOMMIT\n",
        "give the ipset save file with --ipset",
    ),
    (HEAD + "-A INPUT -g nowhere\nCOMMIT\n", "rules.v4:5: no chain named 'nowhere'"),
    (
        HEAD.replace("DROP", "QUEUE") + "COMMIT\n",
        "rules.v4:2: chain policy 'QUEUE' is neither ACCEPT nor DROP",
    ),
]


@pytest.mark.parametrize(("text", "message"), BAD, ids=[b[1][:40] for b in BAD])
def test_malformed_input_is_one_line_and_exit_2(
    text: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = save(tmp_path, text)
    code, out, err = run(["import", "iptables", path], capsys)
    assert (code, out) == (2, "")
    assert len(err.strip().splitlines()) == 1 and message in err, err


def test_malformed_nft_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = save(tmp_path, '{"nftables": [\n{"table": }', "rules.json")
    code, _, err = run(["import", "nft", path], capsys)
    assert code == 2 and "rules.json:2: not JSON" in err
    path = save(tmp_path, '{"tables": []}', "other.json")
    code, _, err = run(["import", "nft", path], capsys)
    assert code == 2 and "not `nft -j list ruleset` output" in err


# ---- flattening is exact: the imported policy against a direct walk of the chains ------


def _matches(m: Match, p: Packet) -> bool:
    """The model's meaning of a match, on a parsed packet (no fragments here)."""
    assert p.family is not None and p.src is not None and p.dst is not None
    checks = [
        m.family is None or m.family == int(p.family),
        m.protocol is None or m.protocol == p.protocol,
        m.src is None or any(_in(n, p.family, p.src) for n in m.src.nets),
        m.dst is None or any(_in(n, p.family, p.dst) for n in m.dst.nets),
        m.dport is None or (p.dport is not None and any(a <= p.dport <= b for a, b in m.dport)),
        m.sport is None or (p.sport is not None and any(a <= p.sport <= b for a, b in m.sport)),
    ]
    return all(checks)


def _in(net: ipaddress.IPv4Network | ipaddress.IPv6Network, family: Family, address: int) -> bool:
    return net.version == int(family) and int(net.network_address) <= address <= int(
        net.broadcast_address
    )


def walk(rs: Ruleset, p: Packet) -> bool:
    """iptables' own evaluation: a stack of (chain, position), RETURN pops, policy at the end."""
    stack = [(rs.bases[0], 0)]
    while stack:
        name, i = stack.pop()
        entries = rs.chains[name].entries
        while i < len(entries):
            e = entries[i]
            i += 1
            assert e.match is not None
            if e.verdict is Verdict.CONTINUE or not _matches(e.match, p):
                continue
            if e.verdict in (Verdict.ACCEPT, Verdict.DROP):
                return e.verdict is Verdict.ACCEPT
            if e.verdict is Verdict.RETURN:
                break
            if e.verdict is Verdict.JUMP:
                stack.append((name, i))
            stack.append((e.target, 0))
            break
        else:
            if rs.chains[name].policy is not None:
                return rs.chains[name].policy is Verdict.ACCEPT
        if not stack:
            return rs.chains[rs.bases[0]].policy is Verdict.ACCEPT
    raise AssertionError("unreachable")


CHAINS = ("INPUT", "a", "b", "c")
NETS = ("10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "192.0.2.0/24")


@st.composite
def rulesets(draw: st.DrawFn) -> str:
    """iptables-save text: four chains, jumps only forward (no loops), RETURN and -g."""
    lines = [f"*filter\n:INPUT {draw(st.sampled_from(['ACCEPT', 'DROP']))} [0:0]\n"]
    lines += [f":{c} - [0:0]\n" for c in CHAINS[1:]]
    for k, chain in enumerate(CHAINS):
        for _ in range(draw(st.integers(0, 5))):
            parts = [f"-A {chain}"]
            if draw(st.booleans()):
                parts.append(f"{draw(st.sampled_from(['', '! ']))}-s {draw(st.sampled_from(NETS))}")
            if draw(st.booleans()):
                parts.append(
                    f"-p tcp -m tcp --dport {draw(st.sampled_from(['22', '80', '20:25']))}"
                )
            targets = ["ACCEPT", "DROP", "RETURN"] + [
                f"{j} {c}" for c in CHAINS[k + 1 :] for j in ("-j", "-g")
            ]
            target = draw(st.sampled_from(targets))
            parts.append(target if target.startswith("-") else f"-j {target}")
            lines.append(" ".join(parts) + "\n")
    return "".join(lines) + "COMMIT\n"


def packets() -> list[bytes]:
    out = []
    for src in ("10.1.2.3", "10.1.9.9", "10.9.9.9", "192.0.2.7", "198.51.100.1"):
        for proto, dport in (("tcp", 22), ("tcp", 80), ("tcp", 21), ("tcp", 443), ("udp", 22)):
            out.append(
                fr.build_frame(fr.fields_from_mapping({"proto": proto, "src": src, "dport": dport}))
            )
    return out


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=rulesets())
def test_flattening_equals_walking_the_chains(text: str, tmp_path: Path) -> None:
    path = save(tmp_path, text)
    rs = read_iptables(path, None, 4)
    policy = policy_of(render(assemble("t", [Source(rs, "v4_l")]), [path], False))
    for frame in packets():
        want = walk(rs, parse(frame))
        assert evaluate(policy, frame).xdp_action == (2 if want else 1), (text, parse(frame))


def test_interfaces_of_a_jump_meet_the_chain_rules(tmp_path: Path) -> None:
    """A name inside the jump's glob stays, a name outside it meets no packet; of two
    prefix globs, the longer one holds both."""
    chains = ":lan - [0:0]\n"
    rules = (
        "-A INPUT -i eth+ -j lan\n-A lan -i eth1 -p udp -j ACCEPT\n"
        "-A lan -i wg0 -p tcp -j ACCEPT\n-A lan ! -i eth2 -p icmp -j ACCEPT\n"
    )
    got = imported_rules(tmp_path, rules, chains)
    assert got == [
        "--", "action: allow", "protocol: udp", 'source_cidrs: ["0.0.0.0/0"]',
        'interfaces: ["eth1"]',
        "--", "action: allow", "protocol: icmp", 'source_cidrs: ["0.0.0.0/0"]',
        'interfaces: ["eth*", "!eth2"]',
        "--", "action: allow", 'source_cidrs: ["::/0"]',
    ]  # fmt: skip
    wider = "-A INPUT -i eth+ -j lan\n-A lan -i et+ -p udp -j ACCEPT\n-A lan -i eth12+ -j DROP\n"
    assert imported_rules(tmp_path, wider, chains)[:10] == [
        "--", "action: allow", "protocol: udp", 'source_cidrs: ["0.0.0.0/0"]',
        'interfaces: ["eth*"]',
        "--", "action: deny", 'source_cidrs: ["0.0.0.0/0"]', 'interfaces: ["eth12*"]',
        "--",
    ]  # fmt: skip


def _nft_rule(handle: int, match: dict[str, object]) -> dict[str, object]:
    body = {"family": "inet", "table": "t", "chain": "input", "handle": handle}
    return {"rule": {**body, "expr": [{"match": match}, {"accept": None}]}}


def test_nft_ct_state_forms_and_findings(tmp_path: Path) -> None:
    """Every form `nft -j` prints for ct state; untracked, a combination compared with ==
    and other ct keys are findings."""
    state = {"ct": {"key": "state"}}
    rules = [
        ("in", "new", ["new"]),
        ("==", "invalid", ["invalid"]),
        ("in", ["established", "related"], ["established", "related"]),
        ("!", ["established", "new"], ["related", "invalid"]),
        ("==", {"set": ["related", "new"]}, ["new", "related"]),
        ("!=", {"set": ["related", "new"]}, ["established", "invalid"]),
        ("!=", "established", ["new", "related", "invalid"]),
        ("!=", {"|": ["established"]}, ["new", "related", "invalid"]),
    ]
    objects: list[dict[str, object]] = [
        {"table": {"family": "inet", "name": "t", "handle": 1}},
        {
            "chain": {
                "family": "inet", "table": "t", "name": "input", "handle": 1,
                "type": "filter", "hook": "input", "prio": 0, "policy": "drop",
            }
        },
    ]  # fmt: skip
    for k, (op, right, _) in enumerate(rules, start=2):
        objects.append(_nft_rule(k, {"op": op, "left": state, "right": right}))
    bad = [
        {"op": "in", "left": state, "right": "untracked"},
        {"op": "!=", "left": state, "right": {"|": ["established", "related"]}},
        {"op": "in", "left": {"ct": {"key": "status"}}, "right": "dnat"},
    ]
    objects += [_nft_rule(100 + k, m) for k, m in enumerate(bad)]
    path = tmp_path / "ct.json"
    path.write_text(json.dumps({"nftables": objects}))
    ruleset = read_nft(str(path))
    entries = next(iter(ruleset.chains.values())).entries
    for entry, (_, _, names) in zip(entries, rules, strict=False):
        assert entry.match is not None, entry.gap
        assert entry.match.state == sum(CT_STATES[n] for n in names), entry.text
    reasons = [e.gap.reason for e in entries[len(rules) :] if e.gap is not None]
    assert len(reasons) == 3
    assert "UNTRACKED" in reasons[0]
    assert "combination" in reasons[1]
    assert "ct" in reasons[2]
