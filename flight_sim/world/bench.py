"""How fast the world shades a 640 x 480 frame, and what it holds in memory.

    python -m flight_sim.world.bench [--repeat 5]

For each crop: a nadir frame at 1, 30 and 54 mm/px over healthy canopy and over a late rust patch
(CPU time of `World.shade`, best of `repeat`), then the memory a 10 ha world holds and the peak a
1 mm/px frame allocates (tracemalloc). CPU time, not wall time: on a shared machine the wall clock
measures the neighbours too.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

from flight_sim.world.config import CropSection, LightSection, PatchSpec
from flight_sim.world.world import World

FRAME = (640, 480)


def frame_points(centre: tuple[float, float], gsd_m: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ground points and footprints of a nadir 640 x 480 frame."""
    w, h = FRAME
    east = centre[0] + (np.arange(w) - w / 2 + 0.5) * gsd_m
    north = centre[1] - (np.arange(h) - h / 2 + 0.5) * gsd_m
    e, n = np.meshgrid(east, north)
    return e.ravel().astype(np.float32), n.ravel().astype(np.float32), np.full(w * h, gsd_m, np.float32)


def cpu_ms(world: World, pts: tuple[np.ndarray, np.ndarray, np.ndarray], repeat: int) -> float:
    world.shade(*pts)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        world.shade(*pts)
        best = min(best, time.process_time() - t0)
    return best * 1000.0


def memory_10ha() -> tuple[float, float]:
    """(MB the world holds, MB peak while shading one 640 x 480 frame at 1 mm/px) for a 316 x 316 m field."""
    tracemalloc.start()
    world = World(CropSection(kind="wheat"), LightSection(cloud_cover=0.3), [PatchSpec("rust", 150, 150, 20, "late")],
                  316.0, 316.0, 1)
    held, _ = tracemalloc.get_traced_memory()
    pts = frame_points((150.0, 150.0), 0.001)
    tracemalloc.reset_peak()
    base, _ = tracemalloc.get_traced_memory()
    world.shade(*pts)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return held / 1e6, (peak - base) / 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    print(f"World.shade, {FRAME[0]} x {FRAME[1]} = {FRAME[0] * FRAME[1]} points, CPU ms (best of {args.repeat})")
    print(f"{'crop':10s} {'mm/px':>6s} {'healthy':>8s} {'in patch':>9s}")
    for kind in ("wheat", "soybean", "cucurbit", "grapevine"):
        world = World(CropSection(kind=kind), LightSection(), [PatchSpec("rust", 60, 60, 12, "late")], 120, 120, 1)
        for gsd in (0.001, 0.030, 0.054):
            healthy = cpu_ms(world, frame_points((20.0, 20.0), gsd), args.repeat)
            sick = cpu_ms(world, frame_points((60.0, 60.0), gsd), args.repeat)
            print(f"{kind:10s} {gsd * 1000:6.0f} {healthy:8.1f} {sick:9.1f}")
    held, peak = memory_10ha()
    print(f"10 ha world: holds {held:.2f} MB; one 1 mm/px frame peaks at {peak:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
