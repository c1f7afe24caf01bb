"""The disease map's cost for `make bench`: grid update per 12-tile frame, and grid memory for 100 ha.

Both run the payload's own code on synthetic but realistic input (no model needed):
- update: look records of a nadir camera at 30 m (640x480, 60 deg, 3 x 4 tiles of ~8.7 m) flying
  5 m/s at 5 fps over a field with a rust patch, fed through `DiseaseMap.add_look` exactly as in
  flight (WGS84 -> local frame, footprint fractions, evidence, the packed 16-bit update); the zone
  extraction that runs every `zones_every_frames` looks is timed separately;
- memory: a lawnmower survey of a 1000 m x 1000 m field (100 ha; legs 20 m apart, each leg's swath
  added as one footprint, so the chunks allocated are the ones a real flight touches) and the bytes
  the grid's arrays hold. `python -m tools.bench_map` prints both alone.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np

from payload.config import MapSection
from payload.geo.camera import CameraModel, box_corners, pixels_to_latlon
from payload.geo.diseasemap import DiseaseMap
from payload.geo.frames import LocalFrame
from payload.geo.grid import EvidenceGrid
from payload.geo.looks import LOOK_SCHEMA
from payload.geo.sensor import default_sensor_model
from payload.pipeline.tiling import grid
from payload.types import Pose

ORIGIN = LocalFrame(-35.363261, 149.165230, 0.0)
LABELS = ("rust", "powdery_mildew")
# choosing a busy chip's tiles must cost well under one tile on the chip: a tenth of the 224 px
# ResNet-50's modelled ~42 ms on USB 3 (tools/coral.py modelled_cost("resnet50"))
CHOOSE_MAX_SHARE_OF_TILE = 0.1
TARGETS = {"map_update_ms_p50": ("<=", 5.0), "map_memory_mb_100ha": ("<=", 20.0),
           "choose_share_of_tile": ("<=", CHOOSE_MAX_SHARE_OF_TILE)}


def _camera_tiles() -> tuple[CameraModel, list, np.ndarray]:
    """The bench's camera (640x480, 60 deg), its 3 x 4 tiles and their corner pixels."""
    cam = CameraModel.from_hfov(640, 480, 60.0)
    boxes = grid(640, 480, 3, 4)
    return cam, boxes, np.concatenate([box_corners(b.x, b.y, b.w, b.h) for b in boxes])


def _looks(n_frames: int, speed_mps: float = 5.0, fps: float = 5.0) -> list[dict]:
    cam, boxes, corners = _camera_tiles()
    out = []
    for i in range(n_frames):
        n = -20.0 + i * speed_mps / fps
        lat, lon, _ = ORIGIN.to_geodetic(40.0, n, 0.0)
        pose = Pose(float(lat), float(lon), 30.0, 0.0, 0.0, 0.0)
        ll = pixels_to_latlon(cam, corners, pose, 0.0).reshape(len(boxes), 4, 2)
        tiles = []
        for b, q in zip(boxes, ll, strict=True):
            ce, cn, _ = ORIGIN.to_enu(float(q[:, 0].mean()), float(q[:, 1].mean()), 0.0)
            hit = math.hypot(float(ce) - 40.0, float(cn) - 60.0) < 8.0
            tiles.append({"row": b.row, "col": b.col, "label": "rust" if hit else "healthy", "flagged": hit,
                          "scores": [0.1, 0.8, 0.1] if hit else [0.9, 0.05, 0.05],
                          "footprint": [[round(float(a), 8), round(float(c), 8)] for a, c in q]})
        out.append({"schema": LOOK_SCHEMA, "run_id": "bench", "trusted": True, "flags": [],
                    "vehicle": {"lat": float(lat), "lon": float(lon), "alt_m": 30.0}, "tiles": tiles})
    return out


def update_figures(n_frames: int = 600) -> dict:
    """Median and p95 ms of `DiseaseMap.add_look` per 12-tile frame, zone extractions apart."""
    looks = _looks(n_frames)
    dm = DiseaseMap(default_sensor_model("healthy", LABELS), MapSection(), ORIGIN)
    every = dm.cfg.zones_every_frames
    update_ms, zones_ms = [], []
    for i, rec in enumerate(looks):
        t0 = time.perf_counter()
        dm.add_look(rec)
        ms = 1000.0 * (time.perf_counter() - t0)
        (zones_ms if (i + 1) % every == 0 else update_ms).append(ms)
    return {
        "map_update_ms_p50": round(statistics.median(update_ms), 3),
        "map_update_ms_p95": round(float(np.percentile(update_ms, 95)), 3),
        "map_update_with_zones_ms_p50": round(statistics.median(zones_ms), 3),
        "map_frames": n_frames,
        "map_tiles_per_frame": 12,
        "map_zones_found": len(dm.zones),
    }


def choose_figures(n_frames: int = 600) -> dict:
    """What ranking a frame's tiles costs (`DiseaseMap.tile_values`, payload/pipeline/choose.py), against a tile.

    The map is the update bench's after its flight; each frame's tiles are ranked before that frame is
    added, as the scheduler ranks the newest frame while the map holds everything before it. The
    frame's placement (pose and footprints) is not counted: the geotagger computes the same per frame.
    """
    from tools.coral import device_models, invoke_s, modelled_cost

    looks = _looks(n_frames)
    dm = DiseaseMap(default_sensor_model("healthy", LABELS), MapSection(), ORIGIN)
    ms = []
    for rec in looks:
        probe = {**rec, "tiles": [{"footprint": t["footprint"]} for t in rec["tiles"]]}
        t0 = time.perf_counter()
        dm.tile_values(probe)
        ms.append(1000.0 * (time.perf_counter() - t0))
        dm.add_look(rec)
    tile_ms = 1000.0 * invoke_s(modelled_cost("resnet50", None), device_models()["usb3"])
    p50 = statistics.median(ms[1:])  # the first frame has no origin to rank against
    return {"choose_ms_p50": round(p50, 3), "choose_ms_p95": round(float(np.percentile(ms[1:], 95)), 3),
            "choose_tile_ms_modelled": round(tile_ms, 2), "choose_share_of_tile": round(p50 / tile_ms, 4)}


def memory_figures(cell_m: float | None = None, side_m: float = 1000.0, spacing_m: float = 20.0,
                   swath_m: float = 34.64, margin_m: float = 10.0) -> dict:
    """Memory the grid holds after a lawnmower survey of a side_m x side_m field.

    `map_memory_mb_100ha` (the target) is everything Python allocated for the grid, traced by
    tracemalloc: the cell arrays and each chunk's bookkeeping (dict entry, object, array header).
    """
    cfg = MapSection() if cell_m is None else MapSection(cell_m=cell_m)
    started = tracemalloc.is_tracing()
    if not started:
        tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    g = EvidenceGrid(cfg.cell_m, len(LABELS), chunk=cfg.chunk_cells, clamp=cfg.clamp_logodds, subsamples=1)
    for k in range(int(side_m / spacing_m)):
        e = spacing_m * (k + 0.5)
        quad = np.array([[e - swath_m / 2, side_m + margin_m], [e + swath_m / 2, side_m + margin_m],
                         [e + swath_m / 2, -margin_m], [e - swath_m / 2, -margin_m]])
        g.add_footprints(quad[None], np.array([[-0.4, -0.4]]))
    traced = tracemalloc.get_traced_memory()[0] - before
    if not started:
        tracemalloc.stop()
    b = g.extent()
    assert b is not None
    _ev, looks = g.dense(b)
    seen_ha = float((looks > 0).sum()) * cfg.cell_m ** 2 / 1e4
    return {
        "map_cell_m": cfg.cell_m,
        "map_memory_mb_100ha": round(traced / 1e6, 2),
        "map_memory_mib_100ha": round(traced / 2**20, 2),
        "map_cells_mb_100ha": round(g.nbytes / 1e6, 2),
        "map_seen_ha": round(seen_ha, 1),
        "map_chunks": len(g.chunks),
        "map_bytes_per_cell": 2 * len(LABELS),
    }


def _noisy_looks(n_frames: int, rate: float, leg_m: float = 300.0, spacing_m: float = 25.0, step_m: float = 1.0,
                 seed: int = 1) -> list[dict]:
    """A lawnmower survey at 5 m/s and 5 fps where `rate` of the tiles, anywhere, are flagged (either disease)."""
    import random

    rng = random.Random(seed)
    cam, boxes, corners = _camera_tiles()
    out = []
    for i in range(n_frames):
        lap, s = divmod(i * step_m, leg_m + spacing_m)
        k = int(lap)
        if s < leg_m:
            e, n, yaw = k * spacing_m, (s if k % 2 == 0 else leg_m - s), (0.0 if k % 2 == 0 else 180.0)
        else:
            e, n, yaw = k * spacing_m + (s - leg_m), (leg_m if k % 2 == 0 else 0.0), 90.0
        lat, lon, _ = ORIGIN.to_geodetic(e, n, 0.0)
        pose = Pose(float(lat), float(lon), 30.0, 0.0, 0.0, yaw)
        ll = pixels_to_latlon(cam, corners, pose, 0.0).reshape(len(boxes), 4, 2)
        tiles = []
        for b, q in zip(boxes, ll, strict=True):
            hit = rng.random() < rate
            label = rng.choice(LABELS) if hit else "healthy"
            scores = {"healthy": [0.96, 0.02, 0.02], "rust": [0.02, 0.96, 0.02], "powdery_mildew": [0.02, 0.02, 0.96]}
            tiles.append({"row": b.row, "col": b.col, "label": label, "flagged": hit, "scores": scores[label],
                          "footprint": [[round(float(a), 8), round(float(c), 8)] for a, c in q]})
        out.append({"schema": LOOK_SCHEMA, "run_id": "bench-noisy", "trusted": True, "flags": [],
                    "vehicle": {"lat": float(lat), "lon": float(lon), "alt_m": 30.0}, "tiles": tiles})
    return out


def noisy_field_figures(n_frames: int = 1500, rate: float = 0.10) -> dict:
    """What a zone cut costs the writer once a field is full of zones (a noisy model, or disease everywhere).

    The cut (every `zones_every_frames` looks) re-extracts every zone of the map and rebuilds the
    zone snapshot the alerts and layers read (WGS84 polygons); its cost grows with the zones. The
    share is the writer's time spent on cuts at 5 fps.
    """
    from payload.geo.diseasemap import zone_features

    dm = DiseaseMap(default_sensor_model("healthy", LABELS), MapSection(), ORIGIN)
    for rec in _noisy_looks(n_frames, rate):
        dm.add_look(rec)
    cut, snap = [], []
    for _ in range(3):
        t0 = time.perf_counter()
        dm.update_zones()
        t1 = time.perf_counter()
        zone_features(dm.zones, dm.origin)
        cut.append(1000.0 * (t1 - t0))
        snap.append(1000.0 * (time.perf_counter() - t1))
    per_cut = statistics.median(cut) + statistics.median(snap)
    return {
        "map_noisy_frames": n_frames,
        "map_noisy_flag_rate": rate,
        "map_noisy_zones": len(dm.zones),
        "map_noisy_cut_ms_p50": round(statistics.median(cut), 1),
        "map_noisy_snapshot_ms_p50": round(statistics.median(snap), 1),
        "map_noisy_cut_share_at_5fps": round(per_cut / (1000.0 * dm.cfg.zones_every_frames / 5.0), 3),
    }


def zone_memory_figures(n_zones: int = 2000, seed: int = 0) -> dict:
    """Bytes a zone alive holds, by part, over `n_zones` zones of 3 x 4 cells (about 15 outline vertices).

    Python's share is tracemalloc's; anything held in GEOS only glibc's allocator sees, so each part
    is also counted as the change of mallinfo2's bytes in use (0 where that is not glibc). The outline
    is what a zone keeps between cuts: its WKB bytes (payload/geo/zones.py `Zone.outline`); the GEOS
    polygon it is traced as, and made again from when asked, is `outline_geos_bytes_per_zone`.
    Not part of `make bench`: `python -c 'from tools.bench_map import zone_memory_figures as f; print(f())'`.
    """
    import ctypes
    import gc

    import shapely

    from payload.geo.diseasemap import zone_features
    from payload.geo.zones import Zone, ZoneBook, mask_polygon

    class _Mallinfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                   "fsmblks", "uordblks", "fordblks", "keepcost")]

    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _Mallinfo2

        def in_use() -> int:
            return int(libc.mallinfo2().uordblks)
    except (OSError, AttributeError):
        def in_use() -> int:
            return 0

    rng = np.random.default_rng(seed)
    masks = [rng.random((3, 4)) > 0.3 for _ in range(n_zones)]
    out: dict = {"zones": n_zones}
    tracemalloc.start()
    keep: list[Any] = []

    def part(name: str, make: Callable[[], Any]) -> Any:
        gc.collect()
        m0, t0 = in_use(), tracemalloc.get_traced_memory()[0]
        made = make()
        keep.append(made)
        gc.collect()
        out[f"{name}_malloc_bytes_per_zone"] = round((in_use() - m0) / n_zones)
        out[f"{name}_python_bytes_per_zone"] = round((tracemalloc.get_traced_memory()[0] - t0) / n_zones)
        return made

    try:
        geos = part("outline_geos", lambda: [mask_polygon(m, (i // 40) * 10, (i % 40) * 10, 0.5)
                                             for i, m in enumerate(masks)])
        out["outline_vertices_mean"] = round(float(np.mean(shapely.get_num_coordinates(geos))), 1)
        geoms = part("outline", lambda: [shapely.to_wkb(g) for g in geos])
        zones = part("zone", lambda: [Zone("rust", g, 3.0, (1.0 + i, 2.0), 0.9, 0.7, 5, 3.3, (1.0, 0.5, 30.0), 1.2,
                                           9, f"rust-{i + 1}", 0.1) for i, g in enumerate(geoms)])
        part("snapshot", lambda: zone_features(zones, ORIGIN))
        book = ZoneBook()
        part("book", lambda: book.assign(zones))  # the book keeps each id with its outline (the same GEOS object)
        part("outline_cache", lambda: {np.array([i, i, 3, 4], dtype=np.int64).tobytes() + np.packbits(m).tobytes(): g
                                       for i, (m, g) in enumerate(zip(masks, geoms, strict=True))})
    finally:
        tracemalloc.stop()
    # malloc's count includes Python's larger objects; Python's small ones are only in tracemalloc's
    out["total_bytes_per_zone_at_least"] = sum(max(out[f"{k}_malloc_bytes_per_zone"], out[f"{k}_python_bytes_per_zone"])
                                               for k in ("outline", "zone", "snapshot", "book", "outline_cache"))
    return out


def map_figures() -> dict:
    """Everything above, for bench.json."""
    return update_figures() | choose_figures() | memory_figures() | noisy_field_figures()


if __name__ == "__main__":
    res = map_figures()
    print(json.dumps(res, indent=2))
    sys.exit(0)
