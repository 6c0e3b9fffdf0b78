"""Keep freed memory for reuse while a run lasts (glibc's malloc, Linux).

Every evaluation allocates the same feature maps again. By default glibc maps each block above its threshold
afresh and returns freed memory at the heap's top to the system, so the next evaluation page-faults it all in
again: on a 2-core virtual machine that was about a fifth of an evaluation of VGG16 at 512 px (bench/RESULTS.md,
"keeping freed memory"). During a run every block comes from the heap and freed memory stays there; when the
outermost run ends, the free memory is handed back and glibc's defaults return (as fixed values: glibc stops
adjusting its mapping threshold by itself once a program has set one).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import platform
import threading

# mallopt's parameter numbers (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4
GLIBC_DEFAULT_MMAP_MAX = 65536
GLIBC_DEFAULT_THRESHOLD = 128 * 1024  # both thresholds' documented defaults
KEPT_MMAP_THRESHOLD = 32 * 1024 * 1024  # the largest glibc accepts on 64-bit machines
KEPT_TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int: in effect, never trim while the run lasts


class MallInfo2(ctypes.Structure):
    """glibc's ``struct mallinfo2`` (2.33+): where the allocator's bytes are."""

    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


@functools.lru_cache(maxsize=1)
def glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (Linux), else None (macOS, Windows, musl): those keep their own ways."""
    if platform.system() != "Linux":
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    if not all(hasattr(libc, name) for name in ("gnu_get_libc_version", "mallopt", "malloc_trim")):
        return None
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    return libc


_lock = threading.Lock()
_depth = 0  # runs inside kept_heap now, across threads (the server runs jobs in threads; a video nests runs)


@contextlib.contextmanager
def kept_heap(enabled: bool = True):
    """Within: freed memory is kept for the next evaluation. No-op where ``enabled`` is false or libc is not
    glibc. Nested and concurrent uses share one setting, undone when the last one ends."""
    libc = glibc() if enabled else None
    if libc is None:
        yield
        return
    global _depth
    with _lock:
        if _depth == 0:
            libc.mallopt(M_MMAP_THRESHOLD, KEPT_MMAP_THRESHOLD)
            libc.mallopt(M_TRIM_THRESHOLD, KEPT_TRIM_THRESHOLD)
            libc.mallopt(M_MMAP_MAX, 0)  # blocks above the ceiling too (a 512 px picture's first maps are 50 MB)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                libc.mallopt(M_MMAP_THRESHOLD, GLIBC_DEFAULT_THRESHOLD)
                libc.mallopt(M_TRIM_THRESHOLD, GLIBC_DEFAULT_THRESHOLD)
                libc.mallopt(M_MMAP_MAX, GLIBC_DEFAULT_MMAP_MAX)
                libc.malloc_trim(0)


def mallinfo() -> MallInfo2 | None:
    """The allocator's counts (glibc 2.33+), or None."""
    libc = glibc()
    if libc is None or not hasattr(libc, "mallinfo2"):
        return None
    libc.mallinfo2.restype = MallInfo2
    return libc.mallinfo2()
