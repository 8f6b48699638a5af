"""Policies from YAML text for the compiler tests, through the real loader and normalizer."""

from __future__ import annotations

from fwc.compiler.policy.findings import has_errors
from fwc.compiler.policy.ir import Policy
from fwc.compiler.policy.normalize import normalize
from fwc.compiler.policy.source import load_bytes, load_file


def policy_of(text: str, file: str = "test.yaml") -> Policy:
    doc, findings = load_bytes(text.encode(), file)
    assert doc is not None, findings
    policy, more = normalize(doc)
    assert policy is not None and not has_errors(more), more
    return policy


def policy_file(path: str) -> Policy:
    doc, findings = load_file(path)
    assert doc is not None, findings
    policy, more = normalize(doc)
    assert policy is not None and not has_errors(more), more
    return policy


def one_rule(rule: str, default: str = "deny") -> Policy:
    """A policy named t with one rule, given as the YAML of the rule's mapping (flow style)."""
    return policy_of(f"name: t\ndefault_action: {default}\nrules:\n  - {rule}\n")
