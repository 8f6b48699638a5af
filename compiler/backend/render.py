"""Renders a plan into C source through the Jinja templates in templates/bpf/."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import jinja2

from fwc import __version__
from fwc.compiler.backend.plan import Plan

_UNSAFE = re.compile(r"[^A-Za-z0-9_.:,=() -]")


def template_dir() -> Path:
    return Path(__file__).parents[2] / "templates" / "bpf"


def headers() -> dict[str, bytes]:
    """The C headers every generated program includes, by file name."""
    return {p.name: p.read_bytes() for p in sorted(template_dir().glob("*.h"))}


def comment(value: object) -> str:
    """`value` as text that is safe inside a C block comment: no `*`, `/`, newline or backslash."""
    return _UNSAFE.sub("_", str(value))[:80]


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
    env.filters.update(comment=comment, u8=u8, u32=u32, u64=u64)
    return env


def render(plan: Plan) -> str:
    """The C source of `plan`: the strategy's template filled with the plan's context."""
    template = environment().get_template(plan.template)
    return template.render(fwc_version=__version__, **plan.context)
