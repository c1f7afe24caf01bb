"""The quick mosaic's cost on a 100 ha survey: memory held while flying and writing, time per frame, file sizes.

`python -m tools.bench_mosaic [--side-m 1000]` flies the payload's own MosaicSink over a square field
(a nadir 640x480 camera with a 60 degree lens at 30 m, legs 20 m apart, 5 m/s at 5 fps, so the sink
takes every mosaic.every_n_frames-th frame as in flight) with look records built by the camera model
exactly as geotagging builds them, then closes it (mosaic.tif, mosaic.png). Frames are random
texture (their content does not change the cost). Memory is measured two ways: tracemalloc's peak
(numpy and OpenCV arrays: the tiles, the frame being warped, the PNG being built) and the growth of
the process's peak RSS (which also counts GDAL's block cache while the GeoTIFF is written).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio  # noqa: F401 - loaded before the RSS baseline: the payload has it loaded by the end of a run anyway

from payload.config import MosaicSection
from payload.geo.camera import CameraModel, box_corners, pixels_to_latlon
from payload.geo.frames import LocalFrame
from payload.pipeline.tiling import grid
from payload.sinks.mosaic import MosaicSink, mosaic_memory_bound_bytes
from payload.types import Frame, FrameResult, Pose, TileResult

ORIGIN = LocalFrame(-35.363261, 149.165230, 0.0)


def survey(side_m: float, spacing_m: float = 20.0, speed_mps: float = 5.0, fps: float = 5.0,
           margin_m: float = 10.0) -> list[tuple[float, float, float]]:
    """(east, north, yaw) of every camera frame of a lawnmower survey over a side_m square."""
    step = speed_mps / fps
    out = []
    legs = int(side_m // spacing_m) + 1
    for leg in range(legs):
        e = leg * spacing_m
        ns = np.arange(-margin_m, side_m + margin_m + 1e-9, step)
        yaw = 0.0
        if leg % 2:
            ns, yaw = ns[::-1], np.pi
        out += [(e, float(n), yaw) for n in ns]
    return out


def run(side_m: float, cfg: MosaicSection, out_dir: Path) -> dict:
    cam = CameraModel.from_hfov(640, 480, 60.0)
    boxes = grid(640, 480, 3, 4)
    corners = np.concatenate([box_corners(b.x, b.y, b.w, b.h) for b in boxes])
    rng = np.random.default_rng(0)
    bank = [rng.integers(0, 255, (480, 640, 3), dtype=np.uint8) for _ in range(4)]
    tiles = tuple(TileResult(b, np.zeros(3), "healthy", 0.9, False) for b in boxes)
    poses = survey(side_m)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    sink = MosaicSink(out_dir, cfg)
    times = []
    t_start = time.perf_counter()
    for i, (e, n, yaw) in enumerate(poses):
        lat, lon, _ = ORIGIN.to_geodetic(e, n, 0.0)
        if (i % cfg.every_n_frames) == 0:
            ll = pixels_to_latlon(cam, corners, Pose(float(lat), float(lon), 30.0, 0.0, 0.0, yaw), 0.0)
            fps = ll.reshape(len(boxes), 4, 2).tolist()
        else:
            fps = [None] * len(boxes)  # frames the sink skips need no footprints for this measurement
        look = {"trusted": True, "vehicle": {"lat": float(lat), "lon": float(lon), "height_agl_m": 30.0},
                "tiles": [{"footprint": f} for f in fps]}
        result = FrameResult(Frame(bank[i % 4], i, i / 5.0, 1.7e9 + i / 5.0), tiles, 1.0, "cpu", i / 5.0)
        t0 = time.perf_counter()
        sink.on_look(look, result)
        if (i % cfg.every_n_frames) == 0:
            times.append(time.perf_counter() - t0)
    flying_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.reset_peak()
    t_close = time.perf_counter()
    sink.on_close()
    close_s = time.perf_counter() - t_close
    closing_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    info = json.loads((out_dir / "mosaic.json").read_text())
    return {
        "side_m": side_m,
        "area_ha": round(side_m * side_m / 1e4, 1),
        "frames_flown": len(poses),
        "frames_in_mosaic": info["frames"],
        "m_per_px": cfg.m_per_px,
        "mosaic_px": info["size_px"],
        "tiles": info["tiles"],
        "tiles_spilled": info["memory"]["spilled"],
        "tiles_reloaded": info["memory"]["reloaded"],
        "tile_bound_mb": round(mosaic_memory_bound_bytes(cfg) / 2**20, 1),
        "traced_peak_flying_mb": round(flying_peak / 2**20, 1),
        "traced_peak_writing_mb": round(closing_peak / 2**20, 1),
        "rss_peak_growth_mb": round((rss1 - rss0) / 1024, 1),
        "all_tiles_in_memory_would_be_mb": round(info["tiles"] * 256 * 256 * 4 / 2**20, 1),
        "frame_ms_p50": round(1000 * statistics.median(times), 2),
        "frame_ms_p95": round(1000 * float(np.percentile(times, 95)), 2),
        "flying_s": round(t_close - t_start, 1),
        "close_s": round(close_s, 1),
        "mosaic_tif_mb": round((out_dir / "mosaic.tif").stat().st_size / 2**20, 1),
        "mosaic_png_mb": round((out_dir / "mosaic.png").stat().st_size / 2**20, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.bench_mosaic", description=__doc__.splitlines()[0])
    ap.add_argument("--side-m", type=float, default=1000.0, help="side of the square field (1000 = 100 ha)")
    ap.add_argument("--out", type=Path, default=None, help="keep the mosaic here (default: a temporary folder)")
    a = ap.parse_args(argv)
    cfg = MosaicSection()
    if a.out is not None:
        a.out.mkdir(parents=True, exist_ok=True)
        print(json.dumps(run(a.side_m, cfg, a.out), indent=2))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(run(a.side_m, cfg, Path(tmp)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
