"""fw-load's privilege check asks for what the kernel needs (measured: see check_privileges)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.kernel
@pytest.mark.parametrize(
    ("caps", "refused"),
    [
        ("+bpf,+net_admin", True),
        ("+bpf,+perfmon,+net_admin", True),
        ("+sys_admin,+net_admin", False),
    ],
)
def test_the_privilege_check_asks_for_what_the_kernel_needs(caps: str, refused: bool) -> None:
    code = (
        "from fwc.loader.apply.transaction import check_privileges\n"
        "from fwc.loader.errors import LoaderError\n"
        "try:\n"
        "    check_privileges()\n"
        "except LoaderError as exc:\n"
        "    print(exc)\n"
    )
    limited = ["setpriv", f"--bounding-set=-all,{caps}", "--inh-caps=-all", "--ambient-caps=-all"]
    done = subprocess.run(
        [*limited, sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    said = "needs root (or CAP_SYS_ADMIN and CAP_NET_ADMIN)"
    assert (said in done.stdout) == refused, done.stdout
