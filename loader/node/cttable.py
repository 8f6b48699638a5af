"""The nftables table `inet fwc_ct_<policy>` that fw-load owns so that this network namespace
tracks connections: conntrack creates entries only while some netfilter hook needs it.

Its one chain (hook prerouting, priority raw, policy accept) holds one rule that reads
`ct state` and counts, with no verdict: it changes no packet's fate, and the kernel keeps
conntrack's hooks registered for as long as it exists.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

from fwc.artifact.manifest import Manifest
from fwc.loader.errors import LoaderError
from fwc.loader.kernel.meta import read_meta_map
from fwc.loader.node import pins

PREFIX = "fwc_ct_"
CHAIN = "prerouting"
_TIMEOUT = 30.0


class NftMissing(LoaderError):
    """The nftables command line is not installed."""


def needed(manifest: Manifest) -> bool:
    """Whether the artifact's program asks conntrack for connection states."""
    return manifest.conntrack


def name(policy: str) -> str:
    """The table's name for a policy (policy names are nftables identifiers as they are)."""
    return PREFIX + policy


def describe(policy: str) -> str:
    return f"nftables table inet {name(policy)}"


def ruleset(policy: str) -> str:
    """The `nft -f` input that makes the table exactly ours, whether it exists or not: one
    transaction, so the rule is never absent while it is replaced."""
    table = f"inet {name(policy)}"
    return (
        f"add table {table}\n"
        f"add chain {table} {CHAIN} "
        "{ type filter hook prerouting priority -300; policy accept; }\n"
        f"flush chain {table} {CHAIN}\n"
        f"add rule {table} {CHAIN} ct state "
        "{ invalid, established, related, new, untracked } counter "
        f'comment "fw-load: conntrack for XDP policy {policy}"\n'
    )


def _nft(nft: str, args: list[str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [nft, *args], input=stdin, capture_output=True, text=True, timeout=_TIMEOUT
        )
    except FileNotFoundError:
        raise NftMissing(
            f"`{nft}` not found: fw-load needs the nftables command line (Debian package "
            "nftables) to make this namespace track connections for a policy with state"
        ) from None
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LoaderError(f"`{nft} {' '.join(args)}` failed: {exc}") from None


def _failure(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
    return lines[0] if lines else f"exit {result.returncode}"


def exists(policy: str, nft: str = "nft") -> bool:
    """Whether this namespace has the policy's table."""
    result = _nft(nft, ["list", "table", "inet", name(policy)])
    if result.returncode == 0:
        return True
    if "No such file or directory" in result.stderr:
        return False
    raise LoaderError(f"cannot list {describe(policy)}: {_failure(result)}")


def ensure(policy: str, nft: str = "nft") -> None:
    """Create the table, or put it back as it should be (idempotent)."""
    result = _nft(nft, ["-f", "-"], ruleset(policy))
    if result.returncode != 0:
        raise LoaderError(f"cannot create {describe(policy)}: {_failure(result)}")


def delete(policy: str, nft: str = "nft") -> bool:
    """Remove the table; whether it was there."""
    result = _nft(nft, ["delete", "table", "inet", name(policy)])
    if result.returncode == 0:
        return True
    if "No such file or directory" in result.stderr:
        return False
    raise LoaderError(f"cannot delete {describe(policy)}: {_failure(result)}")


def packets(policy: str, nft: str = "nft") -> int | None:
    """The rule's counter (packets the hook saw), or None when the table is absent."""
    result = _nft(nft, ["-j", "list", "table", "inet", name(policy)])
    if result.returncode != 0:
        return None
    try:
        items = json.loads(result.stdout).get("nftables", [])
    except (ValueError, AttributeError):
        return None
    for item in items:
        for expr in item.get("rule", {}).get("expr", []):
            if "counter" in expr:
                return int(expr["counter"].get("packets", 0))
    return 0


def forget(policy: str, nft: str = "nft") -> bool:
    """Remove the table of a policy whose pins are gone, if it is there; whether it was.
    Without `nft` there is nothing fw-load can have made, so nothing to remove."""
    try:
        return delete(policy, nft)
    except NftMissing:
        return False


def had_table(policy: pins.PolicyPins, read: Callable[[Path], Manifest] = read_meta_map) -> bool:
    """Whether the pinned policy may own a table: its manifest has state rules, or cannot be
    read (then asking nft is the safe side)."""
    if not policy.exists():
        return False
    try:
        return needed(read(policy.meta))
    except LoaderError:
        return True
