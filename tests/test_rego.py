"""The Rego gate: input encoding, the starter invariants, waivers, engines, run_tests."""

from __future__ import annotations

import json
import os
import stat
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from fwc.compiler.gate import rego
from fwc.compiler.gate import regopy as rego_regopy
from fwc.compiler.gate.input import address_doc, policy_doc
from fwc.compiler.gate.rego import RegoError, RegoOptions, gate, run_tests
from fwc.compiler.policy.findings import Severity
from fwc.compiler.policy.ir import AddressRange, Family, Policy
from fwc.compiler.policy.normalize import normalize
from fwc.compiler.policy.source import load_bytes
from tests.strategies import policies

REPO = Path(__file__).resolve().parent.parent


def policy(text: str, file: str = "p.yaml") -> Policy:
    doc, findings = load_bytes(text.encode(), file)
    assert doc is not None, findings
    built, findings = normalize(doc)
    assert built is not None, findings
    return built


# ---- input encoding -------------------------------------------------------------------

ADDRESSES = [
    ("10.0.0.0/8", Family.IPV4, 0x0A000000, 8, "0a000000", "0affffff"),
    ("0.0.0.0/0", Family.IPV4, 0, 0, "00000000", "ffffffff"),
    ("192.0.2.7/32", Family.IPV4, 0xC0000207, 32, "c0000207", "c0000207"),
    ("::/0", Family.IPV6, 0, 0, "0" * 32, "f" * 32),
    (
        "2001:db8::/32",
        Family.IPV6,
        0x20010DB8 << 96,
        32,
        "20010db8" + "0" * 24,
        "20010db8" + "f" * 24,
    ),
]


@pytest.mark.parametrize(("cidr", "family", "network", "prefix", "first", "last"), ADDRESSES)
def test_address_encoding(
    cidr: str, family: Family, network: int, prefix: int, first: str, last: str
) -> None:
    doc = address_doc(AddressRange(family, network, prefix))
    assert doc == {
        "cidr": cidr,
        "family": "ipv4" if family is Family.IPV4 else "ipv6",
        "prefix_len": prefix,
        "first": first,
        "last": last,
    }


def test_hex_strings_order_like_addresses() -> None:
    nets = [AddressRange(Family.IPV4, n << 24, 8) for n in (1, 9, 10, 100, 200)]
    firsts = [address_doc(a)["first"] for a in nets]
    assert firsts == sorted(firsts)


def test_policy_document_shape() -> None:
    doc = policy_doc(
        policy(
            """
name: shape
sets: {mgmt: ["10.1.0.0/16"], web: [80, "8000-8010"]}
rules:
  - {name: a, priority: 1, action: allow, protocol: tcp, source_cidrs: ["$mgmt"],
     destination_ports: ["$web"], tcp_flags: "SYN,!ACK", description: d}
"""
        )
    )
    rule = doc["rules"][0]
    assert doc["default_action"] == "deny"
    assert doc["sets"]["web"] == [{"first": 80, "last": 80}, {"first": 8000, "last": 8010}]
    assert rule["source_cidrs"][0]["first"] == "0a010000"
    assert rule["tcp_flags"] == {"set": ["SYN"], "clear": ["ACK"]}
    assert (rule["file"], rule["line"]) == ("p.yaml", 5)


EVERY_FIELD = """
name: every-field
default_action: allow
interfaces: {include: ["eth*", "ens*"], exclude: ["docker0"]}
sets: {mgmt: ["10.1.0.0/16", "fd00:20::/48"], web: [80, "8000-8010"], none_v6: ["::/0"]}
rules:
  - {name: a, priority: 1, action: allow, protocol: tcp, source_cidrs: ["$mgmt"],
     destination_cidrs: ["192.0.2.7", "2001:db8::1"], source_ports: [1024, "2000-3000"],
     destination_ports: ["$web"], tcp_flags: "SYN,FIN,!ACK,!CWR", log: true,
     description: "ünïcode, commas: and {braces}"}
  - {name: b, priority: 2, action: rate_limit, protocol: icmp, icmp_types: [8, 0],
     rate_limit_pps: 4000000000, rate_limit_burst: 9000000000}
  - {name: c, priority: 2, action: deny, source_cidrs: ["0.0.0.0/0", "$none_v6"]}
"""


def _engine_input(value: Any) -> Any:
    """What regopy's `input` holds for `value` (a Policy, standing for its policy_doc, or a
    JSON-shaped document)."""
    doc = policy_doc(value) if isinstance(value, Policy) else value
    return rego_regopy.evaluate([], {}, doc, "x := input")


@pytest.mark.parametrize("text", [EVERY_FIELD, "rules: []\n"])
def test_engine_input_is_policy_doc(text: str) -> None:
    built = policy(text)
    expected = json.loads(json.dumps(policy_doc(built)))
    assert _engine_input(built) == expected
    assert _engine_input(expected) == expected


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policies(max_rules=12, rate_limit=True))
def test_engine_input_is_policy_doc_for_random_policies(built: Policy) -> None:
    assert _engine_input(built) == json.loads(json.dumps(policy_doc(built)))


# ---- the starter invariants through the real loader -----------------------------------

GOOD = """
name: good
default_action: deny
sets: {mgmt_nets: ["10.20.0.0/16"]}
rules:
  - {name: ssh_mgmt, priority: 1, action: allow, protocol: tcp,
     source_cidrs: ["$mgmt_nets"], destination_ports: [22], description: ops}
  - {name: web, priority: 2, action: allow, protocol: tcp, destination_ports: [443],
     description: web}
  - {name: dns, priority: 3, action: rate_limit, protocol: udp, destination_ports: [53],
     rate_limit_pps: 500, description: dns}
"""

CASES = [
    ("clean", GOOD, []),
    (
        "default allow",
        GOOD.replace("default_action: deny", "default_action: allow"),
        # Behaviour, not text: what no rule matches is allowed, SSH from the world too.
        [
            ("FWC040", None, "the default action allows RDP"),
            ("FWC040", None, "the default action allows SSH (tcp port 22) from the Internet"),
            ("FWC040", None, "default_action allow"),
            ("FWC040", None, "the default action opens 65535 tcp/udp ports"),
        ],
    ),
    (
        "ssh from the world written in halves",
        GOOD.replace(
            '["$mgmt_nets"]', '["$mgmt_nets", "0.0.0.0/1", "128.0.0.0/1", "::/1", "8000::/1"]'
        ),
        [
            ("FWC040", "ssh_mgmt", "allows SSH (tcp port 22) from the Internet (0.0.0.0/0, ::/0)"),
        ],
    ),
    (
        "ssh from the world over two rules",
        GOOD.replace(
            "  - {name: web,",
            "  - {name: ssh_low, priority: 1, action: allow, protocol: tcp, description: d,\n"
            '     source_cidrs: ["0.0.0.0/1"], destination_ports: [22]}\n'
            "  - {name: ssh_high, priority: 1, action: allow, protocol: tcp, description: d,\n"
            '     source_cidrs: ["128.0.0.0/1"], destination_ports: [22]}\n'
            "  - {name: web,",
        ),
        [
            ("FWC040", "ssh_mgmt", "rules `ssh_mgmt`, `ssh_low`, `ssh_high` allows SSH"),
        ],
    ),
    (
        "ssh from every source port is no return traffic",
        GOOD.replace('source_cidrs: ["$mgmt_nets"], ', 'source_ports: ["0-65535"], '),
        [
            ("FWC040", "ssh_mgmt", "allows SSH"),
        ],
    ),
    (
        "shadowed allow is no allow",
        GOOD.replace(
            "rules:\n",
            "rules:\n  - {name: drop_ssh, priority: 0, action: deny, protocol: tcp, "
            "destination_ports: [22], description: d}\n",
        ),
        [
            ("FWC040", None, "management network 10.20.0.0/16 cannot reach SSH"),
        ],
    ),
    (
        "ssh from world",
        GOOD.replace('source_cidrs: ["$mgmt_nets"], ', ""),
        [
            ("FWC040", "ssh_mgmt", "allows SSH"),
        ],
    ),
    (
        "rdp from ::/0",
        GOOD.replace(
            "destination_ports: [443]", 'destination_ports: [3389], source_cidrs: ["::/0"]'
        ),
        [
            ("FWC040", "web", "allows RDP"),
        ],
    ),
    (
        "mgmt blocked",
        GOOD.replace(
            "rules:\n",
            "rules:\n  - {name: drop, priority: 0, "
            'action: deny, source_cidrs: ["10.20.3.0/24"], '
            "description: d}\n",
        ),
        [
            ("FWC040", None, "management network 10.20.0.0/16 cannot reach SSH"),
        ],
    ),
    (
        "no mgmt set",
        GOOD.replace('sets: {mgmt_nets: ["10.20.0.0/16"]}', "").replace(
            '["$mgmt_nets"]', '["10.20.0.0/16"]'
        ),
        [
            ("FWC043", None, "no management set"),
        ],
    ),
    (
        "pps too high",
        GOOD.replace("rate_limit_pps: 500", "rate_limit_pps: 5000000"),
        [
            ("FWC040", "dns", "5000000 packets per second"),
        ],
    ),
    (
        "wide world range",
        GOOD.replace("destination_ports: [443]", 'destination_ports: ["10000-65535"]'),
        [
            ("FWC040", "web", "opens 55536 tcp ports"),
        ],
    ),
    (
        "no description",
        GOOD.replace("description: web", 'description: " "'),
        [
            ("FWC041", "web", "has no description"),
        ],
    ),
]


@pytest.mark.parametrize(("label", "text", "expected"), CASES, ids=[c[0] for c in CASES])
def test_starter_invariants(
    label: str, text: str, expected: list[tuple[str, str | None, str]]
) -> None:
    findings = gate(policy(text), RegoOptions())
    got = [(f.id, f.rule) for f in findings]
    assert got == [(fid, rule) for fid, rule, _ in expected], [f.message for f in findings]
    for finding, (_, _, fragment) in zip(findings, expected, strict=True):
        assert fragment in finding.message
        warns = ("FWC041", "FWC043")
        assert finding.severity is (Severity.WARNING if finding.id in warns else Severity.ERROR)


def test_finding_points_at_the_rule() -> None:
    text = GOOD.replace("description: web", 'description: " "')
    [finding] = gate(policy(text), RegoOptions())
    assert (finding.location.file, finding.location.line) == ("p.yaml", 8)


@pytest.mark.parametrize("example", sorted((REPO / "policies").glob("*.yaml")))
def test_example_policies_have_no_errors(example: Path) -> None:
    doc, _ = load_bytes(example.read_bytes(), str(example))
    if doc is None:
        pytest.fail(f"{example} does not load")
    built, _ = normalize(doc)
    if built is None:
        return  # not a policy (e.g. packet cases)
    assert [f.message for f in gate(built, RegoOptions()) if f.severity is Severity.ERROR] == []


# ---- the embedded engine ---------------------------------------------------------------


def test_gate_query_leaves_out_undefined_rules(tmp_path: Path) -> None:
    write(tmp_path, "u.rego", USER_RULES + '\ndeny_never := "x" if false\n')
    modules = list(rego._load(RegoOptions(policy_dirs=(tmp_path,))).modules)
    query = rego.gate_query([("main", "warn"), ("main", "deny_never")])
    value = rego_regopy.evaluate(modules, {}, {"name": "good", "rules": []}, query)
    assert value == {"main": {"warn": ["a plain warning"]}}


def test_crashed_engine_is_an_error(tmp_path: Path) -> None:
    write(
        tmp_path,
        "crash.rego",
        "package fwc\n\nimport rego.v1\n\nx if input.a + 1 == 2\n"
        'deny_crash contains "c" if {\n    x with input as {"a": 1}\n}\n'
        'deny_fine contains "f" if true\n',
    )
    modules = list(rego._load(RegoOptions(policy_dirs=(tmp_path,))).modules)
    crash = rego.gate_query([("fwc", "deny_fine"), ("fwc", "deny_crash")])
    with pytest.raises(rego_regopy.EngineFailure, match=r"crashed \(SIG[A-Z]+\) while evaluating"):
        rego_regopy.evaluate(modules, {}, {"a": 0}, crash)


def test_engine_print_output_reaches_stderr(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    write(
        tmp_path,
        "talk.rego",
        "package fwc\n\nimport rego.v1\n\n"
        'deny_talk contains "t" if {\n    print("said", input.a)\n}\n'
        'deny_also contains "a" if {\n    print("also", input.a)\n}\n',
    )
    modules = list(rego._load(RegoOptions(policy_dirs=(tmp_path,))).modules)
    both = rego.gate_query([("fwc", "deny_talk"), ("fwc", "deny_also")])
    value = rego_regopy.evaluate(modules, {}, {"a": 7}, both)
    assert value == {"fwc": {"deny_talk": ["t"], "deny_also": ["a"]}}
    printed = capfd.readouterr().err
    assert "said 7" in printed
    assert "also 7" in printed


# ---- user directories, data files, waivers --------------------------------------------


def write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


USER_RULES = """
package main

import rego.v1

deny_no_log contains {"msg": sprintf("rule %s does not log", [r.name]), "rule": r.name} if {
    some r in input.rules
    not r.log
}

warn contains "a plain warning" if input.name == "good"
"""


def test_user_directory_in_main_namespace(tmp_path: Path) -> None:
    write(tmp_path, "user.rego", USER_RULES)
    findings = gate(policy(GOOD), RegoOptions(policy_dirs=(tmp_path,)))
    assert sorted((f.id, f.rule) for f in findings) == [
        ("FWC040", "dns"),
        ("FWC040", "ssh_mgmt"),
        ("FWC040", "web"),
        ("FWC041", None),
    ]


@pytest.mark.parametrize(
    ("exception", "left"),
    [
        ('exception contains rules if { rules := ["no_log"] }', []),
        (
            'exception contains rules if { rules := [{"invariant": "no_log", "rule": "web"}] }',
            ["dns", "ssh_mgmt"],
        ),
        ('exception contains rules if { rules := ["other"] }', ["dns", "ssh_mgmt", "web"]),
    ],
)
def test_exceptions_waive_deny_rules(tmp_path: Path, exception: str, left: list[str]) -> None:
    write(tmp_path, "user.rego", USER_RULES + "\n" + exception + "\n")
    findings = gate(policy(GOOD), RegoOptions(policy_dirs=(tmp_path,)))
    assert sorted(f.rule for f in findings if f.id == "FWC040") == left


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_data_files_configure_the_bundled_set(tmp_path: Path, suffix: str) -> None:
    settings = {"fwc_config": {"rate_limit_max_pps": 100}}
    text = json.dumps(settings) if suffix == ".json" else "fwc_config:\n  rate_limit_max_pps: 100\n"
    data = write(tmp_path, "org" + suffix, text)
    findings = gate(policy(GOOD), RegoOptions(data_files=(data,)))
    assert [(f.id, f.rule) for f in findings] == [("FWC040", "dns")]


def test_unreadable_data_file_is_an_error(tmp_path: Path) -> None:
    data = write(tmp_path, "bad.yaml", "- a list\n")
    with pytest.raises(RegoError, match="mapping"):
        gate(policy(GOOD), RegoOptions(data_files=(data,)))


# ---- loud failures ---------------------------------------------------------------------


def test_unsupported_builtin_fails_before_evaluation(tmp_path: Path) -> None:
    write(
        tmp_path,
        "net.rego",
        "package fwc\n\nimport rego.v1\n\n# comment net.fake(1)\n"
        'deny contains "x" if {\n    net.cidr_contains("10.0.0.0/8", "10.1.1.1")\n}\n',
    )
    with pytest.raises(RegoError, match=r"net\.rego:7: `net\.cidr_contains` is not a built-in"):
        gate(policy(GOOD), RegoOptions(policy_dirs=(tmp_path,)))


def test_parse_error_names_file_and_line(tmp_path: Path) -> None:
    write(tmp_path, "broken.rego", "package fwc\n\nimport rego.v1\n\ndeny contains 1 if {\n")
    with pytest.raises(RegoError, match=r"broken\.rego"):
        gate(policy(GOOD), RegoOptions(policy_dirs=(tmp_path,)))


def test_engine_crash_is_an_error_not_a_dead_process(tmp_path: Path) -> None:
    write(
        tmp_path,
        "crash.rego",
        "package fwc\n\nimport rego.v1\n\nx if input.a + 1 == 2\n"
        'test_crash if {\n    x with input as {"a": 1}\n}\n',
    )
    report = run_tests(RegoOptions(policy_dirs=(tmp_path,)))
    assert report.failed == 1
    assert "crashed" in report.results[0].message


# ---- run_tests -------------------------------------------------------------------------


def test_bundled_tests_pass() -> None:
    report = run_tests(RegoOptions())
    assert report.failed == 0, report.format()
    assert len(report.results) >= 20
    assert report.format().endswith(f"PASS: {len(report.results)}/{len(report.results)}\n")


def test_failing_test_is_reported(tmp_path: Path) -> None:
    write(
        tmp_path,
        "t_test.rego",
        "package t\n\nimport rego.v1\n\ntest_ok if true\n\ntest_broken if 1 == 2\n",
    )
    report = run_tests(RegoOptions(policy_dirs=(tmp_path,)))
    assert [(r.name, r.passed) for r in report.results] == [
        ("data.t.test_ok", True),
        ("data.t.test_broken", False),
    ]
    text = report.format()
    assert "data.t.test_broken: FAIL" in text
    assert "PASS: 1/2" in text and "FAIL: 1/2" in text


# ---- the opa binary, faked -------------------------------------------------------------

FAKE_OPA = """#!{python}
import json, sys
with open({log!r}, "a") as log:
    stdin = sys.stdin.read() if "--stdin-input" in sys.argv else ""
    log.write(json.dumps({{"argv": sys.argv[1:], "stdin": stdin}}) + "\\n")
if sys.argv[1] == "eval":
    deny = [{{"msg": "from opa", "rule": "web"}}]
    x = {{"fwc": {{"deny_admin_from_world": deny}}}}
    print(json.dumps({{"result": [{{"bindings": {{"x": x}}}}]}}))
elif sys.argv[1] == "test":
    print(json.dumps([{{"package": "data.t", "name": "test_a"}},
                      {{"package": "data.t", "name": "test_b", "fail": True}}]))
    sys.exit(2)
"""


@pytest.fixture
def fake_opa(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bindir = tmp_path / "bin"
    log = tmp_path / "opa.log"
    script = write(bindir, "opa", FAKE_OPA.format(python=sys.executable, log=str(log)))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return log


def test_opa_binary_engine(fake_opa: Path, tmp_path: Path) -> None:
    data = write(tmp_path, "d.json", '{"fwc_config": {"max_world_ports": 5}}')
    findings = gate(policy(GOOD), RegoOptions(engine="opa", data_files=(data,)))
    assert [(f.id, f.rule, f.message) for f in findings] == [("FWC040", "web", "from opa")]
    [call] = [json.loads(line) for line in fake_opa.read_text().splitlines()]
    argv = call["argv"]
    assert argv[:4] == ["eval", "--format", "json", "--stdin-input"]
    loaded = [argv[i + 1] for i, a in enumerate(argv) if a == "--data"]
    assert any(p.endswith("default_action.rego") for p in loaded)
    assert not any(p.endswith("_test.rego") for p in loaded)
    assert any(p.endswith("data.json") for p in loaded)
    assert argv[-1].startswith("x := {")
    assert json.loads(call["stdin"])["name"] == "good"


def test_opa_binary_tests(fake_opa: Path) -> None:
    report = run_tests(RegoOptions(engine="opa"))
    assert [(r.name, r.passed) for r in report.results] == [
        ("data.t.test_a", True),
        ("data.t.test_b", False),
    ]
    [call] = [json.loads(line) for line in fake_opa.read_text().splitlines()]
    assert call["argv"][:3] == ["test", "--format", "json"]


def test_opa_engine_without_binary(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RegoError, match="not on PATH"):
        gate(policy(GOOD), RegoOptions(engine="opa"))


# ---- an OPA server, faked ----------------------------------------------------------------


class FakeOpa(BaseHTTPRequestHandler):
    policies: dict[str, str] = {}
    data: dict[str, Any] = {}
    queries: list[dict[str, Any]] = []

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def _reply(self, code: int, doc: Any = None) -> None:
        payload = b"" if doc is None else json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_PUT(self) -> None:
        body = self._body()
        if self.path.startswith("/v1/policies/"):
            self.policies[self.path.removeprefix("/v1/policies/")] = body.decode()
            self._reply(200, {})
        else:
            self.data[self.path.removeprefix("/v1/data/")] = json.loads(body)
            self._reply(204)

    def do_DELETE(self) -> None:
        self.policies.pop(self.path.removeprefix("/v1/policies/"), None)
        self._reply(200, {})

    def do_POST(self) -> None:
        request = json.loads(self._body())
        self.queries.append(request)
        if request["query"].startswith("x := data."):
            self._reply(200, {"result": [{"x": True}] if "test_a" in request["query"] else []})
            return
        deny = {"deny_admin_from_world": [{"msg": "from server", "rule": "web"}]}
        self._reply(200, {"result": [{"x": {"fwc": deny}}]})


@pytest.fixture
def opa_server() -> Iterator[tuple[str, type[FakeOpa]]]:
    FakeOpa.policies, FakeOpa.data, FakeOpa.queries = {}, {}, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpa)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", FakeOpa
    finally:
        server.shutdown()
        server.server_close()


def test_server_engine(opa_server: tuple[str, type[FakeOpa]], tmp_path: Path) -> None:
    url, fake = opa_server
    data = write(tmp_path, "d.json", '{"fwc_config": {"max_world_ports": 5}}')
    findings = gate(policy(GOOD), RegoOptions(opa_url=url, data_files=(data,)))
    assert [(f.rule, f.message) for f in findings] == [("web", "from server")]
    assert fake.data == {"fwc_config": {"max_world_ports": 5}}
    assert fake.policies == {}  # uploaded for the run, deleted afterwards
    [query] = fake.queries
    assert query["input"]["name"] == "good"


def test_server_tests(opa_server: tuple[str, type[FakeOpa]], tmp_path: Path) -> None:
    url, _ = opa_server
    write(
        tmp_path,
        "t_test.rego",
        "package t\n\nimport rego.v1\n\ntest_a if true\n\ntest_b if false\n",
    )
    report = run_tests(RegoOptions(opa_url=url, policy_dirs=(tmp_path,)))
    assert [(r.name, r.passed) for r in report.results] == [
        ("data.t.test_a", True),
        ("data.t.test_b", False),
    ]


def test_unreachable_server_is_an_error() -> None:
    with pytest.raises(RegoError):
        gate(policy(GOOD), RegoOptions(opa_url="http://127.0.0.1:9"))


QUOTED = r"""
name: quoted
default_action: deny
rules:
  - name: web
    priority: 1
    action: allow
    protocol: tcp
    destination_ports: [443]
    description: "say \"hi\" \\ to\tall\nof \u00e9 you"
"""

QUOTED_RULES = r"""
package fwc

import rego.v1

warn contains msg if {
	some rule in input.rules
	rule.description == "say \"hi\" \\ to\tall\nof é you"
	msg := concat("", ["echo: ", rule.description])
}
"""


def test_strings_with_quotes_backslashes_and_newlines_reach_rego_intact(tmp_path: Path) -> None:
    """The engine keeps strings JSON-escaped; the input must be too, or the literal above
    would not match and the answer would not parse."""
    built = policy(QUOTED)
    assert _engine_input(built) == json.loads(json.dumps(policy_doc(built)))
    write(tmp_path, "user.rego", QUOTED_RULES)
    findings = gate(built, RegoOptions(policy_dirs=(tmp_path,)))
    assert [f.message for f in findings] == ['echo: say "hi" \\ to\tall\nof é you']
