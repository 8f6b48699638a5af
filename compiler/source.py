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

from fwc.compiler.findings import Finding, Location, error

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


@dataclass
class Document:
    """A loaded policy file: its value, and where each value and key came from."""

    file: str
    value: Any
    sha256: str
    locations: dict[NodePath, Location] = field(default_factory=dict)
    key_locations: dict[NodePath, Location] = field(default_factory=dict)

    def where(self, path: NodePath) -> Location:
        """The location of `path`, or of its nearest ancestor that has one."""
        while path:
            loc = self.locations.get(path)
            if loc is not None:
                return loc
            path = path[:-1]
        return self.locations.get((), Location(self.file, 1, 1))

    def key_where(self, path: NodePath) -> Location:
        return self.key_locations.get(path) or self.where(path)


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
        self.nodes = 0
        self.anchors: dict[str, tuple[Any, int]] = {}

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

    def count(self, n: int, mark: Any) -> None:
        self.nodes += n
        if self.nodes > MAX_NODES:
            raise self.stop("FWC005", f"the document expands to more than {MAX_NODES} nodes", mark)

    def compose_document(self) -> Any:
        ld = self.loader
        # Each frame: [container, path, pending_key, anchor, start_nodes, keys_seen]
        stack: list[list[Any]] = []
        root: Any = None
        root_set = False

        def attach(value: Any, mark: Any) -> None:
            nonlocal root, root_set
            if not stack:
                root, root_set = value, True
                return
            frame = stack[-1]
            container, path = frame[0], frame[1]
            if isinstance(container, list):
                container.append(value)
                return
            if frame[2] is _NO_KEY:
                key = value
                if not isinstance(key, (str, int, bool, float)) and key is not None:
                    raise self.stop("FWC007", "mapping keys must be plain scalars", mark)
                skey = key if isinstance(key, str) else str(key)
                if skey in frame[5]:
                    first = frame[5][skey]
                    raise self.stop(
                        "FWC003",
                        f"duplicate key '{skey}' (first defined at line {first.line})",
                        mark,
                    )
                frame[5][skey] = self.loc(mark)
                self.doc.key_locations[(*path, skey)] = self.loc(mark)
                frame[2] = skey
            else:
                container[frame[2]] = value
                frame[2] = _NO_KEY

        def child_path() -> NodePath:
            frame = stack[-1]
            container, path = frame[0], frame[1]
            if isinstance(container, list):
                return (*path, len(container))
            if frame[2] is _NO_KEY:
                return ()  # a key: not a value position
            return (*path, frame[2])

        while True:
            ev = ld.get_event()
            is_key = bool(stack) and isinstance(stack[-1][0], dict) and stack[-1][2] is _NO_KEY
            path: NodePath = child_path() if stack else ()
            if isinstance(ev, yaml.ScalarEvent):
                self.count(1, ev.start_mark)
                value = self.construct_scalar(ev)
                if not is_key:
                    self.doc.locations[path] = self.loc(ev.start_mark)
                if ev.anchor:
                    self.anchors[ev.anchor] = (value, 1)
                attach(value, ev.start_mark)
            elif isinstance(ev, yaml.AliasEvent):
                if ev.anchor not in self.anchors:
                    raise self.stop("FWC001", f"unknown alias *{ev.anchor}", ev.start_mark)
                value, size = self.anchors[ev.anchor]
                self.count(size, ev.start_mark)
                if not is_key:
                    self.doc.locations[path] = self.loc(ev.start_mark)
                attach(value, ev.start_mark)
            elif isinstance(ev, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                if is_key:
                    raise self.stop("FWC007", "mapping keys must be plain scalars", ev.start_mark)
                if len(stack) >= MAX_DEPTH:
                    raise self.stop(
                        "FWC005",
                        f"the document nests deeper than {MAX_DEPTH} levels",
                        ev.start_mark,
                    )
                self.count(1, ev.start_mark)
                tag = ev.tag
                plain = (
                    "tag:yaml.org,2002:seq"
                    if isinstance(ev, yaml.SequenceStartEvent)
                    else ("tag:yaml.org,2002:map")
                )
                if tag not in (None, "!", plain):
                    raise self.stop("FWC007", f"unsupported tag {tag}", ev.start_mark)
                self.doc.locations[path] = self.loc(ev.start_mark)
                container: Any = [] if isinstance(ev, yaml.SequenceStartEvent) else {}
                stack.append([container, path, _NO_KEY, ev.anchor, self.nodes, {}])
            elif isinstance(ev, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                container, _, _, anchor, start, _ = stack.pop()
                if anchor:
                    self.anchors[anchor] = (container, self.nodes - start + 1)
                attach(container, ev.start_mark)
            else:
                raise self.stop("FWC001", "unexpected YAML event", ev.start_mark)
            if not stack and root_set:
                return root

    def construct_scalar(self, ev: Any) -> Any:
        tag = ev.tag
        if tag is None or tag == "!":
            tag = self.loader.resolve(yaml.ScalarNode, ev.value, ev.implicit)
        constructor = yaml.SafeLoader.yaml_constructors.get(tag)
        if constructor is None:
            raise self.stop("FWC007", f"unsupported tag {tag}", ev.start_mark)
        node = yaml.ScalarNode(tag, ev.value, ev.start_mark, ev.end_mark, ev.style)
        try:
            return constructor(self.loader, node)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
            raise self.stop(
                "FWC007", f"cannot read scalar {ev.value!r}: {exc}", ev.start_mark
            ) from None


_NO_KEY: Any = object()
