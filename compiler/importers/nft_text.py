"""A rule of `nft -j` output written back in nft's own syntax, for comments and findings."""

from __future__ import annotations

import json
from typing import Any


def _value(v: Any) -> str:
    if isinstance(v, dict):
        if "prefix" in v:
            return f"{v['prefix'].get('addr')}/{v['prefix'].get('len')}"
        if "range" in v and isinstance(v["range"], list) and len(v["range"]) == 2:
            return f"{_value(v['range'][0])}-{_value(v['range'][1])}"
        if "set" in v and isinstance(v["set"], list):
            return "{ " + ", ".join(_value(x) for x in v["set"]) + " }"
        if "payload" in v:
            return f"{v['payload'].get('protocol')} {v['payload'].get('field')}"
        if "meta" in v:
            return f"meta {v['meta'].get('key')}"
        if "ct" in v:
            return f"ct {v['ct'].get('key')}"
        if "&" in v and isinstance(v["&"], list) and len(v["&"]) == 2:
            mask = v["&"][1]
            shown = "|".join(map(_value, mask)) if isinstance(mask, list) else _value(mask)
            return f"{_value(v['&'][0])} & ({shown})"
        raise ValueError(v)
    if isinstance(v, list):
        return ",".join(_value(x) for x in v)
    if isinstance(v, (str, int)) and not isinstance(v, bool):
        return str(v)
    raise ValueError(v)


def _expr(e: Any) -> str:
    kind, body = next(iter(e.items()))
    if kind == "match":
        op = body.get("op", "==")
        masked = isinstance(body["left"], dict) and "&" in body["left"]
        shown = "" if op in ("==", "in") and not masked else f"{op} "
        return f"{_value(body['left'])} {shown}{_value(body['right'])}"
    if kind in ("jump", "goto"):
        return f"{kind} {body['target']}"
    if body is None or kind in ("counter", "log", "reject", "limit"):
        return str(kind)
    raise ValueError(e)


def rule_text(body: dict[str, Any]) -> str:
    """`ip saddr 10.0.0.0/8 tcp dport 22 accept`; the JSON itself for what it cannot read."""
    exprs = body.get("expr", [])
    try:
        text = " ".join(_expr(e) for e in exprs)
    except (ValueError, KeyError, TypeError, AttributeError, StopIteration):
        text = json.dumps(exprs, separators=(",", ":"))
    comment = body.get("comment")
    return f'{text} comment "{comment}"' if comment else text
