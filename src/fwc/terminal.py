"""Text bound for a terminal or a log: control characters escaped, never written raw.

A rule name, an address, a file name or a manifest field can hold ESC, CR, a newline or a
bidirectional override; raw, they could recolour the screen or forge a log line.
"""

from __future__ import annotations

import re

# C0 and C1 controls, DEL, the Unicode line and paragraph separators and the bidi controls
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_LINE_CONTROL = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(text: str) -> str:
    """`text` on one line: every control character as `\\x1b`, `\\u202e`, ... (newlines too)."""
    return _CONTROL.sub(_escaped, text)


def escape_lines(text: str) -> str:
    """`text` with every control character escaped but the newlines between its lines."""
    return _LINE_CONTROL.sub(_escaped, text)
