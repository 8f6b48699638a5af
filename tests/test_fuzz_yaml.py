"""Random and mutated YAML never escapes as an exception and always finishes quickly."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fwc.compiler.check import CheckOptions, check_file

ROOT = Path(__file__).resolve().parent.parent
SEEDS = [
    p.read_text(encoding="utf-8")
    for p in sorted((ROOT / "policies").glob("*.yaml"))
    if ".cases." not in p.name
]
SEED_VALUES = [yaml.safe_load(s) for s in SEEDS]
BUDGET_S = 5.0

_FIELD_NAMES = [
    "name", "priority", "action", "protocol", "source_cidrs", "destination_cidrs",
    "source_ports", "destination_ports", "tcp_flags", "icmp_types", "rate_limit_pps",
    "rate_limit_burst", "log", "description", "sets", "rules", "default_action",
    "interfaces", "include", "version", "generated_at",
]  # fmt: skip
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(
        [
            "$mgmt_nets", "$web_ports", "$nope", "10.0.0.1/33", "::/0", "0-65535", "80-",
            "SYN,!ACK", "!", "rate_limit", "icmpv6", "2024-01-01", "*", "&a", "{", "[", "'",
        ]
    ),
)  # fmt: skip
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(_FIELD_NAMES) | st.text(max_size=5), inner, max_size=4),
    ),
    max_leaves=12,
)


def run_bytes(tmp: Path, data: bytes) -> None:
    path = tmp / "fuzz.yaml"
    path.write_bytes(data)
    start = time.perf_counter()
    result = check_file(path, CheckOptions())
    assert time.perf_counter() - start < BUDGET_S
    for finding in result.findings:
        assert finding.location.file == str(path)
        assert finding.message


def _mutate(value: Any, data: st.DataObject) -> Any:
    """Drops, duplicates, retypes or replaces one node somewhere in `value`."""
    if isinstance(value, dict) and value and data.draw(st.booleans()):
        key = data.draw(st.sampled_from(sorted(value)))
        op = data.draw(st.sampled_from(["drop", "replace", "recurse", "add", "rename"]))
        out = dict(value)
        if op == "drop":
            del out[key]
        elif op == "replace":
            out[key] = data.draw(_values)
        elif op == "add":
            out[data.draw(st.sampled_from(_FIELD_NAMES))] = data.draw(_values)
        elif op == "rename":
            out[key + data.draw(st.sampled_from(["s", "_", "X"]))] = out.pop(key)
        else:
            out[key] = _mutate(out[key], data)
        return out
    if isinstance(value, list) and value:
        i = data.draw(st.integers(0, len(value) - 1))
        op = data.draw(st.sampled_from(["drop", "dup", "replace", "recurse"]))
        out_list = list(value)
        if op == "drop":
            del out_list[i]
        elif op == "dup":
            out_list.insert(i, out_list[i])
        elif op == "replace":
            out_list[i] = data.draw(_values)
        else:
            out_list[i] = _mutate(out_list[i], data)
        return out_list
    return data.draw(_values)


_settings = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@_settings
@given(st.data())
def test_mutated_policies(tmp_path: Path, data: st.DataObject) -> None:
    value = data.draw(st.sampled_from(SEED_VALUES))
    for _ in range(data.draw(st.integers(1, 4))):
        value = _mutate(value, data)
    run_bytes(tmp_path, yaml.safe_dump(value, default_flow_style=data.draw(st.booleans())).encode())


@_settings
@given(st.data())
def test_mutated_text(tmp_path: Path, data: st.DataObject) -> None:
    """Byte-level damage: splices, deletions and hostile fragments in a valid file."""
    text = data.draw(st.sampled_from(SEEDS)).encode()
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(text)))
        op = data.draw(st.sampled_from(["insert", "delete", "bytes"]))
        if op == "delete":
            text = text[:at] + text[at + data.draw(st.integers(1, 40)) :]
        elif op == "bytes":
            text = text[:at] + data.draw(st.binary(max_size=8)) + text[at:]
        else:
            fragment = data.draw(
                st.sampled_from(
                    [
                        b"\n---\n", b"&a ", b"*a", b"!!python/object:x ", b"\t", b"? ", b"- ",
                        b": ", b"{", b"]", b"\n  - name: x\n    priority: 1\n", b"%YAML 1.1\n",
                        b"\xef\xbb\xbf", b"\x00", b"<<: *a\n", b"!!binary ", b"!!set ",
                    ]
                )
            )  # fmt: skip
            text = text[:at] + fragment + text[at:]
    run_bytes(tmp_path, text)


@_settings
@given(st.binary(max_size=300))
def test_random_bytes(tmp_path: Path, data: bytes) -> None:
    run_bytes(tmp_path, data)


@_settings
@given(st.integers(1, 5000), st.sampled_from(["[", "{a: ", "- ", "a:\n  "]))
def test_deep_nesting(tmp_path: Path, depth: int, opener: str) -> None:
    if opener == "a:\n  ":
        text = "".join(f"{' ' * (2 * i)}k{i}:\n" for i in range(min(depth, 400))) + "x: 1\n"
    else:
        closer = {"[": "]", "{a: ": "}", "- ": ""}[opener]
        text = opener * depth + "1" + closer * depth
    run_bytes(tmp_path, text.encode())


@_settings
@given(st.integers(2, 12), st.integers(2, 12))
def test_alias_expansion(tmp_path: Path, width: int, levels: int) -> None:
    lines = ["a0: &a0 [" + ", ".join(["x"] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    lines.append(f"rules: *a{levels - 1}")
    run_bytes(tmp_path, "\n".join(lines).encode())
