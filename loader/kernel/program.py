"""The kernel layer: turn a validated ArtifactSpec into a loaded, seeded program that owns its fds.

`LoadedProgram.load(path)` is the entry point; per-CPU counter reading is shared with `stats`.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from errno import EPERM
from pathlib import Path

from fwc.loader.kernel import array_mmap, libbpf
from fwc.loader.kernel.libbpf import KernelError
from fwc.loader.kernel.records import split_records
from fwc.loader.kernel.resource import Closing
from fwc.loader.node.pins import PolicyPins
from fwc.loader.reader.artifact import ArtifactSpec, read_artifact

__all__ = [
    "KernelError",
    "LoadedProgram",
    "TestRun",
    "possible_cpus",
    "read_counters",
    "reset_counters",
]

COUNTER = struct.Struct("<QQ")  # struct { __u64 packets; __u64 bytes; }
_KEY = struct.Struct("<I")


def possible_cpus(path: str = "/sys/devices/system/cpu/possible") -> int:
    """How many per-CPU slots the kernel keeps: the count of CPUs in e.g. `0-3,6`."""
    text = Path(path).read_text().strip()
    count = 0
    for part in text.split(","):
        first, _, last = part.partition("-")
        count += int(last or first) - int(first) + 1
    return count


def _percpu_stride(value_size: int) -> int:
    # the kernel lays out each CPU's copy of a per-CPU value on an 8-byte boundary
    return (value_size + 7) // 8 * 8


def read_counters(map_fd: int, entries: int) -> list[tuple[int, int]]:
    """(packets, bytes) per slot of a per-CPU counters map, summed over every possible CPU."""
    cpus = possible_cpus()
    stride = _percpu_stride(COUNTER.size)
    result: list[tuple[int, int]] = []
    for index in range(entries):
        raw = libbpf.map_lookup(map_fd, _KEY.pack(index), stride * cpus)
        packets = octets = 0
        if raw is not None:
            for cpu in range(cpus):
                p, b = COUNTER.unpack_from(raw, cpu * stride)
                packets += p
                octets += b
        result.append((packets, octets))
    return result


def reset_counters(map_fd: int, entries: int) -> None:
    """Zero every slot on every CPU."""
    zero = bytes(_percpu_stride(COUNTER.size) * possible_cpus())
    for index in range(entries):
        libbpf.map_update(map_fd, _KEY.pack(index), zero)


# seeded with one BPF_MAP_UPDATE_BATCH (one value per key: no per-CPU maps)
_BATCHED = ("array", "hash", "lru_hash")


def drain(map_fd: int) -> bool:
    """Delete every entry of a hash map; whether it held any."""
    key_size = libbpf.map_info(map_fd).key_size
    keys: list[bytes] = []
    key = libbpf.map_next_key(map_fd, None, key_size)
    while key is not None:
        keys.append(key)
        key = libbpf.map_next_key(map_fd, key, key_size)
    for key in keys:
        libbpf.map_delete(map_fd, key)
    return bool(keys)


@dataclass(frozen=True)
class TestRun:
    """One BPF_PROG_TEST_RUN result; `duration_ns` is the kernel's mean over the repeats."""

    __test__ = False  # not a pytest test class, despite the name

    retval: int
    duration_ns: int
    data_out: bytes


class LoadedProgram(Closing):
    """An artifact's program and maps in the kernel; closing releases every fd it holds."""

    def __init__(self, spec: ArtifactSpec, obj: libbpf.Object) -> None:
        self.spec = spec
        self._obj = obj
        self.prog_fd = obj.program_fd(spec.program)
        self._map_fds = {m.name: obj.map_fd(m.name) for m in spec.maps}
        info = libbpf.prog_info(self.prog_fd)
        self.prog_id = info.id
        self.prog_tag = info.tag

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LoadedProgram:
        """Validate the artifact, load it, and write its seed records into their maps."""
        return cls.from_spec(read_artifact(path))

    @classmethod
    def from_spec(cls, spec: ArtifactSpec) -> LoadedProgram:
        obj = libbpf.Object(spec.data)
        try:
            with libbpf.capture_messages() as messages:
                try:
                    obj.load()
                except KernelError as exc:
                    log = libbpf.verifier_log(messages)
                    raise KernelError(
                        f"the kernel refused program {spec.program!r} of {spec.path}: "
                        f"{os.strerror(exc.errno)} ({_reason(log, messages, exc.errno)})",
                        exc.errno,
                        log,
                    ) from exc
            loaded = cls(spec, obj)
        except BaseException:
            obj.close()
            raise
        try:
            loaded._seed()
        except BaseException:
            loaded.close()
            raise
        return loaded

    def _seed(self) -> None:
        for seed in self.spec.seeds:
            fd = self._map_fds[seed.map]
            info = libbpf.map_info(fd)
            if seed.image is not None and array_mmap.mmapable(info):
                # the artifact holds the array's memory: one compare-and-copy through mmap
                array_mmap.write(fd, info, bytes(seed.image))
                continue
            if seed.count and self.spec.map(seed.map).type in _BATCHED:
                keys, values = split_records(seed.records, seed.key_size, seed.value_size)
                try:
                    libbpf.map_update_batch(fd, keys, values, seed.count)
                    continue
                except KernelError:
                    pass  # a record at a time, below, names the one the kernel refuses
            for key, value in seed.items():
                try:
                    libbpf.map_update(fd, key, value)
                except KernelError as exc:
                    raise KernelError(
                        f"cannot seed map {seed.map!r} key {key.hex()}: {os.strerror(exc.errno)}",
                        exc.errno,
                    ) from exc

    def map_fd(self, name: str) -> int:
        try:
            return self._map_fds[name]
        except KeyError:
            raise KernelError(f"the artifact has no map {name!r}") from None

    def test_run(self, frame: bytes, repeat: int = 1, ingress_ifindex: int = 0) -> TestRun:
        """Run the program on one Ethernet frame with BPF_PROG_TEST_RUN (as if it arrived on
        `ingress_ifindex`, else on the namespace's loopback)."""
        retval, duration, data_out = libbpf.prog_test_run(
            self.prog_fd, frame, repeat, ingress_ifindex=ingress_ifindex
        )
        return TestRun(retval, duration, data_out)

    def counters(self) -> list[tuple[int, int]]:
        """(packets, bytes) per counter slot, summed over CPUs."""
        spec = self.spec.map(self.spec.counters_map)
        return read_counters(self.map_fd(spec.name), spec.max_entries)

    def reset_counters(self) -> None:
        spec = self.spec.map(self.spec.counters_map)
        reset_counters(self.map_fd(spec.name), spec.max_entries)

    def pin(self, directory: str | os.PathLike[str]) -> None:
        """Pin the program as `<dir>/prog` and each map as `<dir>/maps/<name>` (bpffs)."""
        pins = PolicyPins(Path(directory))
        pins.maps_dir.mkdir(parents=True, exist_ok=True)
        libbpf.obj_pin(self.prog_fd, pins.prog)
        for name, fd in self._map_fds.items():
            libbpf.obj_pin(fd, pins.map(name))

    def close(self) -> None:
        self._obj.close()
        self._map_fds = {}
        self.prog_fd = -1


def _reason(log: str, messages: list[str], errno: int) -> str:
    """One line saying why a load failed: the verifier's verdict, else libbpf's first complaint."""
    # the verifier's reason is the last line before its "processed N insns" summary
    for line in reversed(log.splitlines()):
        if line.strip() and not line.startswith(("processed ", "verification time")):
            return line.strip()
    if errno == EPERM:
        return "loading BPF programs needs root, or CAP_BPF with CAP_PERFMON"
    for message in messages:
        text = message.removeprefix("libbpf: ").strip()
        if text and "RLIMIT_MEMLOCK" not in text:
            return text.splitlines()[0]
    return "libbpf gave no reason"
