"""The embedded engine: regopy (rego-cpp), run in a forked child so that a crash is an error.

regopy 1.5 aborts the whole process on some inputs (a `with input as {...}` over rules
that call built-ins segfaults), and prints parse errors and `print()` output on stdout.
The child owns both problems: its stdout is captured, and its death is reported.
"""

from __future__ import annotations

import ctypes
import faulthandler
import json
import os
import pickle
import re
import signal
import sys
import tempfile
from functools import cache
from typing import Any, NoReturn

from fwc.compiler.gate.modules import Module

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
    """The binding of `x` in `query` over the JSON-shaped `input_doc`, or None when the
    query is undefined."""
    return _in_child(modules, data, input_doc, query, f"evaluating {query}")


def run_test(modules: list[Module], data: dict[str, Any], package: str, name: str) -> str | None:
    """None when data.<package>.<name> is true; otherwise why the test failed."""
    query = f"x := data.{package}.{name}"
    try:
        value = _in_child(modules, data, None, query, f"running {package}.{name}")
    except EngineFailure as exc:
        return str(exc)
    if value is True:
        return None
    return "undefined" if value is None else f"evaluated to {json.dumps(value)}"


def _load(modules: list[Module], data: dict[str, Any]) -> Any:
    from regopy import Interpreter

    interpreter = Interpreter()
    for module in modules:
        interpreter.add_module(module.display, module.text)
    if data:
        interpreter.add_data(data)
    return interpreter


_NEEDS_ESCAPE = re.compile(r'[\x00-\x1f"\\]')


def engine_value(value: Any) -> Any:
    """`value` as regopy's `Input` takes it. The engine keeps every string in its
    JSON-escaped form (as it reads module literals), so strings go in escaped: quotes,
    backslashes and newlines then compare equal to the same literals in a module.
    Non-ASCII text stays as it is, as it does in a module."""
    if isinstance(value, str):
        if _NEEDS_ESCAPE.search(value):
            return json.dumps(value, ensure_ascii=False)[1:-1]
        return value
    if isinstance(value, dict):
        return {engine_value(k): engine_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [engine_value(v) for v in value]
    return value


def engine_input(input_doc: Any) -> Any:
    """The input document as the engine's own input tree (regopy.Input): about a third
    faster than the engine parsing the same document as JSON text."""
    from regopy import Input

    return Input(engine_value(input_doc))


def _query(interpreter: Any, query: str) -> str:
    from regopy.rego_shared import rego_free_output, rego_output_string, rego_query

    # regopy's Output parses the JSON itself and fails on error text; read the raw string.
    output = rego_query(interpreter._impl, query)
    try:
        return str(rego_output_string(output))
    finally:
        rego_free_output(output)


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


def _flush_output() -> None:
    """Write out what Python and the engine (C stdio) have buffered for standard output."""
    sys.stdout.flush()
    ctypes.CDLL(None).fflush(None)


def _in_child(
    modules: list[Module], data: dict[str, Any], input_doc: Any, query: str, doing: str
) -> Any:
    """The binding of `x` in `query`, evaluated in a forked child; its print() output goes
    to this process's standard error."""
    reader, writer = os.pipe()
    with tempfile.TemporaryFile() as captured:
        pid = os.fork()
        if pid == 0:
            os.close(reader)
            _child_main(writer, captured.fileno(), modules, data, input_doc, query)
        os.close(writer)
        with os.fdopen(reader, "rb") as answers:
            answer = answers.read()
        _, status = os.waitpid(pid, 0)
        captured.seek(0)
        printed = captured.read().decode("utf-8", "replace")
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
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


def _child_main(
    writer: int,
    stdout_fd: int,
    modules: list[Module],
    data: dict[str, Any],
    input_doc: Any,
    query: str,
) -> NoReturn:
    """Evaluates `query` and sends (kind, value) on `writer`. Exits without freeing the
    interpreter: the process ends here, and the kernel reclaims its memory at once."""
    code = 1
    try:
        os.dup2(stdout_fd, 1)
        faulthandler.disable()  # a crash is reported by the parent, without a dump here
        try:
            interpreter = _load(modules, data)
            if input_doc is not None:
                interpreter.set_input(engine_input(input_doc))
            result: tuple[str, Any] = ("ok", _binding(_query(interpreter, query)))
        except EngineFailure as exc:
            result = ("error", str(exc))
        except Exception as exc:  # regopy raises its own RegoError and ctypes errors
            result = ("error", _describe(exc, modules))
        # The engine's print() output must be in the file before the parent reads it.
        _flush_output()
        with os.fdopen(writer, "wb") as out:
            out.write(pickle.dumps(result))
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
