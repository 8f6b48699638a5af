"""libbpf's reading of an object's BTF map definitions, in a forked child that may crash."""

from __future__ import annotations

import faulthandler
import json
import os
import signal
from dataclasses import asdict
from typing import Any

from fwc.loader.kernel import libbpf


class MapDefinitionError(ValueError):
    """libbpf cannot open the object, or crashed reading it; the message is one line."""


def libbpf_maps(data: bytes) -> list[libbpf.MapDef]:
    """libbpf's reading of the BTF map definitions (opening needs no privileges).

    It runs in a forked child: libbpf 1.1 can crash on a damaged ELF, and a crash there must
    become a MapDefinitionError, not take fw-load down.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        # A crash here is expected and reported by the parent; no traceback dump from
        # the child (pytest and python -X faulthandler turn it on).
        faulthandler.disable()
        os._exit(_child(data, write_end))
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        payload = pipe.read()
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        name = signal.Signals(os.WTERMSIG(status)).name
        raise MapDefinitionError(f"the ELF is damaged: libbpf crashed reading it ({name})")
    try:
        result = json.loads(payload)
    except json.JSONDecodeError:
        result = {"error": "no answer from the libbpf reader"}
    if "error" in result:
        raise MapDefinitionError(f"libbpf cannot open the object: {result['error']}")
    return [libbpf.MapDef(**m) for m in result["maps"]]


def _child(data: bytes, out: int) -> int:
    """In the forked child: open the object, write {"maps": [...]} or {"error": ...} to `out`."""
    try:
        with libbpf.capture_messages() as messages:
            try:
                obj = libbpf.Object(data)
            except libbpf.KernelError as exc:
                detail = "".join(messages).strip().splitlines()
                result: dict[str, Any] = {"error": detail[-1] if detail else str(exc)}
            else:
                result = {"maps": [asdict(m) for m in obj.maps()]}
                obj.close()
        with os.fdopen(out, "wb") as pipe:
            pipe.write(json.dumps(result).encode())
    except BaseException:
        return 1
    return 0
