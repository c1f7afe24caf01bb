"""`python -m tools.bench_multitpu --bundle B`: what the watched children and the device pool cost per tile.

No machine of this project has an Edge TPU, so the pool's members here run the bundle's CPU model, each
in its own watched child, exactly as `payload/backends/pool.py` runs Edge TPU children: same pipe, same
tile-by-tile protocol, same queue. The figures are therefore the runtime's own overhead (pickling a tile,
the pipe, the threads) beside an in-process classifier, not an Edge TPU's speed: on this machine's two
shared cores, N CPU children cannot classify N times faster. The overhead per tile is what matters
beside docs/CORAL.md's modelled chip times (0.33 ms a tile for the quick bundle, 49 ms for ResNet-50).
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Sequence

import numpy as np

from payload.backends.base import Classifier
from payload.backends.cpu import CpuClassifier
from payload.backends.isolated import IsolatedClassifier
from payload.backends.pool import ReplicaPool
from payload.bundle import Bundle, load_bundle


def per_tile_ms(clf: Classifier, tiles: np.ndarray, repeats: int) -> float:
    """Median over `repeats` batches of the milliseconds per tile."""
    clf.classify_batch(tiles[:1])
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        clf.classify_batch(tiles)
        runs.append((time.perf_counter() - t0) * 1000.0 / len(tiles))
    return statistics.median(runs)


def child(bundle: Bundle, threads: int, restarts: int = 1) -> IsolatedClassifier:
    """The bundle's CPU model in a watched child, as the Edge TPU backend puts its model in one."""
    return IsolatedClassifier(CpuClassifier, (bundle, threads), len(bundle.labels), restarts=restarts,
                              tile_deadline_s=5.0)


def main(argv: Sequence[str] | None = None) -> int:
    """Print ms per tile: in-process, one watched child, pools of 2..N children."""
    ap = argparse.ArgumentParser(prog="python -m tools.bench_multitpu", description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--tiles", type=int, default=60, help="tiles per batch (one frame's)")
    ap.add_argument("--children", type=int, default=3, help="the largest pool")
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args(argv)
    bundle = load_bundle(a.bundle)
    tiles = np.random.default_rng(0).integers(0, 256, (a.tiles, bundle.input_height, bundle.input_width, 3),
                                              dtype=np.uint8)
    rows: list[tuple[str, float]] = []
    cpu = CpuClassifier(bundle, 1)
    rows.append(("in-process CPU, 1 thread", per_tile_ms(cpu, tiles, a.repeats)))
    cpu.close()
    one = child(bundle, 1)
    rows.append(("1 watched child (the single-device path)", per_tile_ms(one, tiles, a.repeats)))
    one.close()
    for n in range(2, a.children + 1):
        pool = ReplicaPool([f"cpu:{k}" for k in range(n)],
                           [functools.partial(child, bundle, 1, 0) for _ in range(n)], len(bundle.labels))
        rows.append((f"pool of {n} watched children", per_tile_ms(pool, tiles, a.repeats)))
        pool.close()
    base = rows[0][1]
    print(f"{bundle.path}: {a.tiles} tiles of {bundle.input_height}x{bundle.input_width} per batch, median of "
          f"{a.repeats}")
    for name, ms in rows:
        print(f"  {name:<42} {ms:7.3f} ms/tile  ({ms - base:+.3f} vs in-process)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
