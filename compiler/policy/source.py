"""Reads a policy file into plain values, with the line and column of every node.

The gate must not trust its input: it refuses duplicate keys, several documents,
non-UTF-8 text, and anything too large, too deep or too expanded by aliases, and
it reports each as a finding instead of raising.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fwc.compiler.policy.findings import Finding, Location, error
from fwc.files import POLICY_LIMIT, FileReadError, read_bounded

MAX_BYTES = POLICY_LIMIT
MAX_DEPTH = 64
MAX_NODES = 5_000_000

# A path from the document root: mapping keys and sequence indexes.
NodePath = tuple[str | int, ...]

_Loader: type[yaml.SafeLoader]
try:
    _Loader = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _Loader = yaml.SafeLoader


# A 1-based (line, column) position.
Position = tuple[int, int]


@dataclass
class Document:
    """A loaded policy file: its value, and where each value and key came from."""

    file: str
    value: Any
    sha256: str
    positions: dict[NodePath, Position] = field(default_factory=dict)
    key_positions: dict[NodePath, Position] = field(default_factory=dict)

    def where(self, path: NodePath) -> Location:
        """The location of `path`, or of its nearest ancestor that has one."""
        while path:
            pos = self.positions.get(path)
            if pos is not None:
                return Location(self.file, *pos)
            path = path[:-1]
        return Location(self.file, *self.positions.get((), (1, 1)))

    def key_where(self, path: NodePath) -> Location:
        """The location of the key that introduces `path` (else of its value)."""
        pos = self.key_positions.get(path)
        return Location(self.file, *pos) if pos is not None else self.where(path)


class _Stop(Exception):
    """Ends the walk with one finding."""

    def __init__(self, finding: Finding) -> None:
        super().__init__(finding.message)
        self.finding = finding


def load_file(path: str | Path) -> tuple[Document | None, list[Finding]]:
    name = str(path)
    try:
        data = read_bounded(path, MAX_BYTES)
    except FileReadError as exc:
        return None, [error("FWC008", f"cannot read {name}: {exc}", Location(name))]
    return load_bytes(data, name)


def load_bytes(data: bytes, file: str) -> tuple[Document | None, list[Finding]]:
    here = Location(file, 1, 1)
    if len(data) > MAX_BYTES:
        return None, [error("FWC005", f"file is larger than {MAX_BYTES} bytes", here)]
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        return None, [
            error(
                "FWC002",
                f"byte 0x{data[exc.start]:02x} at offset {exc.start} is not valid UTF-8",
                Location(file, line, column),
            )
        ]
    if "\x00" in text:
        return None, [error("FWC002", "file contains a NUL character", here)]
    digest = hashlib.sha256(data).hexdigest()
    doc = Document(file=file, value=None, sha256=digest)
    try:
        doc.value = _Composer(text, doc).run()
    except _Stop as stop:
        return None, [stop.finding]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = Location(file, mark.line + 1, mark.column + 1) if mark else here
        problem = exc.problem or exc.context or "invalid YAML"
        return None, [error("FWC001", f"YAML syntax error: {problem}", loc)]
    except yaml.YAMLError as exc:
        return None, [error("FWC001", f"YAML error: {exc}", here)]
    return doc, []


class _Composer:
    """Builds values from the event stream without recursion, so depth is ours to bound."""

    def __init__(self, text: str, doc: Document) -> None:
        self.loader: Any = _Loader(text)
        self.doc = doc
        self.anchors: dict[str, tuple[Any, int]] = {}  # anchor -> (value, expanded nodes)
        self.nodes = 0  # expanded nodes so far, aliases counted at their full size
        self.stack: list[_Frame] = []  # the open containers, innermost last

    def loc(self, mark: Any) -> Location:
        return Location(self.doc.file, mark.line + 1, mark.column + 1)

    def stop(self, id: str, message: str, mark: Any) -> _Stop:
        return _Stop(error(id, message, self.loc(mark)))

    def run(self) -> Any:
        ld = self.loader
        try:
            ld.get_event()  # StreamStart
            if ld.check_event(yaml.StreamEndEvent):
                raise _Stop(error("FWC006", "the policy file is empty", Location(self.doc.file)))
            ld.get_event()  # DocumentStart
            value = self.compose_document()
            ld.get_event()  # DocumentEnd
            if not ld.check_event(yaml.StreamEndEvent):
                ev = ld.peek_event()
                raise self.stop(
                    "FWC004",
                    "the file holds more than one YAML document; a policy is one document",
                    ev.start_mark,
                )
            return value
        finally:
            ld.dispose()

    def compose_document(self) -> Any:
        """The document's value: each event opens a container, closes one, or is a value
        that goes into the innermost open container."""
        get_event = self.loader.get_event
        while True:
            ev = get_event()
            mark = ev.start_mark
            if type(ev) is yaml.ScalarEvent and self.stack:
                ev = self.list_items(ev)
                mark = ev.start_mark
            if isinstance(ev, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                self.open(ev)
                continue
            if isinstance(ev, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                value = self.close()
                mark = None  # its position was recorded when it opened
            elif isinstance(ev, yaml.ScalarEvent):
                value = self.scalar(ev)
            elif isinstance(ev, yaml.AliasEvent):
                value = self.alias(ev)
            else:
                raise self.stop("FWC001", "unexpected YAML event", mark)
            if not self.stack:
                return value
            self.place(value, mark)

    def list_items(self, ev: Any) -> Any:
        """Places `ev` and the scalar events after it into the innermost open list while they
        are plain, untagged, unanchored and hold "/" (no YAML 1.1 implicit type contains "/",
        so each is a string: a CIDR of a blocklist of a million). Returns the first event
        it does not take."""
        top = self.stack[-1]
        items = top.container
        if type(items) is not list:
            return ev
        positions = self.doc.positions
        path = top.path
        get_event = self.loader.get_event
        taken = 0
        mark: Any = ev.start_mark
        while (
            type(ev) is yaml.ScalarEvent
            and not ev.style  # plain: None from PyYAML, "" from libyaml
            and ev.tag is None
            and ev.anchor is None
            and "/" in ev.value
        ):
            mark = ev.start_mark
            positions[(*path, len(items))] = (mark.line + 1, mark.column + 1)
            items.append(ev.value)
            taken += 1
            ev = get_event()
        if taken:
            self.count(taken, mark)
        return ev

    def expect_key(self) -> bool:
        """Whether the next node is a mapping key."""
        return bool(self.stack) and self.stack[-1].pending is _NO_KEY

    def count(self, size: int, mark: Any) -> None:
        self.nodes += size
        if self.nodes > MAX_NODES:
            raise self.stop("FWC005", f"the document expands to more than {MAX_NODES} nodes", mark)

    def open(self, ev: Any) -> None:
        """A new sequence or mapping, recorded at its path."""
        mark = ev.start_mark
        if self.expect_key():
            raise self.stop("FWC007", "mapping keys must be plain scalars", mark)
        if len(self.stack) >= MAX_DEPTH:
            raise self.stop("FWC005", f"the document nests deeper than {MAX_DEPTH} levels", mark)
        self.count(1, mark)
        is_seq = isinstance(ev, yaml.SequenceStartEvent)
        tag = "tag:yaml.org,2002:seq" if is_seq else "tag:yaml.org,2002:map"
        if ev.tag not in (None, "!", tag):
            raise self.stop("FWC007", f"unsupported tag {ev.tag}", mark)
        path = self.child_path()
        self.doc.positions[path] = (mark.line + 1, mark.column + 1)
        self.stack.append(_Frame([] if is_seq else {}, path, ev.anchor, self.nodes))

    def close(self) -> Any:
        """The innermost container, now complete; its anchor counts every node inside."""
        done = self.stack.pop()
        if done.anchor:
            self.anchors[done.anchor] = (done.container, self.nodes - done.start + 1)
        return done.container

    def child_path(self) -> NodePath:
        """The path of the next node of the innermost open container."""
        if not self.stack:
            return ()
        top = self.stack[-1]
        if isinstance(top.container, list):
            return (*top.path, len(top.container))
        return (*top.path, top.pending)

    def scalar(self, ev: Any) -> Any:
        self.count(1, ev.start_mark)
        value = self.construct_scalar(ev)
        if ev.anchor:
            self.anchors[ev.anchor] = (value, 1)
        return value

    def alias(self, ev: Any) -> Any:
        mark = ev.start_mark
        if ev.anchor not in self.anchors:
            raise self.stop("FWC001", f"unknown alias *{ev.anchor}", mark)
        value, size = self.anchors[ev.anchor]
        if self.expect_key() and not _is_scalar_key(value):
            raise self.stop("FWC007", "mapping keys must be plain scalars", mark)
        self.count(size, mark)
        return value

    def place(self, value: Any, mark: Any) -> None:
        """Puts `value` into the innermost open container: as the next item, key or value.
        `mark` is where it starts, or None for a container (recorded when it opened)."""
        top = self.stack[-1]
        if top.pending is _NO_KEY:
            self.place_key(top, value, mark)
            return
        if mark is not None:
            self.doc.positions[self.child_path()] = (mark.line + 1, mark.column + 1)
        if isinstance(top.container, list):
            top.container.append(value)
        else:
            top.container[top.pending] = value
            top.pending = _NO_KEY

    def place_key(self, top: _Frame, value: Any, mark: Any) -> None:
        """`value` as the next key of the mapping `top`; duplicates are refused."""
        key = value if type(value) is str else self.key(value, mark)
        first = top.keys.get(key)
        if first is not None:
            raise self.stop(
                "FWC003", f"duplicate key '{key}' (first defined at line {first.line + 1})", mark
            )
        top.keys[key] = mark
        self.doc.key_positions[(*top.path, key)] = (mark.line + 1, mark.column + 1)
        top.pending = key

    def key(self, value: Any, mark: Any) -> str:
        """A mapping key that is not a string, as one (a collection is no key)."""
        if not _is_scalar_key(value):
            raise self.stop("FWC007", "mapping keys must be plain scalars", mark)
        return value if isinstance(value, str) else str(value)

    def construct_scalar(self, ev: Any) -> Any:
        """A scalar's value, resolved and constructed as yaml.SafeLoader would."""
        tag = ev.tag
        if tag is None or tag == "!":
            if ev.style in ("'", '"', "|", ">"):
                return ev.value  # quoted and block scalars are strings
            tag = self.loader.resolve(yaml.ScalarNode, ev.value, ev.implicit)
        if tag == _STR:
            return ev.value
        if tag == _MERGE:
            raise self.stop(
                "FWC007",
                "YAML merge keys (<<) are not supported: write the keys out in each mapping",
                ev.start_mark,
            )
        constructor = yaml.SafeLoader.yaml_constructors.get(tag)
        if constructor is None:
            raise self.stop("FWC007", f"unsupported tag {tag}", ev.start_mark)
        node = yaml.ScalarNode(tag, ev.value, ev.start_mark, ev.end_mark, ev.style)
        try:
            return constructor(self.loader, node)
        # PyYAML's scalar constructors trust the resolver's regexps; with an explicit tag
        # (`!!bool x`, `!!timestamp x`, `!!int ""`) they fail in every way there is
        except (yaml.YAMLError, ValueError, TypeError, OverflowError, LookupError, AttributeError):
            raise self.stop(
                "FWC007", f"{_short(ev.value)} is not a valid {_tag_name(tag)}", ev.start_mark
            ) from None


class _Frame:
    """An open sequence or mapping being filled."""

    __slots__ = ("anchor", "container", "keys", "path", "pending", "start")

    def __init__(self, container: Any, path: NodePath, anchor: str | None, start: int) -> None:
        self.container = container
        self.path = path
        self.anchor = anchor
        self.start = start  # the node count when it opened, for the size of its anchor
        self.keys: dict[str, Any] = {}  # a mapping's keys so far, with their marks
        # A sequence never waits for a key; a mapping waits for one or for its value.
        self.pending: Any = None if isinstance(container, list) else _NO_KEY


def _is_scalar_key(value: object) -> bool:
    return value is None or isinstance(value, (str, int, bool, float))


_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"
_YAML_TAG = "tag:yaml.org,2002:"


def _tag_name(tag: str) -> str:
    """`!!int` for tag:yaml.org,2002:int; any other tag as written."""
    return f"!!{tag[len(_YAML_TAG) :]}" if tag.startswith(_YAML_TAG) else tag


def _short(value: str) -> str:
    """A scalar as a message shows it: quoted, escaped, at most 40 characters."""
    return repr(value if len(value) <= 40 else value[:40] + "...")


_NO_KEY: Any = object()
