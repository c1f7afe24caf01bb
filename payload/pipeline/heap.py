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
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

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
