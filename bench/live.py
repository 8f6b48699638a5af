"""Frames that reach the receiver's XDP program without the AF_PACKET copy: BPF_PROG_RUN in
live-frame mode runs bench/live.c's generator, which redirects each frame into a veth.

The frames then go through the veth peer's XDP program and, when it passes them, the
stack (netfilter included), all on the calling CPU as softirq work when each batch
is flushed. ns/packet is the wall time of the run over the frames sent.

Run as a script inside the sender's namespace, it reads `<frames file> <count>` lines
and answers with `<ns> <count>`: bench_peers.py drives it so.
"""

from __future__ import annotations

import errno
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from fwc.loader.kernel import libbpf

BENCH = Path(__file__).resolve().parent
SOURCE = BENCH / "live.c"
HEADERS = BENCH.parent / "templates" / "bpf"
CLANG = "/usr/bin/clang-22"
BATCH = 64  # the kernel's default batch; the veth ring holds 256
# struct live_frame and struct live_config in live.c, native byte order
MAX_FRAMES, FRAME_BYTES = 1024, 320
FRAME = struct.Struct(f"=I{FRAME_BYTES}s")
CONFIG = struct.Struct("=III")
KEY = struct.Struct("=I")


def build(out_dir: Path) -> Path:
    out = out_dir / "live.o"
    if not out.exists():
        subprocess.run(
            [
                CLANG,
                "-O2",
                "-g",
                "-target",
                "bpf",
                f"-I{HEADERS}",
                "-c",
                str(SOURCE),
                "-o",
                str(out),
            ],
            check=True,
            capture_output=True,
        )
    return out


def live_run(prog_fd: int, frame: bytes, repeat: int) -> None:
    """BPF_PROG_RUN in live-frame mode, `BATCH` frames at a time."""
    libbpf.prog_run_live(prog_fd, frame, repeat, BATCH)


class Generator:
    """The loaded generator, redirecting into `device`; owns its fds until `close()`."""

    def __init__(self, obj_path: Path, device: str) -> None:
        self._obj = libbpf.Object(obj_path.read_bytes())
        try:
            self._obj.load()
            self.prog_fd = self._obj.program_fd("live_gen")
            self._ifindex = socket.if_nametoindex(device)
            self._frames_fd = self._obj.map_fd("live_frames")
            self._config_fd = self._obj.map_fd("live_config")
        except BaseException:
            self._obj.close()
            raise

    def send(self, frames: Sequence[bytes], count: int) -> int:
        """Sends `count` frames, cycling through `frames`; returns the wall time in ns."""
        if not 0 < len(frames) <= MAX_FRAMES or any(len(f) > FRAME_BYTES for f in frames):
            raise ValueError(f"1 to {MAX_FRAMES} frames of at most {FRAME_BYTES} bytes")
        for i, frame in enumerate(frames):
            value = FRAME.pack(len(frame), frame.ljust(FRAME_BYTES, b"\0"))
            libbpf.map_update(self._frames_fd, KEY.pack(i), value)
        libbpf.map_update(self._config_fd, KEY.pack(0), CONFIG.pack(self._ifindex, len(frames), 0))
        start = time.perf_counter_ns()
        live_run(self.prog_fd, bytes(FRAME_BYTES), count)
        return time.perf_counter_ns() - start

    def close(self) -> None:
        self._obj.close()


def read_frames(path: Path) -> list[bytes]:
    return [bytes.fromhex(line) for line in path.read_text().split()]


def serve(obj_path: Path, device: str) -> None:
    gen = Generator(obj_path, device)
    try:
        print("ready", flush=True)
        for line in sys.stdin:
            path, count = line.split()
            try:
                ns = gen.send(read_frames(Path(path)), int(count))
            except libbpf.KernelError as exc:
                if exc.errno != errno.EPERM:
                    raise
                # some kernels (seen: 6.18 on a Firecracker VM, as root) refuse the mode
                print(f"refused {exc}", flush=True)
                continue
            print(f"{ns} {count}", flush=True)
    finally:
        gen.close()


if __name__ == "__main__":
    serve(Path(sys.argv[1]), sys.argv[2])
