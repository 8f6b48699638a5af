"""The embedded engine: regopy (rego-cpp), run in a forked child so that a crash is an error.

regopy 1.5 aborts the whole process on some inputs (a `with input as {...}` over rules
that call built-ins segfaults), and prints parse errors and `print()` output on stdout.
The child owns both problems: its stdout is captured, and its death is reported. Several
queries over one input run in parallel: the child builds the interpreter and sets the
input once, then forks a worker per extra query (copy-on-write), so they share that work.
Answers travel length-prefixed, so each is taken as soon as it is complete, while the
process that sent it may still be unmapping a large input.
"""

from __future__ import annotations

import contextlib
import ctypes
import faulthandler
import json
import os
import pickle
import re
import signal
import struct
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any, NoReturn

from fwc.compiler.gate.modules import Module
from fwc.compiler.gate.regopy_input import engine_text, policy_input
from fwc.compiler.policy.ir import Policy

# Built-ins that rego-cpp implements in its compiler rather than its built-in table.
_COMPILER_BUILTINS = frozenset({"print"})


class EngineFailure(Exception):
    """The engine refused the modules, the data or the query; the message says where."""


@cache
def _interpreter_for_probing() -> Any:
    from regopy import Interpreter

    return Interpreter()


@cache
def is_builtin(name: str) -> bool:
    """Whether regopy evaluates built-in `name` (an unknown one silently yields undefined)."""
    return name in _COMPILER_BUILTINS or bool(_interpreter_for_probing().is_builtin(name))


def evaluate(modules: list[Module], data: dict[str, Any], input_doc: Any, query: str) -> Any:
    """The binding of `x` in `query`, or None when the query is undefined."""
    return evaluate_all(modules, data, input_doc, [query])[0]


def evaluate_all(
    modules: list[Module], data: dict[str, Any], input_doc: Any, queries: Sequence[str]
) -> list[Any]:
    """The binding of `x` in each query (None when undefined), the queries run in parallel.

    The input is a JSON-shaped value, or a Policy that stands for its policy_doc.
    """
    doing = "evaluating " + " and ".join(queries)
    values: list[Any] = _in_child(_evaluate, modules, data, input_doc, tuple(queries), doing)
    return values


def _evaluate(
    modules: list[Module], data: dict[str, Any], input_doc: Any, queries: tuple[str, ...]
) -> list[Any]:
    from regopy.rego_shared import rego_set_input

    interpreter = _load(modules, data)
    # Neither the interpreter nor the input is freed: this runs in the child, which exits
    # right after, and freeing the nodes of a 10,000-rule policy costs a third of a second.
    _kept.append(interpreter)
    if input_doc is not None:
        handle = (
            policy_input(input_doc) if isinstance(input_doc, Policy) else _input_handle(input_doc)
        )
        rego_set_input(interpreter._impl, handle)
    workers = [_fork_query(interpreter, query) for query in queries[1:]]
    texts = [_query(interpreter, queries[0])]
    for (pid, reader, printed), query in zip(workers, queries[1:], strict=True):
        with printed:
            texts.append(_collect(pid, reader, query))
            # after this process's own output, in one piece
            _flush_output()
            printed.seek(0)
            os.write(1, printed.read())
    return [_binding(text) for text in texts]


_kept: list[Any] = []


def _query(interpreter: Any, query: str) -> str:
    from regopy.rego_shared import rego_free_output, rego_output_string, rego_query

    # regopy's Output parses the JSON itself and fails on error text; read the raw string.
    output = rego_query(interpreter._impl, query)
    try:
        return str(rego_output_string(output))
    finally:
        rego_free_output(output)


def _flush_output() -> None:
    """Write out what Python and the engine (C stdio) have buffered for standard output."""
    sys.stdout.flush()
    ctypes.CDLL(None).fflush(None)


def _fork_query(interpreter: Any, query: str) -> tuple[int, int, Any]:
    """A worker process that answers `query` on a pipe; (its pid, the pipe's read end, the
    file that holds its print() output).

    The worker prints into a file of its own: the engine writes print() output in pieces,
    which would interleave with this process's own output in a shared file.
    """
    reader, writer = os.pipe()
    printed = tempfile.TemporaryFile()  # noqa: SIM115 (the caller closes it after the answer)
    pid = os.fork()
    if pid == 0:
        os.close(reader)
        faulthandler.disable()  # a crash is reported by the parent, without a dump here
        code = 0
        try:
            os.dup2(printed.fileno(), 1)
            answer = _query(interpreter, query).encode()
            _flush_output()
            _send(writer, answer)
        except BaseException:
            code = 1
        # The worker is a copy of the child: leave without running its exit handlers.
        os._exit(code)
    os.close(writer)
    return pid, reader, printed


def _collect(pid: int, reader: int, query: str) -> str:
    """The worker's answer. A complete one is taken without waiting for the worker to
    exit (unmapping its copy of the input takes a quarter of a second); the child reaps
    it after answering its own parent."""
    answer = _receive(reader)
    if answer is not None:
        _unreaped.append(pid)
        return answer.decode()
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        name = signal.Signals(os.WTERMSIG(status)).name
        raise EngineFailure(f"the regopy engine crashed ({name}) while evaluating {query}")
    raise EngineFailure(f"the regopy engine failed while evaluating {query}")


# Workers that answered and may still be exiting; the child waits for them last.
_unreaped: list[int] = []


def _send(fd: int, payload: bytes) -> None:
    """`payload` with its length in front, so that the reader knows it is complete."""
    with os.fdopen(fd, "wb") as out:
        out.write(struct.pack("<Q", len(payload)) + payload)


def _receive(fd: int) -> bytes | None:
    """What _send wrote on `fd`, or None when the writer died before finishing. Reads
    exactly that much: a worker forked by the writer may hold the pipe open until it
    has exited, so end of file can come late."""
    with os.fdopen(fd, "rb") as answers:
        head = answers.read(8)
        if len(head) < 8:
            return None
        (size,) = struct.unpack("<Q", head)
        payload = answers.read(size)
    return payload if len(payload) == size else None


def _load(modules: list[Module], data: dict[str, Any]) -> Any:
    from regopy import Interpreter

    interpreter = Interpreter()
    for module in modules:
        interpreter.add_module(module.display, module.text)
    if data:
        interpreter.add_data(data)
    return interpreter


def _binding(text: str) -> Any:
    if text == "undefined":
        return None
    try:
        result = json.loads(text)
    except ValueError:
        raise EngineFailure(
            _error_messages(text) or f"regopy answered: {text.strip()[:300]}"
        ) from None
    if isinstance(result, list):
        result = result[0] if result else {}
    return result.get("bindings", {}).get("x")


def _input_handle(value: Any) -> Any:
    """Builds regopy's input node by node: the generic converter is several times slower.

    One ctypes call per node is the floor (about 1 us each, a million at 10,000 rules),
    so the walk does little else: keys are encoded once, scalars are pushed without a
    recursive call.
    """
    from regopy.rego_shared import rego

    handle = rego.regoNewInput()
    string, integer, boolean = rego.regoInputString, rego.regoInputInt, rego.regoInputBoolean
    null, item, obj, array = (
        rego.regoInputNull,
        rego.regoInputObjectItem,
        rego.regoInputObject,
        rego.regoInputArray,
    )
    keys: dict[Any, bytes] = {}

    def scalar(v: Any, kind: type) -> None:
        if kind is str:
            string(handle, engine_text(v))
        elif kind is bool:
            boolean(handle, v)
        elif kind is int:
            integer(handle, v)
        elif v is None:
            null(handle)
        else:
            rego.regoInputFloat(handle, float(v))

    def add(v: Any, kind: type) -> None:
        if kind is dict:
            for key, child in v.items():
                encoded = keys.get(key)
                if encoded is None:
                    encoded = keys[key] = engine_text(str(key))
                string(handle, encoded)
                child_kind = type(child)
                if child_kind is str:
                    string(handle, engine_text(child))
                elif child_kind is dict or child_kind is list or child_kind is tuple:
                    add(child, child_kind)
                else:
                    scalar(child, child_kind)
                item(handle)
            obj(handle, len(v))
        elif kind is list or kind is tuple:
            for child in v:
                child_kind = type(child)
                if child_kind is dict or child_kind is list or child_kind is tuple:
                    add(child, child_kind)
                else:
                    scalar(child, child_kind)
            array(handle, len(v))
        else:
            scalar(v, kind)

    add(value, type(value))
    return handle


def run_test(modules: list[Module], data: dict[str, Any], package: str, name: str) -> str | None:
    """None when data.<package>.<name> is true; otherwise why the test failed."""
    query = f"x := data.{package}.{name}"
    try:
        value = _in_child(_evaluate, modules, data, None, (query,), f"running {package}.{name}")[0]
    except EngineFailure as exc:
        return str(exc)
    if value is True:
        return None
    return "undefined" if value is None else f"evaluated to {json.dumps(value)}"


def _in_child(
    work: Callable[[list[Module], dict[str, Any], Any, tuple[str, ...]], Any],
    modules: list[Module],
    data: dict[str, Any],
    input_doc: Any,
    query: tuple[str, ...],
    doing: str,
) -> Any:
    reader, writer = os.pipe()
    with tempfile.TemporaryFile() as captured:
        pid = os.fork()
        if pid == 0:
            os.close(reader)
            _child_main(writer, captured.fileno(), work, modules, data, input_doc, query)
        os.close(writer)
        answer = _receive(reader)
        if answer is None:
            _, status = os.waitpid(pid, 0)
        else:
            _reap_in_background(pid)
        captured.seek(0)
        printed = captured.read().decode("utf-8", "replace")
    if answer is None:
        code = os.waitstatus_to_exitcode(status)
        what = signal.Signals(-code).name if code < 0 else f"exit status {code}"
        raise EngineFailure(
            f"the regopy engine crashed ({what}) while {doing}; a known trigger in regopy 1.5 "
            "is `with input as {...}` (override single fields: `with input.rules as [...]`)"
        )
    kind, value = pickle.loads(answer)
    if kind == "error":
        raise EngineFailure(value)
    if printed:
        sys.stderr.write(printed)
    return value


def _reap_in_background(pid: int) -> None:
    """Collects a child that has answered without waiting for it: a child that held a
    large input takes a good part of a second to exit. The thread does not hold up
    the interpreter's exit."""
    threading.Thread(target=_reap, args=(pid,), daemon=True).start()


def _reap(pid: int) -> None:
    # Someone else (a caller's os.wait(), say) may have reaped it first.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _child_main(
    writer: int,
    stdout_fd: int,
    work: Callable[[list[Module], dict[str, Any], Any, tuple[str, ...]], Any],
    modules: list[Module],
    data: dict[str, Any],
    input_doc: Any,
    query: tuple[str, ...],
) -> NoReturn:
    code = 1
    try:
        os.dup2(stdout_fd, 1)
        faulthandler.disable()  # a crash is reported by the parent, without a dump here
        try:
            result: tuple[str, Any] = ("ok", work(modules, data, input_doc, query))
        except EngineFailure as exc:
            result = ("error", str(exc))
        except Exception as exc:  # regopy raises its own RegoError and ctypes errors
            result = ("error", _describe(exc, modules))
        # The engine's print() output must be in the file before the parent reads it.
        _flush_output()
        _send(writer, pickle.dumps(result))
        for pid in _unreaped:
            os.waitpid(pid, 0)
        code = 0
    finally:
        # A copy of the parent: leave without running its exit handlers.
        os._exit(code)


_ERROR = re.compile(r"\(error\s+(?:(\d+):)?")


def _describe(exc: Exception, modules: list[Module]) -> str:
    text = str(exc.args[0]) if exc.args else str(exc)
    return _error_messages(text, {m.display: m.text for m in modules}) or text.strip()


def _error_messages(text: str, sources: dict[str, str] | None = None) -> str:
    """rego-cpp's error trees ('(error N:file|offset|length (errormsg N:message) ...)') as
    'file:line: message' lines."""
    out: list[str] = []
    for m in _ERROR.finditer(text):
        pos = m.end()
        where = ""
        if m.group(1):
            length = int(m.group(1))
            file = text[pos : pos + length]
            rest = re.match(r"\|(\d+)\|", text[pos + length :])
            if rest and sources and file in sources:
                offset = int(rest.group(1))
                line = sources[file].encode()[:offset].count(b"\n") + 1
                where = f"{file}:{line}: "
            elif file:
                where = f"{file}: "
        msg = re.compile(r"\(errormsg\s+(\d+):").search(text, pos)
        if msg is None:
            continue
        start = msg.end()
        message = text[start : start + int(msg.group(1))]
        line_text = f"{where}{message}"
        if line_text not in out:
            out.append(line_text)
    return "; ".join(out)
