"""glibc's dynamic mmap threshold makes RSS creep when buffers of varying, growing size are rebuilt; pinning stops it.

The child below does what the payload does every zone cut in a big map: it builds a few text
buffers whose size follows the flight (random below a growing top), drops them, and keeps a little
state meanwhile. With glibc's default the heap keeps every high-water mark; with the thresholds
pinned (payload/pipeline/heap.py, called by `payload run` and the soak) large buffers go back to the
system when dropped.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from payload.pipeline import heap
from payload.pipeline.heap import pin_malloc_thresholds, release_free_heap

ROOT = Path(__file__).resolve().parents[2]
CHILD = """
import random, sys
import psutil
if sys.argv[1] == "pin":
    from payload.pipeline.heap import pin_malloc_thresholds
    assert pin_malloc_thresholds()
p = psutil.Process()
rng = random.Random(3)
keep = []
r0 = p.memory_info().rss
for i in range(400):
    top = 300_000 + i * 20_000
    bufs = [bytes(bytearray(b"x") * int(top * rng.uniform(0.3, 1.0))) for _ in range(3)]
    keep.append([bytes(64) for _ in range(100)])
    del bufs
print((p.memory_info().rss - r0) / 1e6)
"""


def _growth_mb(mode: str) -> float:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}  # no MALLOC_* from the caller's environment
    out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, check=True, env=env,
                         cwd=ROOT, timeout=120)
    return float(out.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_pinned_thresholds_stop_the_creep() -> None:
    default, pinned = _growth_mb("default"), _growth_mb("pin")
    print(f"HEAP: RSS growth with glibc's default {default:.1f} MB, pinned {pinned:.1f} MB")
    assert default > 12.0  # the creep is real in this pattern (measured 28.9 MB)
    assert pinned < default / 3  # measured 4.8 MB


def test_an_explicit_environment_setting_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert pin_malloc_thresholds() is False


TRIM_CHILD = """
import sys
import psutil
from payload.pipeline.heap import pin_malloc_thresholds, release_free_heap
pin_malloc_thresholds()
p = psutil.Process()
blocks = [bytearray(2000) for _ in range(40_000)]  # 80 MB of small blocks in the heap, each below the mmap threshold
keep = blocks[::50]  # a few stay, scattered: the heap's top cannot shrink past them
del blocks
before = p.memory_info().rss
trimmed = release_free_heap()
print(trimmed, (before - p.memory_info().rss) / 1e6)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim: Linux only")
def test_release_free_heap_gives_back_free_pages_below_live_blocks() -> None:
    """Free memory under a few live blocks is not returned by the trim threshold; malloc_trim(0) returns it."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", TRIM_CHILD], capture_output=True, text=True, check=True, env=env,
                         cwd=ROOT, timeout=120)
    trimmed, freed_mb = out.stdout.split()
    print(f"HEAP: malloc_trim(0) gave back {float(freed_mb):.1f} MB")
    assert trimmed == "True" and float(freed_mb) > 20.0


def test_release_free_heap_is_a_no_op_where_the_c_library_is_not_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_glibc(name: str) -> str:
        raise ValueError(name)

    monkeypatch.setattr(heap.os, "confstr", not_glibc)
    monkeypatch.setattr(heap, "_trim", None)
    monkeypatch.setattr(heap, "_trim_looked_up", False)
    assert release_free_heap() is False
