"""Keep the payload's resident memory from creeping on glibc: fixed malloc mmap/trim thresholds.

glibc serves an allocation above `M_MMAP_THRESHOLD` (128 KiB) with its own mmap, returned to the
system when freed, but by default it RAISES that threshold to the size of every such block freed
(up to 32 MiB). The payload rebuilds some buffers whose size follows the flight (the zone snapshot
and zone layers every few seconds, JSON and KML text of hundreds of zones): after the first few,
each new larger one comes from the heap instead, and the heap does not shrink, so RSS grows by a
step each time the buffers reach a new size. `python -m pytest tests/payload/test_heap.py -s`
shows the pattern in a child process (RSS +16.5 MB with the default, +4.8 MB pinned); `make soak`'s
10 % flight grew +100 MB before this and the faster zone cuts, +10 MB after (README).
Setting the thresholds explicitly turns the adjustment off (mallopt(3)). The same can be done from
outside with MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_; an explicit environment value wins.

The trim threshold only gives back free memory at the TOP of the main heap. A zone cut frees most
of what it made (the cut's geometries, the old snapshot), and long-lived blocks made meanwhile sit
above it, so free pages in the middle of the heaps (and in the threads' arenas: the layer writer's)
stay resident: the soak's 10 % flight alone kept several MB of it (README, "2 h soak").
`release_free_heap` (glibc `malloc_trim(0)`, which also returns whole free pages inside the heaps)
is called after each zone cut (payload/pipeline/geotag.py); elsewhere it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from collections.abc import Callable

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 128 * 1024  # glibc's own starting value, kept fixed
TRIM_THRESHOLD = 256 * 1024


def pin_malloc_thresholds() -> bool:
    """Fix glibc's mmap and trim thresholds (process-wide, once at start); False where it cannot (not glibc)."""
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") or os.environ.get("MALLOC_TRIM_THRESHOLD_"):
        log.debug("malloc thresholds left to the environment")
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl, macOS: no mallopt, and no dynamic threshold to pin
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    log.debug("malloc thresholds pinned: mmap %d, trim %d (%s)", MMAP_THRESHOLD, TRIM_THRESHOLD, ok)
    return ok


_trim: Callable[[int], int] | None = None
_trim_looked_up = False


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, looked up once; None where the C library is not glibc (musl, macOS, Windows)."""
    global _trim, _trim_looked_up
    if not _trim_looked_up:
        _trim_looked_up = True
        try:
            os.confstr("CS_GNU_LIBC_VERSION")  # glibc only: ValueError or OSError elsewhere
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            fn = libc.malloc_trim
        except (ValueError, OSError, AttributeError):
            return None
        fn.argtypes = [ctypes.c_size_t]
        fn.restype = ctypes.c_int
        _trim = fn
    return _trim


def release_free_heap() -> bool:
    """Give the heaps' free pages back to the system (glibc `malloc_trim(0)`); False where it cannot (not glibc).

    Costs a walk over the free blocks (well under a millisecond for the payload's heaps): call it at a
    low-frequency point, after a zone cut, not per frame.
    """
    fn = _malloc_trim()
    if fn is None:
        return False
    fn(0)
    return True
