"""Live update benchmark: a 10k-rule tables policy replaced in place, in-process and by the CLI.

Run as root: `.venv/bin/python bench/bench_live_update.py [--rules 10000] [--rounds 3]`.
It makes a private namespace with a veth pair, applies the first policy (program load), then
times live updates to (a) a variant with 5 rules changed and (b) a different policy of the same
size (seed 2, renamed), each in-process by phase and as a whole `fw-load apply` command: from
just before the process is spawned to the flip (the report's CLOCK_BOOTTIME stamp), and to exit.
The command is timed twice: applying in its own process (`--no-daemon`) and through the control
socket of a `fw-load run` started on the base policy. On that route the goal (< 100 ms) is the
daemon's own figure, from the request received to the flip, which its log gives; the whole
command's time is printed beside it, with no goal.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from fwc.compiler.backend.build import compile_policy
from fwc.loader.apply.transaction import ApplyOptions, apply
from fwc.loader.daemon import control
from fwc.loader.kernel.meta import read_meta_map
from fwc.loader.live.compat import can_update_in_place
from fwc.loader.live.update import update_in_place
from fwc.loader.node.pins import policy_pins
from fwc.loader.reader.artifact import read_artifact

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from netns import run_in_netns  # noqa: E402

from policies import load_policy, make_policy_yaml  # noqa: E402

FWLOAD = str(Path(sys.executable).parent / "fw-load")
CHANGED = 5
GOAL_MS = 100.0
# the daemon's log line for each apply request it served
_TIMED = re.compile(r"on request; (?:([0-9.]+) ms to the flip, )?([0-9.]+) ms to the reply")


def variants(rules: int) -> dict[str, str]:
    """The base policy, a variant with CHANGED rules edited, and another policy of that size."""
    base = make_policy_yaml(rules, 1)
    edited = base.replace("destination_ports: [80]", "destination_ports: [8081]", CHANGED)
    other = make_policy_yaml(rules, 2).replace(f"name: bench-{rules}-2", f"name: bench-{rules}-1")
    return {"base": base, f"{CHANGED} rules changed": edited, "other policy (seed 2)": other}


def compile_all(texts: dict[str, str], work: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for i, (label, text) in enumerate(texts.items()):
        started = time.perf_counter()
        path = work / f"p{i}.o"
        compile_policy(load_policy(text), output=path, strategy="tables")
        print(f"compiled {label}: {time.perf_counter() - started:.1f} s", flush=True)
        out[label] = path
    return out


def in_process(root: Path, artifact: Path) -> dict[str, float]:
    """One live update, timed from the call to the flipped generation, by phase (seconds)."""
    cpu = time.process_time()
    start = time.perf_counter()
    # as `fw-load apply` reads it: libbpf's map check waits for the program-swap path
    spec = read_artifact(artifact, map_definitions=False)
    read = time.perf_counter() - start
    started = time.perf_counter()
    manifest = read_meta_map(policy_pins(root, spec.policy_name).meta)
    possible, reason = can_update_in_place(manifest, spec)
    check = time.perf_counter() - started
    assert possible, reason
    done = update_in_place(root, manifest, spec)
    cpu = time.process_time() - cpu
    t = done.timings
    return {
        "read artifact": read,
        "check shape": check,
        "prepare": t["prepare"],
        "write idle generation": t["write_idle"],
        "flip": t["flip"],
        "to flip": read + check + t["prepare"] + t["write_idle"] + t["flip"],
        "new manifest (after the flip)": t["manifest"],
        "CPU, call to manifest (user+sys)": cpu,
        "records written": float(done.records),
    }


def pycache(root: Path) -> Path:
    return Path(tempfile.gettempdir()) / f"{root.name}-pyc"


def command_env(root: Path) -> dict[str, str]:
    """The environment of a timed command: byte code cached (pip writes it on install; this
    sandbox sets PYTHONDONTWRITEBYTECODE, which would recompile every module on every run)."""
    env = dict(os.environ, FWC_PIN_ROOT=str(root), PYTHONPYCACHEPREFIX=str(pycache(root)))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("SSH_CONNECTION", None)
    return env


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def process_cpu(pid: int | None) -> float:
    """User + sys CPU seconds of a running process (0 for none)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Command:
    """One `fw-load apply` as a user runs it, in seconds: spawn to flip, spawn to exit, CPU (the
    command's plus, on the daemon route, what the daemon spent meanwhile), and on the daemon
    route the daemon's own time from the request received to the flip."""

    to_flip: float
    to_exit: float
    cpu: float
    in_daemon: float | None = None


def in_daemon_to_flip(log: Path) -> float:
    """The daemon's time from request to flip of the last request in its log, in seconds."""
    found = _TIMED.findall(log.read_text())
    assert found and found[-1][0], "the daemon logged no live update"
    return float(found[-1][0]) / 1000


def cli(root: Path, artifact: Path, *flags: str, daemon: Daemon | None = None) -> Command:
    """`fw-load apply ARTIFACT FLAGS`, timed from spawn; through `daemon` when given."""
    env = command_env(root)
    cpu = children_cpu() + process_cpu(daemon.proc.pid if daemon else None)
    started = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    out = subprocess.run(
        [FWLOAD, "apply", str(artifact), "--json", *flags], env=env, capture_output=True, text=True
    )
    wall = time.clock_gettime_ns(time.CLOCK_BOOTTIME) - started
    assert out.returncode == 0, out.stderr
    update = json.loads(out.stdout)["update"]
    assert update["path"] == "live-update", out.stdout
    cpu = children_cpu() + process_cpu(daemon.proc.pid if daemon else None) - cpu
    return Command(
        (update["flipped_at_boottime_ns"] - started) / 1e9,
        wall / 1e9,
        cpu,
        in_daemon_to_flip(daemon.log) if daemon else None,
    )


@dataclass(frozen=True)
class Daemon:
    """A running `fw-load run` and the file its stderr goes to."""

    proc: subprocess.Popen[bytes]
    log: Path


def start_daemon(root: Path, artifact: Path, log: Path) -> Daemon:
    """`fw-load run` on `artifact`, once its control socket listens."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [FWLOAD, "run", str(artifact), "--metrics-addr", "off"],
            stderr=out,
            env=command_env(root),
        )
    deadline = time.monotonic() + 120
    while "control socket" not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"fw-load run did not start:\n{log.read_text()}")
        time.sleep(0.1)
    return Daemon(proc, log)


def answer_at_once(listener: socket.socket) -> None:
    """A stand-in daemon: reads each request and answers with an empty report at once."""
    reply = control.encode({"code": 0, "stdout": "", "stderr": ""})
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            control.read_line(conn)
            conn.sendall(reply)


def floor(root: Path, rounds: int) -> dict[str, float]:
    """What any `fw-load` command pays before its first line runs, and the client of the
    daemon route against a daemon that answers at once; median of `rounds`."""
    stand_in = str(root) + "-stand-in"
    commands = {
        "python start-up (-c pass)": [sys.executable, "-c", "pass"],
        "python -S start-up": [sys.executable, "-S", "-c", "pass"],
        "import fwc.loader.commands.apply": [
            sys.executable,
            "-c",
            "import fwc.loader.commands.apply",
        ],
        "fw-load --version": [FWLOAD, "--version"],
        "fw-load apply, instant daemon": [FWLOAD, "apply", "x.o", "--pin-root", stand_in],
    }
    path = control.socket_path(stand_in)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(4)
    server = threading.Thread(target=answer_at_once, args=(listener,), daemon=True)
    server.start()
    result: dict[str, float] = {}
    try:
        for label, command in commands.items():
            times = []
            for _ in range(rounds):
                started = time.perf_counter()
                subprocess.run(command, check=True, capture_output=True, env=command_env(root))
                times.append(time.perf_counter() - started)
            result[label] = statistics.median(times)
    finally:
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        server.join()
        os.unlink(path)
    return result


def inside(args: argparse.Namespace) -> None:
    """In the bench namespace: load the base policy, then time the updates."""
    root = Path(args.root)
    artifacts = {label: Path(p) for label, p in json.loads(args.artifacts).items()}
    base = artifacts.pop("base")
    started = time.perf_counter()
    report = apply(ApplyOptions(artifact=base, root=root))
    print(f"first apply (program load and seed): {time.perf_counter() - started:.2f} s")
    # as after an install: byte code written once, by an untimed command
    subprocess.run([FWLOAD, "status"], env=command_env(root), check=True, capture_output=True)
    subprocess.run(
        [sys.executable, "-c", "import fwc.loader.commands.apply"],
        env=command_env(root),
        check=True,
    )
    assert report.path == "program-swap"
    # right after a load the idle generation is unknown, so every record is written
    show(
        "first live update after a load (base -> base, idle generation unknown)",
        [in_process(root, base)],
        [],
        [],
    )

    daemon = start_daemon(root, base, Path(tempfile.gettempdir()) / f"{root.name}-run.log")

    def reset() -> None:
        # both generations hold the base policy: the state after any earlier update to it;
        # applied through the daemon, as updates on a node with `fw-load run` are
        for _ in range(2):
            subprocess.run(
                [FWLOAD, "apply", str(base)], env=command_env(root), check=True, capture_output=True
            )
        # updates seconds apart never wait for an RCU grace period; back to back they would
        time.sleep(1.1)

    try:
        for label, artifact in artifacts.items():
            rounds: list[dict[str, float]] = []
            local: list[Command] = []
            resident: list[Command] = []
            for _ in range(args.rounds):
                reset()
                rounds.append(in_process(root, artifact))
                reset()
                local.append(cli(root, artifact, "--no-daemon"))
                reset()
                resident.append(cli(root, artifact, daemon=daemon))
            show(f"base -> {label}, median of {args.rounds}", rounds, local, resident)
    finally:
        daemon.proc.send_signal(signal.SIGTERM)
        daemon.proc.wait(timeout=60)
    print("\nCLI floor (ms)")
    for label, value in floor(root, max(args.rounds, 5)).items():
        print(f"  {label:32s} {value * 1000:8.1f}")


def show(
    title: str, rounds: list[dict[str, float]], local: list[Command], resident: list[Command]
) -> None:
    print(f"\n{title} (ms)")
    for phase in rounds[0]:
        value = statistics.median(r[phase] for r in rounds)
        shown = f"{value:8,.0f}" if phase == "records written" else f"{value * 1000:8.1f}"
        print(f"  {phase:32s} {shown}")
    for route, commands in (
        ("fw-load apply --no-daemon", local),
        ("fw-load apply (daemon)", resident),
    ):
        if not commands:
            continue
        for what, values in (
            ("spawn to flip", [c.to_flip for c in commands]),
            ("spawn to exit", [c.to_exit for c in commands]),
            ("CPU (user+sys)", [c.cpu for c in commands]),
        ):
            print(f"  {route + ': ' + what:44s} {statistics.median(values) * 1000:8.1f}")
    if resident:
        show_daemon_route(resident)


def show_daemon_route(commands: list[Command]) -> None:
    """The daemon route per round: the in-daemon time, which has the goal, beside the whole
    command's, which has none."""
    print(
        f"  {'daemon route, per round':26s} {'in-daemon: request to flip':>28s} "
        f"{'whole command: spawn to exit':>30s}"
    )
    in_daemon = [c.in_daemon for c in commands if c.in_daemon is not None]
    for i, command in enumerate(commands, start=1):
        print(
            f"  {f'round {i}':26s} {in_daemon[i - 1] * 1000:28.1f} {command.to_exit * 1000:30.1f}"
        )
    median = statistics.median(in_daemon) * 1000
    whole = statistics.median(c.to_exit for c in commands) * 1000
    verdict = "met" if median < GOAL_MS else "MISSED"
    print(f"  {'median':26s} {median:28.1f} {whole:30.1f}")
    print(f"  {'goal':26s} {f'< {GOAL_MS:.0f} ({verdict})':>28s} {'none':>30s}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rules", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--artifacts", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        inside(args)
        return 0
    tag = f"fwclu{os.getpid() % 100000}"
    root = Path("/sys/fs/bpf") / tag
    with tempfile.TemporaryDirectory() as tmp:
        artifacts = compile_all(variants(args.rules), Path(tmp))
        argv = [
            sys.executable,
            __file__,
            "--inside",
            *("--rounds", str(args.rounds), "--root", str(root)),
            *("--artifacts", json.dumps({k: str(v) for k, v in artifacts.items()})),
        ]
        return run_in_netns(tag, ("lu0", "lu1"), argv, [str(root), str(pycache(root))])


if __name__ == "__main__":
    sys.exit(main())
