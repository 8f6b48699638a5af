"""What a manifest claims about its program, bound into the program itself.

The compiler computes a digest of the manifest's claims (policy, default action, dry run,
strategy, rules, counters, maps and the seed tables' bytes: everything but the program
entry, the compiler entry and fw-load's record) and emits it into the program as five
64-bit loads into r0: a marker, then the digest. fw-load reads them back and refuses a
manifest whose claims are not the ones the program was compiled with (docs/artifact.md).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

from fwc.artifact import codec
from fwc.artifact.manifest import Manifest

MAGIC = 0x6677635F636C6D73  # the first load: "smlc_cwf" in memory, a fixed marker
WORDS = 4  # the digest's 64-bit words, after the marker
_LD_IMM64_R0 = bytes([0x18, 0x00, 0x00, 0x00])  # BPF_LD | BPF_IMM | BPF_DW, dst r0, off 0
_SLOT = 16  # one ld_imm64: two instructions
_LEFT_OUT = ("program", "compiler", "fw_load")


class ClaimsError(ValueError):
    """The program's claims digest is missing, twice there, or not the manifest's."""


def digest(manifest: Manifest, seed_data: Mapping[str, bytes | memoryview]) -> bytes:
    """The 32-byte digest of what `manifest` claims, with each seed section's bytes
    (`seed_data`: section name -> bytes) standing in by its sha256."""
    return digest_of(manifest, {s: hashlib.sha256(d).hexdigest() for s, d in seed_data.items()})


def digest_of(manifest: Manifest, seed_sha256: Mapping[str, str]) -> bytes:
    """`digest` from each seed section's sha256 (hex): a caller that builds sections one at a
    time need not hold them all."""
    document = {k: v for k, v in codec.to_json(manifest).items() if k not in _LEFT_OUT}
    if not manifest.conntrack:
        # claimed by leaving it out, so a policy without state keeps the digest it had before
        del document["conntrack"]
    document["seed_sha256"] = dict(sorted(seed_sha256.items()))
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).digest()


def words(claims: bytes) -> tuple[str, ...]:
    """The digest as the four C literals the template loads after the marker ("0x...")."""
    return tuple(f"{int.from_bytes(claims[i : i + 8], 'little'):#018x}" for i in range(0, 32, 8))


def _load(value: int) -> bytes:
    """The bytes of `r0 = value ll`."""
    raw = value.to_bytes(8, "little")
    return _LD_IMM64_R0 + raw[:4] + bytes(4) + raw[4:]


_MARKER = _load(MAGIC)


def find(program: bytes | memoryview) -> int:
    """The offset of the digest's first load in `program`; ClaimsError unless exactly one."""
    view = bytes(program)
    at = [i for i in _occurrences(view, _MARKER) if i % 8 == 0]
    if not at:
        raise ClaimsError("the program carries no claims digest")
    if len(at) > 1:
        raise ClaimsError("the program carries its claims digest twice")
    start = at[0] + _SLOT
    body = view[start : start + WORDS * _SLOT]
    if len(body) != WORDS * _SLOT or any(
        body[i : i + 4] != _LD_IMM64_R0 or body[i + 8 : i + 12] != bytes(4)
        for i in range(0, len(body), _SLOT)
    ):
        raise ClaimsError("the program's claims digest is malformed")
    return start


def read(program: bytes | memoryview) -> bytes:
    """The claims digest the program carries (32 bytes)."""
    start = find(program)
    view = bytes(program)
    return b"".join(
        view[i + 4 : i + 8] + view[i + 12 : i + 16]
        for i in range(start, start + WORDS * _SLOT, _SLOT)
    )


def write(program: bytes | memoryview, claims: bytes) -> bytes:
    """`program` with its claims digest replaced by `claims` (tests build artifacts so)."""
    start = find(program)
    out = bytearray(program)
    for n in range(WORDS):
        value = int.from_bytes(claims[n * 8 : n * 8 + 8], "little")
        out[start + n * _SLOT : start + (n + 1) * _SLOT] = _load(value)
    return bytes(out)


def masked(program: bytes | memoryview) -> bytes:
    """`program` with its claims digest zeroed, or as is without one: the code a live update
    compares (a new rule set changes the claims, not the code)."""
    try:
        return write(program, bytes(32))
    except ClaimsError:
        return bytes(program)


def check(
    program: bytes | memoryview, manifest: Manifest, seed_data: Mapping[str, bytes | memoryview]
) -> None:
    """ClaimsError unless the program carries the digest of exactly `manifest`'s claims."""
    if read(program) != digest(manifest, seed_data):
        raise ClaimsError(
            "the manifest does not describe this program: its claims (policy, default action, "
            "dry run, strategy, rules, maps, tables) differ from those compiled into it"
        )


def _occurrences(data: bytes, needle: bytes) -> list[int]:
    found: list[int] = []
    at = data.find(needle)
    while at >= 0:
        found.append(at)
        at = data.find(needle, at + 1)
    return found
