"""A ctypes binding over libbpf's ring buffer consumer (ring_buffer__new, __poll, __consume)."""

from __future__ import annotations

import ctypes
import errno
from collections.abc import Callable

from fwc.loader.kernel.libbpf import KernelError
from fwc.loader.kernel.resource import Closing

# A handle of its own, so these declarations never touch the ones in loader/libbpf.py;
# the dynamic loader hands back the library libbpf.py already loaded.
_lib = ctypes.CDLL("libbpf.so.1", use_errno=True)

# int (*ring_buffer_sample_fn)(void *ctx, void *data, size_t size)
_SAMPLE_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)

_lib.ring_buffer__new.restype = ctypes.c_void_p
_lib.ring_buffer__new.argtypes = [ctypes.c_int, _SAMPLE_FN, ctypes.c_void_p, ctypes.c_void_p]
_lib.ring_buffer__poll.restype = ctypes.c_int
_lib.ring_buffer__poll.argtypes = [ctypes.c_void_p, ctypes.c_int]
_lib.ring_buffer__consume.restype = ctypes.c_int
_lib.ring_buffer__consume.argtypes = [ctypes.c_void_p]
_lib.ring_buffer__free.restype = None
_lib.ring_buffer__free.argtypes = [ctypes.c_void_p]


class RingBuffer(Closing):
    """Reads the records of one BPF ring buffer map, handing each to `on_record` as bytes.

    It does not own `map_fd` (libbpf maps the ring itself); `close()` frees the
    consumer. When `on_record` returns False the poll stops after that record and
    the later ones stay in the ring for the next reader. An exception raised by
    `on_record` stops the poll the same way and is raised again from `poll` or
    `consume`.
    """

    def __init__(self, map_fd: int, on_record: Callable[[bytes], bool | None]) -> None:
        self._on_record = on_record
        self._error: BaseException | None = None
        self._stopped = False
        # kept on the instance: libbpf calls it for as long as the consumer lives
        self._callback = _SAMPLE_FN(self._sample)
        ptr = _lib.ring_buffer__new(map_fd, self._callback, None, None)
        if not ptr:
            err = ctypes.get_errno() or errno.EINVAL
            raise KernelError(
                f"cannot read ring buffer map (fd {map_fd}): {errno.errorcode.get(err, err)}", err
            )
        self._ptr: int | None = ptr

    def _sample(self, _ctx: int | None, data: int | None, size: int) -> int:
        try:
            wanted = self._on_record(ctypes.string_at(data or 0, size))
        except BaseException as exc:
            self._error = exc
            wanted = False
        if wanted is False:
            # a negative return makes libbpf stop here, past this record only
            self._stopped = True
            return -1
        return 0

    def poll(self, timeout_ms: int) -> int:
        """Waits up to `timeout_ms` for records and consumes them; their number (0 on a signal)."""
        return self._done(_lib.ring_buffer__poll(self._handle(), timeout_ms), "poll")

    def consume(self) -> int:
        """Consumes the records already there without waiting; their number."""
        return self._done(_lib.ring_buffer__consume(self._handle()), "consume")

    def _handle(self) -> int:
        if self._ptr is None:
            raise KernelError("the ring buffer consumer is closed")
        return self._ptr

    def _done(self, ret: int, what: str) -> int:
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        if self._stopped:
            self._stopped = False
            return max(ret, 0)
        if ret == -errno.EINTR:
            return 0
        if ret < 0:
            raise KernelError(f"ring buffer {what} failed: {errno.errorcode.get(-ret, -ret)}", -ret)
        return ret

    def close(self) -> None:
        if self._ptr is not None:
            _lib.ring_buffer__free(self._ptr)
            self._ptr = None
