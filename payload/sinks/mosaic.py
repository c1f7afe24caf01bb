"""mosaic.tif / mosaic.png / mosaic.json: the flight's own frames as a georeferenced picture of the field.

The sink sees each frame's pixels with its look record (`on_look(look, result)`), takes every
`mosaic.every_n_frames`-th trusted look and composites it (payload/geo/mosaic.py). Memory is bounded
whatever the area flown: at most `mosaic.max_tiles_in_memory` 256x256 tiles (256 KiB each) stay in
memory, colder tiles are written to `.mosaic_tiles/` beside the outputs and read back when a later
pass overlaps them; at close the tiles are written into a tiled GeoTIFF one by one and the folder
is removed. The GeoTIFF is in the same tangent-plane CRS as the disease rasters
(payload/files/geotiff.py `tangent_plane_crs`, origin at the first trusted look's vehicle, the map's
rule), so the two overlay exactly in any GIS.

A mosaic fault never stops the flight: it is logged once and the mosaic is skipped. The frames are
not kept, so `payload export` cannot rebuild the mosaic; it reuses the one the flight wrote.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pydantic import Field

from payload.configio import StrictModel
from payload.files.atomic import atomic_write_text
from payload.files.geotiff import tangent_plane_crs, write_tiled_rgba
from payload.geo.frames import LocalFrame
from payload.geo.mosaic import EMPTY, TILE_PX, MosaicCanvas, TileKey, new_tile
from payload.sinks.base import SinkBase, SinkContext, register_sink
from payload.types import FrameResult

log = logging.getLogger(__name__)

MOSAIC_TIF = "mosaic.tif"
MOSAIC_PNG = "mosaic.png"
MOSAIC_JSON = "mosaic.json"
SPILL_DIR = ".mosaic_tiles"
GDAL_CACHE_MB = 32



class MosaicSection(StrictModel):
    """The quick mosaic: the flight's frames on flat ground (payload/geo/mosaic.py, sinks/mosaic.py; docs/MAPS.md)."""

    enabled: bool = Field(default=True,
                          description="write mosaic.tif, mosaic.png and mosaic.json at the end of the run")
    m_per_px: float = Field(default=0.15, ge=0.05, le=1.0,
                            description="ground size of a mosaic pixel (10-20 cm shows plants and patches; finer "
                            "costs memory and disk as the square)")
    every_n_frames: int = Field(default=3, ge=1, le=1000,
                                description="use every n-th trusted frame (at 5 fps and 5 m/s consecutive frames "
                                "overlap by over 95 %)")
    max_tiles_in_memory: int = Field(default=48, ge=4, le=4096,
                                     description="256x256 tiles kept in memory (256 KiB each); colder tiles wait on "
                                     "disk beside the outputs until the end of the run")
    png_max_px: int = Field(default=2048, ge=256, le=16384,
                            description="mosaic.png is the mosaic shrunk by a power of two to at most this many pixels "
                            "on its longer side")


class SpillingTiles:
    """A TileStore holding at most `max_in_memory` tiles; the least recently used wait on disk (.npy)."""

    def __init__(self, spill_dir: Path, max_in_memory: int, tile_px: int = TILE_PX) -> None:
        self.spill_dir = Path(spill_dir)
        self.max_in_memory = int(max_in_memory)
        self.tile_px = int(tile_px)
        self.hot: OrderedDict[TileKey, np.ndarray] = OrderedDict()
        self.cold: set[TileKey] = set()
        self.spills = 0
        self.reloads = 0
        self.peak_tiles = 0

    def _path(self, key: TileKey) -> Path:
        return self.spill_dir / f"t{key[0]}_{key[1]}.npy"

    def get(self, key: TileKey) -> np.ndarray:
        t = self.hot.get(key)
        if t is not None:
            self.hot.move_to_end(key)
            return t
        if key in self.cold:
            t = np.load(self._path(key))
            self.cold.discard(key)
            self.reloads += 1
        else:
            t = new_tile(self.tile_px)
        self.hot[key] = t
        self.peak_tiles = max(self.peak_tiles, len(self.hot))
        return t

    def keys(self) -> Iterable[TileKey]:
        return [*self.hot, *self.cold]

    def trim(self) -> None:
        """Write the coldest tiles out until at most max_in_memory remain (called between frames only)."""
        while len(self.hot) > self.max_in_memory:
            key, t = self.hot.popitem(last=False)
            self.spill_dir.mkdir(parents=True, exist_ok=True)
            np.save(self._path(key), t)
            self.cold.add(key)
            self.spills += 1

    def read(self, key: TileKey) -> np.ndarray:
        """A tile for writing out, without disturbing what is in memory."""
        t = self.hot.get(key)
        return t if t is not None else np.load(self._path(key))

    @property
    def bytes_in_memory(self) -> int:
        return sum(t.nbytes for t in self.hot.values())

    def remove(self) -> None:
        self.hot.clear()
        self.cold.clear()
        shutil.rmtree(self.spill_dir, ignore_errors=True)


def look_correspondences(look: dict[str, Any], result: FrameResult,
                         origin: LocalFrame) -> tuple[np.ndarray, np.ndarray] | None:
    """Tile corners in frame pixels and their ground east/north in `origin` (None: fewer than 2 tiles placed).

    build_look lists the tiles in the FrameResult's order, so the two zip tile by tile.
    """
    uv, ll = [], []
    for tile, rec in zip(result.tiles, look.get("tiles", []), strict=True):
        fp = rec.get("footprint")
        if not fp:
            continue
        b = tile.box
        uv.append([[b.x, b.y], [b.x + b.w, b.y], [b.x + b.w, b.y + b.h], [b.x, b.y + b.h]])
        ll.append(fp)
    if len(uv) < 2:
        return None
    lat_lon = np.asarray(ll, dtype=np.float64).reshape(-1, 2)
    e, n, _ = origin.to_enu(lat_lon[:, 0], lat_lon[:, 1], 0.0)
    return np.asarray(uv, dtype=np.float64).reshape(-1, 2), np.stack([e, n], axis=1)


def png_shrink(rows: int, cols: int, max_px: int, tile_px: int = TILE_PX) -> int:
    """The power of two (at most the tile size) that brings rows x cols within max_px on the longer side."""
    k = 1
    while max(rows, cols) / k > max_px and k < tile_px:
        k *= 2
    return k


def write_mosaic(out: Path, canvas: MosaicCanvas, read: Callable[[TileKey], np.ndarray], png_max_px: int,
                 extra: dict[str, Any] | None = None) -> list[Path]:
    """mosaic.tif (RGBA, tiled, deflate, overviews; alpha 0 where no frame reached), mosaic.png and mosaic.json.

    `read(key)` returns a tile; the tiles are written one at a time, so writing costs one tile of
    memory plus the PNG (at most png_max_px squared, RGBA).
    """
    b = canvas.tile_bounds()
    if b is None:
        return []
    r0, r1, c0, c1 = b
    t = canvas.tile_px
    res = canvas.m_per_px
    rows, cols = r1 - r0, c1 - c0
    west, north = canvas.pixel_en(r0, c0)
    k = png_shrink(rows, cols, png_max_px, t)
    png = np.zeros((rows // k, cols // k, 4), dtype=np.uint8)
    crs = tangent_plane_crs(canvas.origin.lat0, canvas.origin.lon0)

    def tiles() -> Iterator[tuple[int, int, np.ndarray]]:
        for key in sorted(canvas.store.keys()):
            tile = read(key)
            rgba = tile.copy()
            rgba[..., 3] = np.where(tile[..., 3] == EMPTY, 0, 255).astype(np.uint8)
            row, col = key[0] * t - r0, key[1] * t - c0
            yield row, col, rgba
            small = rgba if k == 1 else cv2.resize(rgba, (t // k, t // k), interpolation=cv2.INTER_AREA)
            png[row // k:row // k + t // k, col // k:col // k + t // k] = small

    tif = out / MOSAIC_TIF
    write_tiled_rgba(tif, width=cols, height=rows, tile_px=t, crs=crs, west=west, north=north, m_per_px=res,
                     tiles=tiles(), tags={"SOFTWARE": "cropscout payload", "MOSAIC_M_PER_PX": str(res)},
                     cache_mb=GDAL_CACHE_MB)
    png_path = out / MOSAIC_PNG
    ok, buf = cv2.imencode(".png", cv2.cvtColor(png, cv2.COLOR_RGBA2BGRA, dst=png))  # in place: no second copy
    if not ok:
        raise OSError("PNG encoding failed")
    png_path.write_bytes(buf.tobytes())
    e0, n1 = west, north
    info = {
        "origin": {"lat": canvas.origin.lat0, "lon": canvas.origin.lon0},
        "crs": crs,
        "m_per_px": res,
        "bounds_en": {"west": e0, "east": e0 + cols * res, "south": n1 - rows * res, "north": n1},
        "size_px": [cols, rows],
        "png": {"file": MOSAIC_PNG, "shrink": k, "m_per_px": res * k, "size_px": [cols // k, rows // k]},
        "frames": canvas.frames,
        "frames_skipped": canvas.skipped,
        "tiles": len(list(canvas.store.keys())),
        **(extra or {}),
    }
    atomic_write_text(out / MOSAIC_JSON, json.dumps(info, indent=2) + "\n")
    return [tif, png_path, out / MOSAIC_JSON]


@register_sink(50, key="mosaic", settings=MosaicSection)
class MosaicSink(SinkBase):
    """Composites every n-th trusted frame into the mosaic; writes it at close."""

    name = "mosaic"

    def __init__(self, out_dir: str | Path, cfg: MosaicSection) -> None:
        self.out_dir = Path(out_dir)
        self.cfg = cfg
        self.store = SpillingTiles(self.out_dir / SPILL_DIR, cfg.max_tiles_in_memory)
        self.store.remove()  # tiles left by a run that was cut off belong to no canvas now
        self.canvas: MosaicCanvas | None = None
        self._trusted = 0
        self._broken = False
        self.peak_bytes = 0

    @classmethod
    def from_context(cls, ctx: SinkContext) -> MosaicSink | None:
        if not ctx.settings(MosaicSection).enabled:
            return None
        if ctx.cfg.site is not None:
            # frames of rack faces warped onto the floor would be a picture of nothing; the rack-face
            # pictures are the site products (sinks/sitelayers.py)
            log.info("mosaic off: an indoor site's frames look at rack faces, not at flat ground")
            return None
        return cls(ctx.out_dir, ctx.settings(MosaicSection))

    def on_look(self, look: dict[str, Any], result: FrameResult) -> None:
        veh = look.get("vehicle") or {}
        if self._broken or not look.get("trusted") or veh.get("lat") is None or veh.get("lon") is None:
            return  # untrusted, or a local-frame pose with no origin on Earth: nowhere to put it
        try:
            self._add(look, result)
        except Exception:  # the mosaic is a picture: it must never cost the flight its records
            log.exception("the mosaic failed and is off for the rest of the run")
            self._broken = True

    def _add(self, look: dict[str, Any], result: FrameResult) -> None:
        veh = look["vehicle"]
        if self.canvas is None:
            # the disease map's rule (payload/geo/diseasemap.py): the first trusted look's vehicle
            self.canvas = MosaicCanvas(LocalFrame(float(veh["lat"]), float(veh["lon"]), 0.0), self.cfg.m_per_px,
                                       self.store)
        self._trusted += 1
        if (self._trusted - 1) % self.cfg.every_n_frames:
            return
        height = veh.get("height_agl_m")
        pairs = look_correspondences(look, result, self.canvas.origin)
        if pairs is None or height is None or not height > 0:
            return
        ve, vn, _ = self.canvas.origin.to_enu(float(veh["lat"]), float(veh["lon"]), 0.0)
        self.canvas.add_frame(result.frame.pixels, pairs[0], pairs[1], (float(ve), float(vn)), float(height))
        self.peak_bytes = max(self.peak_bytes, self.store.bytes_in_memory)

    def on_close(self) -> None:
        try:
            if self.canvas is not None and not self._broken:
                memory = {"peak_tile_bytes": self.peak_bytes, "peak_tiles": self.store.peak_tiles,
                          "max_tiles_in_memory": self.cfg.max_tiles_in_memory,
                          "spilled": self.store.spills, "reloaded": self.store.reloads}
                written = write_mosaic(self.out_dir, self.canvas, self.store.read, self.cfg.png_max_px,
                                       {"memory": memory})
                log.info("mosaic: %d frames, %d tiles (%.1f MiB peak in memory), %s", self.canvas.frames,
                         len(list(self.store.keys())), self.peak_bytes / 2**20,
                         ", ".join(p.name for p in written))
        finally:
            self.store.remove()


def mosaic_memory_bound_bytes(cfg: MosaicSection, tile_px: int = TILE_PX) -> int:
    """The tiles' memory bound: max_tiles_in_memory tiles (a frame touching more briefly holds those)."""
    return int(cfg.max_tiles_in_memory) * tile_px * tile_px * 4
