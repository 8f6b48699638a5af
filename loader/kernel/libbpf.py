"""A ctypes binding over the system libbpf (libbpf.so.1, 1.1.x): the calls fw-load needs, typed.

Every call that fails raises `KernelError` (errno and strerror); nothing here owns an fd.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from fwc.loader.errors import LoaderError

BPF_XDP = 37  # enum bpf_attach_type
BPF_MAP_TYPE_ARRAY = 2
BPF_MAP_TYPE_PERCPU_ARRAY = 6
BPF_MAP_TYPE_ARRAY_OF_MAPS = 12
BPF_OBJ_NAME_LEN = 16
ETH_HLEN = 14  # the shortest frame BPF_PROG_TEST_RUN accepts for XDP
LIBBPF_WARN, LIBBPF_INFO, LIBBPF_DEBUG = 0, 1, 2

_LOG_BEGIN = "-- BEGIN PROG LOAD LOG --\n"
_LOG_END = "-- END PROG LOAD LOG --"


class KernelError(LoaderError):
    """A libbpf call or the kernel refused; `.log` holds the verifier log when there is one."""

    def __init__(self, message: str, errno: int = 0, log: str = "") -> None:
        super().__init__(message)
        self.errno = errno
        self.log = log


def _load_library() -> ctypes.CDLL:
    try:
        return ctypes.CDLL("libbpf.so.1", use_errno=True)
    except OSError as exc:
        raise KernelError(f"cannot load libbpf.so.1 (install libbpf1): {exc}") from exc


_lib = _load_library()
# the process's own symbols include libc's; find_library("c") would run ldconfig on every start
_libc = ctypes.CDLL(None, use_errno=True)

c_int, c_uint, c_u32, c_u64 = ctypes.c_int, ctypes.c_uint, ctypes.c_uint32, ctypes.c_uint64
c_size_t, c_void_p, c_char_p = ctypes.c_size_t, ctypes.c_void_p, ctypes.c_char_p


class _TestRunOpts(ctypes.Structure):
    _fields_ = [
        ("sz", c_size_t),
        ("data_in", c_void_p),
        ("data_out", c_void_p),
        ("data_size_in", c_u32),
        ("data_size_out", c_u32),
        ("ctx_in", c_void_p),
        ("ctx_out", c_void_p),
        ("ctx_size_in", c_u32),
        ("ctx_size_out", c_u32),
        ("retval", c_u32),
        ("repeat", c_int),
        ("duration", c_u32),
        ("flags", c_u32),
        ("cpu", c_u32),
        ("batch_size", c_u32),
    ]


class _KprobeMulti(ctypes.Structure):
    _fields_ = [
        ("flags", c_u32),
        ("cnt", c_u32),
        ("syms", c_void_p),
        ("addrs", c_void_p),
        ("cookies", c_void_p),
    ]


class _LinkCreateUnion(ctypes.Union):
    _fields_ = [("kprobe_multi", _KprobeMulti), ("cookie", c_u64)]


class _LinkCreateOpts(ctypes.Structure):
    _fields_ = [
        ("sz", c_size_t),
        ("flags", c_u32),
        ("iter_info", c_void_p),
        ("iter_info_len", c_u32),
        ("target_btf_id", c_u32),
        ("u", _LinkCreateUnion),
    ]


class _LinkUpdateOpts(ctypes.Structure):
    _fields_ = [("sz", c_size_t), ("flags", c_u32), ("old_prog_fd", c_u32)]


class _MapCreateOpts(ctypes.Structure):
    _fields_ = [
        ("sz", c_size_t),
        ("btf_fd", c_u32),
        ("btf_key_type_id", c_u32),
        ("btf_value_type_id", c_u32),
        ("btf_vmlinux_value_type_id", c_u32),
        ("inner_map_fd", c_u32),
        ("map_flags", c_u32),
        ("map_extra", c_u64),
        ("numa_node", c_u32),
        ("map_ifindex", c_u32),
    ]


class _BatchOpts(ctypes.Structure):
    _fields_ = [("sz", c_size_t), ("elem_flags", c_u64), ("flags", c_u64)]


class _ProgInfo(ctypes.Structure):
    """The head of struct bpf_prog_info; the kernel accepts a shorter info_len."""

    _fields_ = [
        ("type", c_u32),
        ("id", c_u32),
        ("tag", ctypes.c_uint8 * 8),
        ("jited_prog_len", c_u32),
        ("xlated_prog_len", c_u32),
        ("jited_prog_insns", c_u64),
        ("xlated_prog_insns", c_u64),
        ("load_time", c_u64),
        ("created_by_uid", c_u32),
        ("nr_map_ids", c_u32),
        ("map_ids", c_u64),
        ("name", ctypes.c_char * BPF_OBJ_NAME_LEN),
    ]


class _MapInfo(ctypes.Structure):
    _fields_ = [
        ("type", c_u32),
        ("id", c_u32),
        ("key_size", c_u32),
        ("value_size", c_u32),
        ("max_entries", c_u32),
        ("map_flags", c_u32),
        ("name", ctypes.c_char * BPF_OBJ_NAME_LEN),
    ]


class _LinkInfo(ctypes.Structure):
    """struct bpf_link_info up to the xdp member of its union (at offset 16)."""

    _fields_ = [
        ("type", c_u32),
        ("id", c_u32),
        ("prog_id", c_u32),
        ("_pad", c_u32),
        ("ifindex", c_u32),
        ("_rest", c_u32 * 7),
    ]


_PRINT_FN = ctypes.CFUNCTYPE(c_int, c_int, c_char_p, c_void_p)


def _declare(name: str, restype: object, *argtypes: object) -> None:
    fn = getattr(_lib, name)
    fn.restype = restype
    fn.argtypes = list(argtypes)


_declare("bpf_object__open_mem", c_void_p, c_void_p, c_size_t, c_void_p)
_declare("bpf_object__load", c_int, c_void_p)
_declare("bpf_object__close", None, c_void_p)
_declare("bpf_object__find_program_by_name", c_void_p, c_void_p, c_char_p)
_declare("bpf_object__find_map_by_name", c_void_p, c_void_p, c_char_p)
_declare("bpf_object__next_map", c_void_p, c_void_p, c_void_p)
_declare("bpf_object__next_program", c_void_p, c_void_p, c_void_p)
_declare("bpf_program__fd", c_int, c_void_p)
_declare("bpf_program__name", c_char_p, c_void_p)
_declare("bpf_program__insn_cnt", c_size_t, c_void_p)
_declare("bpf_map__fd", c_int, c_void_p)
_declare("bpf_map__name", c_char_p, c_void_p)
_declare("bpf_map__type", c_int, c_void_p)
_declare("bpf_map__key_size", c_u32, c_void_p)
_declare("bpf_map__value_size", c_u32, c_void_p)
_declare("bpf_map__max_entries", c_u32, c_void_p)
_declare("libbpf_bpf_map_type_str", c_char_p, c_int)
_declare("libbpf_set_print", c_void_p, _PRINT_FN)
_declare("bpf_prog_test_run_opts", c_int, c_int, ctypes.POINTER(_TestRunOpts))
_declare("bpf_enable_stats", c_int, c_int)
_declare("bpf_map_create", c_int, c_int, c_char_p, c_u32, c_u32, c_u32, c_void_p)
_declare("bpf_map_update_elem", c_int, c_int, c_void_p, c_void_p, c_u64)
_declare("bpf_map_lookup_elem", c_int, c_int, c_void_p, c_void_p)
_declare("bpf_map_delete_elem", c_int, c_int, c_void_p)
_declare("bpf_map_get_next_key", c_int, c_int, c_void_p, c_void_p)
_declare("bpf_map_freeze", c_int, c_int)
_BATCH_ARGS = (c_void_p, c_void_p, ctypes.POINTER(c_u32), ctypes.POINTER(_BatchOpts))
_declare("bpf_map_update_batch", c_int, c_int, *_BATCH_ARGS)
_declare("bpf_map_delete_batch", c_int, c_int, c_void_p, ctypes.POINTER(c_u32), c_void_p)
_declare("bpf_map_lookup_batch", c_int, c_int, c_void_p, c_void_p, *_BATCH_ARGS)
_declare("bpf_map__reuse_fd", c_int, c_void_p, c_int)
_declare("bpf_obj_pin", c_int, c_int, c_char_p)
_declare("bpf_obj_get", c_int, c_char_p)
_declare("bpf_link_create", c_int, c_int, c_int, c_int, c_void_p)
_declare("bpf_link_update", c_int, c_int, c_int, c_void_p)
_declare("bpf_link_detach", c_int, c_int)
_declare("bpf_prog_get_fd_by_id", c_int, c_u32)
_declare("bpf_map_get_fd_by_id", c_int, c_u32)
_declare("bpf_prog_get_next_id", c_int, c_u32, ctypes.POINTER(c_u32))
_declare("bpf_obj_get_info_by_fd", c_int, c_int, c_void_p, ctypes.POINTER(c_u32))
_libc.vsnprintf.restype = c_int
_libc.vsnprintf.argtypes = [c_char_p, c_size_t, c_char_p, c_void_p]


def _format(fmt: bytes, ap: int) -> str:
    """Format a libbpf message; on x86_64 a va_list is a 24-byte struct we may copy (va_copy)."""
    size = 4096
    if os.uname().machine != "x86_64":
        size = 1 << 24
        buf = ctypes.create_string_buffer(size)
        _libc.vsnprintf(buf, size, fmt, ap)
        return buf.value.decode(errors="replace")
    saved = ctypes.create_string_buffer(ctypes.string_at(ap, 24), 24)
    buf = ctypes.create_string_buffer(size)
    needed = _libc.vsnprintf(buf, size, fmt, ap)
    if needed >= size:
        buf = ctypes.create_string_buffer(needed + 1)
        _libc.vsnprintf(buf, needed + 1, fmt, ctypes.addressof(saved))
    return buf.value.decode(errors="replace")


_capture = threading.local()


def _print(level: int, fmt: bytes | None, ap: int | None) -> int:
    # libbpf calls back synchronously on the calling thread; messages outside a capture are
    # dropped so library chatter never reaches a user's terminal.
    sink: list[str] | None = getattr(_capture, "sink", None)
    if sink is None or level == LIBBPF_DEBUG or fmt is None or ap is None:
        return 0
    sink.append(_format(fmt, ap))
    return 0


_print_callback = _PRINT_FN(_print)
_lib.libbpf_set_print(_print_callback)


@contextmanager
def capture_messages() -> Iterator[list[str]]:
    """Collect libbpf's warning and info messages printed on this thread inside the block."""
    outer = getattr(_capture, "sink", None)
    sink: list[str] = []
    _capture.sink = sink
    try:
        yield sink
    finally:
        _capture.sink = outer


def verifier_log(messages: list[str]) -> str:
    """The verifier's log from captured messages ("" when libbpf printed none)."""
    text = "".join(messages)
    start = text.find(_LOG_BEGIN)
    if start < 0:
        return ""
    end = text.find(_LOG_END, start)
    return text[start + len(_LOG_BEGIN) : end if end >= 0 else len(text)]


def _check(ret: int, what: str) -> int:
    if ret < 0:
        raise KernelError(f"{what}: {os.strerror(-ret)}", -ret)
    return ret


def _check_ptr(ptr: int | None, what: str) -> int:
    if not ptr:
        err = ctypes.get_errno() or errno.EINVAL
        raise KernelError(f"{what}: {os.strerror(err)}", err)
    return ptr


@dataclass(frozen=True)
class MapDef:
    """A map as libbpf sees it in an opened object."""

    name: str
    type: str
    key_size: int
    value_size: int
    max_entries: int


@dataclass(frozen=True)
class ProgInfo:
    id: int
    type: int
    name: str
    tag: str  # hex, as bpftool prints it
    map_ids: tuple[int, ...]


@dataclass(frozen=True)
class MapInfo:
    id: int
    type: int
    name: str
    key_size: int
    value_size: int
    max_entries: int
    flags: int


@dataclass(frozen=True)
class LinkInfo:
    id: int
    type: int
    prog_id: int
    ifindex: int  # meaningful for XDP links


# -- bpf_object ---------------------------------------------------------------------------


class Object:
    """An opened bpf_object and the ELF bytes it reads (libbpf keeps a pointer into them)."""

    def __init__(self, data: bytes) -> None:
        self._buf = ctypes.create_string_buffer(data, len(data))
        self.ptr = _check_ptr(
            _lib.bpf_object__open_mem(self._buf, len(data), None), "cannot open BPF object"
        )

    def load(self) -> None:
        _check(_lib.bpf_object__load(self.ptr), "kernel refused the BPF object")

    def close(self) -> None:
        if self.ptr:
            _lib.bpf_object__close(self.ptr)
            self.ptr = 0

    def program(self, name: str) -> int:
        ptr = _lib.bpf_object__find_program_by_name(self.ptr, name.encode())
        if not ptr:
            raise KernelError(f"program {name!r} not found in the object")
        return int(ptr)

    def program_names(self) -> list[str]:
        names: list[str] = []
        prog = _lib.bpf_object__next_program(self.ptr, None)
        while prog:
            names.append(_lib.bpf_program__name(prog).decode())
            prog = _lib.bpf_object__next_program(self.ptr, prog)
        return names

    def program_fd(self, name: str) -> int:
        return _check(_lib.bpf_program__fd(self.program(name)), f"program {name!r} has no fd")

    def program_insn_count(self, name: str) -> int:
        return int(_lib.bpf_program__insn_cnt(self.program(name)))

    def _map(self, name: str) -> int:
        ptr = _lib.bpf_object__find_map_by_name(self.ptr, name.encode())
        if not ptr:
            raise KernelError(f"map {name!r} not found in the object")
        return int(ptr)

    def map_fd(self, name: str) -> int:
        return _check(_lib.bpf_map__fd(self._map(name)), f"map {name!r} has no fd")

    def reuse_map_fd(self, name: str, fd: int) -> None:
        """Before load: make the object use an existing map instead of creating its own."""
        _check(_lib.bpf_map__reuse_fd(self._map(name), fd), f"cannot reuse a map for {name!r}")

    def maps(self) -> list[MapDef]:
        defs: list[MapDef] = []
        ptr = _lib.bpf_object__next_map(self.ptr, None)
        while ptr:
            name = _lib.bpf_map__name(ptr).decode()
            # libbpf's internal maps (.rodata, .bss, ...) are not the artifact's maps
            if not name.startswith("."):
                defs.append(
                    MapDef(
                        name=name,
                        type=map_type_name(_lib.bpf_map__type(ptr)),
                        key_size=_lib.bpf_map__key_size(ptr),
                        value_size=_lib.bpf_map__value_size(ptr),
                        max_entries=_lib.bpf_map__max_entries(ptr),
                    )
                )
            ptr = _lib.bpf_object__next_map(self.ptr, ptr)
        return defs


def map_type_name(map_type: int) -> str:
    name: bytes | None = _lib.libbpf_bpf_map_type_str(map_type)
    return name.decode() if name else f"type{map_type}"


# -- programs -----------------------------------------------------------------------------


# struct xdp_md as BPF_PROG_TEST_RUN takes it for ctx_in: data, data_end, data_meta,
# ingress_ifindex, rx_queue_index, egress_ifindex (the kernel fills the pointers itself)
XDP_MD = struct.Struct("<6I")


def prog_test_run(
    prog_fd: int, data: bytes, repeat: int = 1, data_out_size: int = 0, ingress_ifindex: int = 0
) -> tuple[int, int, bytes]:
    """BPF_PROG_TEST_RUN: (retval, mean duration in ns, data_out). With `ingress_ifindex`,
    the run is as if the frame arrived on that interface of this namespace (without, on its
    loopback)."""
    if len(data) < ETH_HLEN:
        # the kernel refuses these with a bare EINVAL; say why
        raise KernelError(
            f"BPF_PROG_TEST_RUN needs a frame of at least {ETH_HLEN} bytes, got {len(data)}",
            errno.EINVAL,
        )
    size_out = data_out_size or len(data) + 256
    data_in = ctypes.create_string_buffer(data, len(data))
    data_out = ctypes.create_string_buffer(size_out)
    opts = _TestRunOpts(
        sz=ctypes.sizeof(_TestRunOpts),
        data_in=ctypes.addressof(data_in),
        data_out=ctypes.addressof(data_out),
        data_size_in=len(data),
        data_size_out=size_out,
        repeat=repeat,
    )
    if ingress_ifindex:
        ctx = ctypes.create_string_buffer(XDP_MD.pack(0, len(data), 0, ingress_ifindex, 0, 0))
        opts.ctx_in = ctypes.addressof(ctx)
        opts.ctx_size_in = XDP_MD.size
    _check(_lib.bpf_prog_test_run_opts(prog_fd, ctypes.byref(opts)), "BPF_PROG_TEST_RUN failed")
    return opts.retval, opts.duration, data_out.raw[: opts.data_size_out]


BPF_F_TEST_XDP_LIVE_FRAMES = 1 << 1
BPF_STATS_RUN_TIME = 0


def prog_run_live(prog_fd: int, frame: bytes, repeat: int, batch_size: int = 64) -> None:
    """BPF_PROG_RUN of an XDP program in live-frame mode: `repeat` copies of `frame` go
    through the program as real packets (a redirect really transmits), `batch_size` at a time."""
    data = ctypes.create_string_buffer(frame, len(frame))
    opts = _TestRunOpts(
        sz=ctypes.sizeof(_TestRunOpts),
        data_in=ctypes.addressof(data),
        data_size_in=len(frame),
        repeat=repeat,
        flags=BPF_F_TEST_XDP_LIVE_FRAMES,
        batch_size=batch_size,
    )
    _check(_lib.bpf_prog_test_run_opts(prog_fd, ctypes.byref(opts)), "BPF_PROG_RUN (live frames)")


def enable_run_time_stats() -> int:
    """BPF_ENABLE_STATS for run time: the kernel counts run_time_ns and run_cnt of every
    program until the returned fd is closed."""
    return _check(_lib.bpf_enable_stats(BPF_STATS_RUN_TIME), "BPF_ENABLE_STATS")


def prog_get_fd_by_id(prog_id: int) -> int:
    return _check(_lib.bpf_prog_get_fd_by_id(prog_id), f"no BPF program with id {prog_id}")


def map_get_fd_by_id(map_id: int) -> int:
    return _check(_lib.bpf_map_get_fd_by_id(map_id), f"no BPF map with id {map_id}")


def prog_ids() -> list[int]:
    """Ids of every BPF program loaded in the kernel."""
    ids: list[int] = []
    current = c_u32(0)
    while _lib.bpf_prog_get_next_id(current.value, ctypes.byref(current)) == 0:
        ids.append(current.value)
    return ids


def _info(fd: int, info: ctypes.Structure, what: str) -> None:
    size = c_u32(ctypes.sizeof(info))
    _check(_lib.bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(size)), what)


def prog_info(fd: int) -> ProgInfo:
    info = _ProgInfo()
    _info(fd, info, "cannot read program info")
    count = info.nr_map_ids
    ids = (c_u32 * max(count, 1))()
    info = _ProgInfo(nr_map_ids=count, map_ids=ctypes.addressof(ids))
    _info(fd, info, "cannot read program info")
    return ProgInfo(
        id=info.id,
        type=info.type,
        name=info.name.decode(errors="replace"),
        tag=bytes(info.tag).hex(),
        map_ids=tuple(ids[: min(count, info.nr_map_ids)]),
    )


def map_info(fd: int) -> MapInfo:
    info = _MapInfo()
    _info(fd, info, "cannot read map info")
    return MapInfo(
        id=info.id,
        type=info.type,
        name=info.name.decode(errors="replace"),
        key_size=info.key_size,
        value_size=info.value_size,
        max_entries=info.max_entries,
        flags=info.map_flags,
    )


def link_info(fd: int) -> LinkInfo:
    info = _LinkInfo()
    _info(fd, info, "cannot read link info")
    return LinkInfo(id=info.id, type=info.type, prog_id=info.prog_id, ifindex=info.ifindex)


# -- maps ---------------------------------------------------------------------------------


def map_create(
    map_type: int,
    name: str,
    key_size: int,
    value_size: int,
    max_entries: int,
    flags: int = 0,
    inner_map_fd: int = 0,
) -> int:
    opts = _MapCreateOpts(
        sz=ctypes.sizeof(_MapCreateOpts), map_flags=flags, inner_map_fd=inner_map_fd
    )
    return _check(
        _lib.bpf_map_create(
            map_type, name.encode(), key_size, value_size, max_entries, ctypes.byref(opts)
        ),
        f"cannot create map {name!r}",
    )


def map_update(fd: int, key: bytes, value: bytes, flags: int = 0) -> None:
    _check(_lib.bpf_map_update_elem(fd, key, value, flags), "map update failed")


def map_lookup(fd: int, key: bytes, value_size: int) -> bytes | None:
    """The value under `key`, or None when there is none."""
    value = ctypes.create_string_buffer(value_size)
    ret = _lib.bpf_map_lookup_elem(fd, key, value)
    if ret == -2:
        return None
    _check(ret, "map lookup failed")
    return value.raw


def map_delete(fd: int, key: bytes) -> bool:
    ret = _lib.bpf_map_delete_elem(fd, key)
    if ret == -2:
        return False
    _check(ret, "map delete failed")
    return True


def map_next_key(fd: int, key: bytes | None, key_size: int) -> bytes | None:
    """The key after `key` (the first key when None), or None at the end."""
    out = ctypes.create_string_buffer(key_size)
    ret = _lib.bpf_map_get_next_key(fd, key, out)
    if ret == -2:
        return None
    _check(ret, "map iteration failed")
    return out.raw


def map_update_batch(fd: int, keys: bytes, values: bytes, count: int) -> None:
    """BPF_MAP_UPDATE_BATCH: `count` keys and values, each array packed back to back."""
    done = 0
    while done < count:
        # the kernel may stop early (e.g. on a signal) and reports how many it wrote
        left = c_u32(count - done)
        key_size, value_size = len(keys) // count, len(values) // count
        opts = _BatchOpts(sz=ctypes.sizeof(_BatchOpts))
        ret = _lib.bpf_map_update_batch(
            fd,
            _offset(keys, done * key_size),
            _offset(values, done * value_size),
            ctypes.byref(left),
            ctypes.byref(opts),
        )
        if ret < 0 and not (ret == -errno.EINTR and left.value):
            _check(ret, "batched map update failed")
        done += left.value


def map_delete_batch(fd: int, keys: bytes, count: int) -> None:
    """BPF_MAP_DELETE_BATCH of `count` packed keys (every key must be present)."""
    if not count:
        return
    left = c_u32(count)
    _check(_lib.bpf_map_delete_batch(fd, keys, ctypes.byref(left), None), "batched delete failed")


def map_items(fd: int, key_size: int, value_size: int, chunk: int = 8192) -> tuple[bytes, bytes]:
    """Every key and value of a hash map, read with BPF_MAP_LOOKUP_BATCH, packed back to back."""
    keys_buf = ctypes.create_string_buffer(key_size * chunk)
    values_buf = ctypes.create_string_buffer(value_size * chunk)
    # the hash map's batch cursor is a bucket number; 8 bytes leave room for any map's cursor
    cursor_in, cursor_out = ctypes.create_string_buffer(8), ctypes.create_string_buffer(8)
    first = True
    keys: list[bytes] = []
    values: list[bytes] = []
    while True:
        count = c_u32(chunk)
        opts = _BatchOpts(sz=ctypes.sizeof(_BatchOpts))
        ret = _lib.bpf_map_lookup_batch(
            fd,
            None if first else cursor_in,
            cursor_out,
            keys_buf,
            values_buf,
            ctypes.byref(count),
            ctypes.byref(opts),
        )
        if ret < 0 and ret != -errno.ENOENT:
            _check(ret, "batched map lookup failed")
        keys.append(keys_buf.raw[: count.value * key_size])
        values.append(values_buf.raw[: count.value * value_size])
        if ret == -errno.ENOENT:
            return b"".join(keys), b"".join(values)
        ctypes.memmove(cursor_in, cursor_out, 8)
        first = False


def _offset(buf: bytes, start: int) -> int:
    return ctypes.cast(ctypes.c_char_p(buf), c_void_p).value + start  # type: ignore[operator]


def map_freeze(fd: int) -> None:
    _check(_lib.bpf_map_freeze(fd), "cannot freeze map")


# -- pins and links -----------------------------------------------------------------------


def obj_pin(fd: int, path: str | os.PathLike[str]) -> None:
    _check(_lib.bpf_obj_pin(fd, os.fsencode(path)), f"cannot pin {os.fspath(path)}")


def obj_get(path: str | os.PathLike[str]) -> int:
    return _check(_lib.bpf_obj_get(os.fsencode(path)), f"cannot open pin {os.fspath(path)}")


def link_create(prog_fd: int, ifindex: int, attach_type: int = BPF_XDP, flags: int = 0) -> int:
    """A BPF link attaching `prog_fd` (for XDP: `flags` are XDP_FLAGS_*_MODE)."""
    opts = _LinkCreateOpts(sz=ctypes.sizeof(_LinkCreateOpts), flags=flags)
    return _check(
        _lib.bpf_link_create(prog_fd, ifindex, attach_type, ctypes.byref(opts)),
        f"cannot attach program to ifindex {ifindex}",
    )


def link_update(link_fd: int, new_prog_fd: int, old_prog_fd: int | None = None) -> None:
    """Swap the link's program atomically; with `old_prog_fd`, only if it still runs that one."""
    bpf_f_replace = 1 << 2
    opts = _LinkUpdateOpts(sz=ctypes.sizeof(_LinkUpdateOpts))
    if old_prog_fd is not None:
        opts.flags = bpf_f_replace
        opts.old_prog_fd = old_prog_fd
    _check(_lib.bpf_link_update(link_fd, new_prog_fd, ctypes.byref(opts)), "cannot update link")


def link_detach(link_fd: int) -> None:
    _check(_lib.bpf_link_detach(link_fd), "cannot detach link")
