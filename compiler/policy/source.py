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

MAX_BYTES = 32 * 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 5_000_000

# A path from the document root: mapping keys and sequence indexes.
NodePath = tuple[str | int, ...]

_Loader: type[yaml.SafeLoader]
try:
    _Loader = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _Loader = yaml.SafeLoader


# A 1-based (line, column) position; Location objects are built only when asked for,
# because a large policy has hundreds of thousands of nodes and few findings.
Position = tuple[int, int]

# Loading records the positions of paths this short (the top level, each rule and each
# set): a clean policy needs only its rules' lines. The first question about a deeper
# path reads the text again and records every position.
SHALLOW = 2


@dataclass
class Document:
    """A loaded policy file: its value, and where each value and key came from."""

    file: str
    value: Any
    sha256: str
    positions: dict[NodePath, Position] = field(default_factory=dict)
    key_positions: dict[NodePath, Position] = field(default_factory=dict)
    # The text, while positions deeper than SHALLOW are still unrecorded.
    text: str | None = field(default=None, repr=False, compare=False)

    def where(self, path: NodePath) -> Location:
        """The location of `path`, or of its nearest ancestor that has one."""
        if len(path) > SHALLOW and self.text is not None:
            self._record_all()
        while path:
            pos = self.positions.get(path)
            if pos is not None:
                return Location(self.file, *pos)
            path = path[:-1]
        return Location(self.file, *self.positions.get((), (1, 1)))

    def key_where(self, path: NodePath) -> Location:
        """The location of the key that introduces `path` (else of its value)."""
        if len(path) > SHALLOW and self.text is not None:
            self._record_all()
        pos = self.key_positions.get(path)
        return Location(self.file, *pos) if pos is not None else self.where(path)

    def _record_all(self) -> None:
        assert self.text is not None
        full = Document(self.file, None, self.sha256)
        _Composer(self.text, full, shallow=False).run()
        self.positions, self.key_positions = full.positions, full.key_positions
        self.text = None


class _Stop(Exception):
    """Ends the walk with one finding."""

    def __init__(self, finding: Finding) -> None:
        super().__init__(finding.message)
        self.finding = finding


def load_file(path: str | Path) -> tuple[Document | None, list[Finding]]:
    name = str(path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        return None, [error("FWC008", f"cannot read {name}: {reason}", Location(name))]
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
    doc = Document(file=file, value=None, sha256=digest, text=text)
    try:
        doc.value = _Composer(text, doc, shallow=True).run()
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

    def __init__(self, text: str, doc: Document, shallow: bool) -> None:
        self.loader: Any = _Loader(text)
        self.doc = doc
        # Record the positions of paths up to SHALLOW long only, else of every path.
        self.deepest = SHALLOW if shallow else MAX_DEPTH + 1
        self.anchors: dict[str, tuple[Any, int]] = {}
        # Plain scalars resolve to immutable values, and keys repeat in every rule.
        self.plain: dict[str, Any] = {}

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

    def too_many(self, mark: Any) -> _Stop:
        return self.stop("FWC005", f"the document expands to more than {MAX_NODES} nodes", mark)

    def compose_document(self) -> Any:
        """The document's value; this loop is the hot path of a large policy, kept flat."""
        get_event = self.loader.get_event
        positions = self.doc.positions
        key_positions = self.doc.key_positions
        scalar = self.construct_scalar
        plain = self.plain
        deepest = self.deepest
        anchors = self.anchors
        scalar_event, alias_event = yaml.ScalarEvent, yaml.AliasEvent
        sequence_start, mapping_start = yaml.SequenceStartEvent, yaml.MappingStartEvent
        sequence_end, mapping_end = yaml.SequenceEndEvent, yaml.MappingEndEvent
        nodes = 0  # expanded nodes so far, aliases counted at their full size
        # The open containers, innermost last. A mapping frame waits for a key
        # (pending is _NO_KEY) or for the value of `pending`.
        stack: list[_Frame] = []
        top: _Frame | None = None
        while True:
            ev = get_event()
            cls = type(ev)
            mark = ev.start_mark
            is_key = top is not None and top.keys is not None and top.pending is _NO_KEY
            if cls is scalar_event:
                nodes += 1
                # Plain untagged scalars (keys above all) repeat; their values are cached.
                value = _NO_KEY
                if ev.tag is None and not ev.style:
                    value = plain.get(ev.value, _NO_KEY)
                if value is _NO_KEY:
                    value = scalar(ev)
                if ev.anchor:
                    anchors[ev.anchor] = (value, 1)
            elif cls is alias_event:
                if ev.anchor not in anchors:
                    raise self.stop("FWC001", f"unknown alias *{ev.anchor}", mark)
                value, size = anchors[ev.anchor]
                if is_key and not _is_scalar_key(value):
                    raise self.stop("FWC007", "mapping keys must be plain scalars", mark)
                nodes += size
            elif cls is sequence_start or cls is mapping_start:
                if is_key:
                    raise self.stop("FWC007", "mapping keys must be plain scalars", mark)
                if len(stack) >= MAX_DEPTH:
                    raise self.stop(
                        "FWC005", f"the document nests deeper than {MAX_DEPTH} levels", mark
                    )
                nodes += 1
                if nodes > MAX_NODES:
                    raise self.too_many(mark)
                is_seq = cls is sequence_start
                tag = "tag:yaml.org,2002:seq" if is_seq else "tag:yaml.org,2002:map"
                if ev.tag not in (None, "!", tag):
                    raise self.stop("FWC007", f"unsupported tag {ev.tag}", mark)
                if top is None:
                    path: NodePath = ()
                elif top.keys is None:
                    path = (*top.path, len(top.container))
                else:
                    path = (*top.path, top.pending)
                if len(path) <= deepest:
                    positions[path] = (mark.line + 1, mark.column + 1)
                top = _Frame(
                    [] if is_seq else {},
                    path,
                    None if is_seq else {},
                    ev.anchor,
                    nodes,
                    len(path) < deepest,
                )
                stack.append(top)
                continue
            elif cls is sequence_end or cls is mapping_end:
                done = stack.pop()
                if done.anchor:
                    anchors[done.anchor] = (done.container, nodes - done.start + 1)
                top = stack[-1] if stack else None
                if top is None:
                    return done.container
                if top.keys is None:
                    top.container.append(done.container)
                else:
                    top.container[top.pending] = done.container
                    top.pending = _NO_KEY
                continue
            else:
                raise self.stop("FWC001", "unexpected YAML event", mark)
            # A scalar or an alias: `value` goes into the open container.
            if nodes > MAX_NODES:
                raise self.too_many(mark)
            if top is None:
                return value
            if top.keys is None:
                if top.record:
                    positions[(*top.path, len(top.container))] = (mark.line + 1, mark.column + 1)
                top.container.append(value)
            elif is_key:
                key = value if type(value) is str else self.key(value, mark)
                first = top.keys.get(key)
                if first is not None:
                    raise self.stop(
                        "FWC003",
                        f"duplicate key '{key}' (first defined at line {first.line + 1})",
                        mark,
                    )
                top.keys[key] = mark
                if top.record:
                    key_positions[(*top.path, key)] = (mark.line + 1, mark.column + 1)
                top.pending = key
            else:
                if top.record:
                    positions[(*top.path, top.pending)] = (mark.line + 1, mark.column + 1)
                top.container[top.pending] = value
                top.pending = _NO_KEY

    def key(self, value: Any, mark: Any) -> str:
        """A mapping key that is not a string, as one (a collection is no key)."""
        if not _is_scalar_key(value):
            raise self.stop("FWC007", "mapping keys must be plain scalars", mark)
        return value if isinstance(value, str) else str(value)

    def construct_scalar(self, ev: Any) -> Any:
        """A scalar's value; compose_document looks plain ones up in the cache first."""
        tag = ev.tag
        # A plain scalar's style is None from the pure parser and "" from libyaml's.
        plain = tag is None and not ev.style
        if tag is None or tag == "!":
            if ev.style in ("'", '"', "|", ">"):
                return ev.value  # quoted and block scalars are strings
            tag = self.loader.resolve(yaml.ScalarNode, ev.value, ev.implicit)
        if tag == _STR:
            if plain:
                self.plain[ev.value] = ev.value
            return ev.value
        constructor = yaml.SafeLoader.yaml_constructors.get(tag)
        if constructor is None:
            raise self.stop("FWC007", f"unsupported tag {tag}", ev.start_mark)
        node = yaml.ScalarNode(tag, ev.value, ev.start_mark, ev.end_mark, ev.style)
        try:
            value = constructor(self.loader, node)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
            raise self.stop(
                "FWC007", f"cannot read scalar {ev.value!r}: {exc}", ev.start_mark
            ) from None
        if plain:
            self.plain[ev.value] = value
        return value


class _Frame:
    """An open sequence (keys is None) or mapping being filled."""

    __slots__ = ("anchor", "container", "keys", "path", "pending", "record", "start")

    def __init__(
        self,
        container: Any,
        path: NodePath,
        keys: dict[str, Any] | None,
        anchor: str | None,
        start: int,
        record: bool,
    ) -> None:
        self.container = container
        self.path = path
        self.keys = keys  # the mark of each key so far, for the duplicate-key message
        self.anchor = anchor
        self.start = start
        self.record = record  # whether the positions of the children are recorded
        self.pending: Any = _NO_KEY


def _is_scalar_key(value: object) -> bool:
    return value is None or isinstance(value, (str, int, bool, float))


_STR = "tag:yaml.org,2002:str"
_NO_KEY: Any = object()
