"""Renders a plan into C source through the Jinja templates in templates/bpf/, with a source map."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import jinja2

from fwc import __version__
from fwc.artifact import claims
from fwc.compiler.backend.manifest import build_manifest
from fwc.compiler.backend.plan import Plan

_UNSAFE = re.compile(r"[^A-Za-z0-9_.:,=() -]")
# A place (file:line) or a CIDR may keep its slashes: with no `*` allowed, no text can
# open or close a C comment.
_UNSAFE_PLACE = re.compile(r"[^A-Za-z0-9_.:,=()/+ -]")
# Lines the templates write around a rule's block; the renderer drops them and keeps
# their positions as the source map. NUL cannot come from any template variable.
_BLOCK_START = "\0rule "
_BLOCK_END = "\0end"


@dataclass(frozen=True)
class RuleLines:
    """Lines `first` to `last` (1-based, inclusive) of the C are rule `rule_id`'s block."""

    rule_id: int
    first: int
    last: int


@dataclass(frozen=True)
class Rendered:
    """The C source of a plan and the line range of every rule block in it."""

    source: str
    rules: tuple[RuleLines, ...]

    def rule_at(self, line: int) -> int | None:
        """The id of the rule whose block holds 1-based `line`, if any."""
        return next((r.rule_id for r in self.rules if r.first <= line <= r.last), None)


def template_dir() -> Path:
    return Path(__file__).parents[2] / "templates" / "bpf"


def headers() -> dict[str, bytes]:
    """The C headers every generated program includes, by file name."""
    return {p.name: p.read_bytes() for p in sorted(template_dir().glob("*.h"))}


def comment(value: object) -> str:
    """`value` as text that is safe inside a C block comment: no `*`, `/`, newline or backslash."""
    return _UNSAFE.sub("_", str(value))[:80]


# An interface glob may keep its `*`, `?`, `[`, `]` and `!`: with no `/` allowed, no text
# can close the comment.
_UNSAFE_GLOB = re.compile(r"[^A-Za-z0-9_.:,=()*?\[\]! -]")


def glob(value: object) -> str:
    """Interface globs as comment text: like `comment`, but their wildcards stay readable."""
    return _UNSAFE_GLOB.sub("_", str(value))[:160]


def place(value: object) -> str:
    """A file:line or a CIDR as comment text: like `comment`, but slashes stay readable."""
    return _UNSAFE_PLACE.sub("_", str(value))[:160]


def u8(value: int) -> str:
    return f"0x{value:02x}"


def u32(value: int) -> str:
    return f"0x{value:08x}U"


def u64(value: int) -> str:
    return f"0x{value:016x}ULL"


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir())),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(comment=comment, place=place, glob=glob, u8=u8, u32=u32, u64=u64)
    env.globals.update(block_start=_BLOCK_START, block_end=_BLOCK_END)
    return env


def render(plan: Plan) -> str:
    """The C source of `plan`: the strategy's template filled with the plan's program."""
    return render_mapped(plan).source


def render_mapped(plan: Plan) -> Rendered:
    """The C source of `plan` and its source map."""
    template = environment().get_template(plan.template)
    claim_words = claims.words(plan_claims(plan))
    marked = template.render(fwc_version=__version__, claim_words=claim_words, **vars(plan.program))
    return _source_map(marked)


def plan_claims(plan: Plan) -> bytes:
    """The digest of what the artifact's manifest will claim (artifact/claims.py): the
    manifest of the plan (its program entry and compiler are left out) and its seed bytes."""
    manifest = build_manifest(plan, "", 0)
    seed_sha256 = {
        entry.section: hashlib.sha256(seed.data).hexdigest()
        for seed, entry in zip(plan.seeds, manifest.seeds, strict=True)
    }
    return claims.digest_of(manifest, seed_sha256)


def _source_map(marked: str) -> Rendered:
    lines: list[str] = []
    blocks: list[RuleLines] = []
    start: tuple[int, int] | None = None
    for text in marked.splitlines(keepends=True):
        if text.startswith(_BLOCK_START):
            start = (int(text[len(_BLOCK_START) :]), len(lines) + 1)
        elif text.startswith(_BLOCK_END):
            if start is not None:
                blocks.append(RuleLines(start[0], start[1], len(lines)))
            start = None
        else:
            lines.append(text)
    return Rendered("".join(lines), tuple(blocks))
