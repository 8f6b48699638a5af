"""`--verify`: loads an artifact so the verifier runs; on rejection, names the rule at fault."""

from __future__ import annotations

import errno
import re
from dataclasses import dataclass
from pathlib import Path

from fwc.compiler.backend.build import SOURCE_NAME
from fwc.compiler.backend.render import Rendered
from fwc.compiler.errors import ToolError
from fwc.compiler.policy.findings import Finding, Location, error
from fwc.compiler.policy.ir import Policy, Rule

# With clang -g line info the verifier prints `; <source text> @ fwc_xdp.c:123` per line.
_LINE_REF = re.compile(r"^; .* @ " + re.escape(SOURCE_NAME) + r":(\d+)\s*$")
LOG_TAIL_LINES = 20


@dataclass(frozen=True)
class Verified:
    """The kernel accepted the program."""

    tag: str  # the kernel's program tag, as bpftool prints it


@dataclass(frozen=True)
class Rejected:
    finding: Finding
    log_tail: str


def verify(path: Path, rendered: Rendered, policy: Policy) -> Verified | Rejected:
    """Loads `path` into the kernel and unloads it; raises ToolError when it cannot even try."""
    from fwc.loader.kernel.libbpf import KernelError
    from fwc.loader.kernel.program import LoadedProgram
    from fwc.loader.reader.artifact import ArtifactError

    try:
        with LoadedProgram.load(path) as loaded:
            return Verified(tag=loaded.prog_tag)
    except ArtifactError as exc:
        raise ToolError(f"--verify: {exc}") from exc
    except KernelError as exc:
        if exc.errno in (errno.EPERM, errno.EACCES) and not exc.log:
            raise ToolError(
                "--verify needs privileges to load BPF programs (run as root or with CAP_BPF)"
            ) from exc
        if not exc.log:
            raise ToolError(f"--verify: {exc}") from exc
        return _rejected(exc.log, rendered, policy, str(exc))


def last_source_line(log: str) -> int | None:
    """The last line of the generated C that the verifier log mentions."""
    lines = [int(m.group(1)) for m in map(_LINE_REF.match, log.splitlines()) if m]
    return lines[-1] if lines else None


def _rejected(log: str, rendered: Rendered, policy: Policy, reason: str) -> Rejected:
    """The finding for a rejection: the rule whose block (by the renderer's source map) holds
    the last line of the generated C that the log mentions."""
    line = last_source_line(log)
    rule_id = rendered.rule_at(line) if line is not None else None
    rule: Rule | None = policy.rules[rule_id] if rule_id is not None else None
    tail = "\n".join(log.rstrip().splitlines()[-LOG_TAIL_LINES:])
    where = f"; most likely at rule `{rule.name}` (priority {rule.priority})" if rule else ""
    message = f"the kernel verifier rejected the program: {_reason(log) or reason}{where}"
    location = rule.location if rule else Location(policy.source_file)
    return Rejected(error("FWC052", message, location, rule.name if rule else None), tail)


def _reason(log: str) -> str:
    lines = [x.strip() for x in log.splitlines() if x.strip()]
    for text in reversed(lines):
        if not text.startswith(("processed ", "verification time", "stack depth", ";")):
            return text
    return ""
