"""The embedded engine: regopy (rego-cpp), run in a forked child so that a crash is an error.

regopy 1.5 aborts the whole process on some inputs (a `with input as {...}` over rules
that call built-ins segfaults), and prints parse errors and `print()` output on stdout.
The child owns both problems: its stdout is captured, and its death is reported.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import signal
import sys
import tempfile
from collections.abc import Callable
from functools import cache
from multiprocessing.connection import Connection
from typing import Any

from fwc.compiler.rego_source import Module

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
    return _in_child(_evaluate, modules, data, input_doc, query, f"evaluating {query}")


def _evaluate(modules: list[Module], data: dict[str, Any], input_doc: Any, query: str) -> Any:
    from regopy.rego_shared import (
        rego_free_input,
        rego_free_output,
        rego_output_string,
        rego_query,
        rego_set_input,
    )

    interpreter = _load(modules, data)
    if input_doc is not None:
        handle = _input_handle(input_doc)
        try:
            rego_set_input(interpreter._impl, handle)
        finally:
            rego_free_input(handle)
    # regopy's Output parses the JSON itself and fails on error text; read the raw string.
    output = rego_query(interpreter._impl, query)
    try:
        return _binding(rego_output_string(output))
    finally:
        rego_free_output(output)


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
    """Builds regopy's input node by node: the generic converter is several times slower."""
    from regopy.rego_shared import rego

    handle = rego.regoNewInput()
    string, integer, boolean = rego.regoInputString, rego.regoInputInt, rego.regoInputBoolean
    null, item, obj, array = (
        rego.regoInputNull,
        rego.regoInputObjectItem,
        rego.regoInputObject,
        rego.regoInputArray,
    )

    def add(v: Any) -> None:
        kind = type(v)
        if kind is str:
            string(handle, v.encode())
        elif kind is bool:
            boolean(handle, v)
        elif kind is int:
            integer(handle, v)
        elif kind is dict:
            for key, child in v.items():
                string(handle, str(key).encode())
                add(child)
                item(handle)
            obj(handle, len(v))
        elif kind in (list, tuple):
            for child in v:
                add(child)
            array(handle, len(v))
        elif v is None:
            null(handle)
        else:
            rego.regoInputFloat(handle, float(v))

    add(value)
    return handle


def run_test(modules: list[Module], data: dict[str, Any], package: str, name: str) -> str | None:
    """None when data.<package>.<name> is true; otherwise why the test failed."""
    query = f"x := data.{package}.{name}"
    try:
        value = _in_child(_evaluate, modules, data, None, query, f"running {package}.{name}")
    except EngineFailure as exc:
        return str(exc)
    if value is True:
        return None
    return "undefined" if value is None else f"evaluated to {json.dumps(value)}"


def _in_child(
    work: Callable[[list[Module], dict[str, Any], Any, str], Any],
    modules: list[Module],
    data: dict[str, Any],
    input_doc: Any,
    query: str,
    doing: str,
) -> Any:
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    with tempfile.TemporaryFile() as captured:
        child = context.Process(
            target=_child_main,
            args=(send, captured.fileno(), work, modules, data, input_doc, query),
        )
        child.start()
        send.close()
        try:
            outcome = receive.recv()
        except EOFError:
            outcome = None
        child.join()
        captured.seek(0)
        printed = captured.read().decode("utf-8", "replace")
    if outcome is None:
        code = child.exitcode or 0
        what = signal.Signals(-code).name if code < 0 else f"exit status {code}"
        raise EngineFailure(
            f"the regopy engine crashed ({what}) while {doing}; a known trigger in regopy 1.5 "
            "is `with input as {...}` (override single fields: `with input.rules as [...]`)"
        )
    kind, value = outcome
    if kind == "error":
        raise EngineFailure(value)
    if printed:
        sys.stderr.write(printed)
    return value


def _child_main(
    send: Connection,
    stdout_fd: int,
    work: Callable[[list[Module], dict[str, Any], Any, str], Any],
    modules: list[Module],
    data: dict[str, Any],
    input_doc: Any,
    query: str,
) -> None:
    os.dup2(stdout_fd, 1)
    try:
        result: tuple[str, Any] = ("ok", work(modules, data, input_doc, query))
    except EngineFailure as exc:
        result = ("error", str(exc))
    except Exception as exc:  # regopy raises its own RegoError and ctypes errors
        result = ("error", _describe(exc, modules))
    send.send(result)
    send.close()


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
