"""The one rule for a policy name, which becomes a directory under the pin root.

Both halves check it where a name enters: the policy schema, the manifest schema and
decoder, and fw-load before it builds any pin path (apply, stats, events, detach).
"""

from __future__ import annotations

import re

# lowercase letters, digits, _ and -, starting with a letter or digit, at most 48 long:
# no "/", no "..", no leading "_" (fw-load's own _staging- and _trash- directories), no dot
RULE = "[a-z0-9][a-z0-9_-]{0,47}"
_NAME = re.compile(RULE)
# for JSON Schema, which searches: "(?![\s\S])" ends the string in both ECMA-262 and Python,
# where "$" would also match before a trailing newline
SCHEMA_PATTERN = f"^{RULE}(?![\\s\\S])"
WORDS = "lowercase letters, digits, _ and -, starting with a letter or digit, up to 48 long"


class PolicyNameError(ValueError):
    """The text is not a policy name; the message is one line."""


def is_policy_name(text: object) -> bool:
    """Whether `text` is a whole policy name (no trailing newline, nothing around it)."""
    return isinstance(text, str) and _NAME.fullmatch(text) is not None


def check_policy_name(text: object) -> str:
    """`text` if it is a policy name; else PolicyNameError naming it (escaped, one line)."""
    if isinstance(text, str) and _NAME.fullmatch(text):
        return text
    raise PolicyNameError(f"{text!r} is not a policy name ({WORDS})")
