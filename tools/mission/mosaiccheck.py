"""Mosaic registration: how far from their true places the payload's mosaic shows the painted patches.

The simulator's world draws its field from straight above at any resolution (World.orthophoto, at
the mosaic's own pixel size here). Around each true patch centre that orthophoto is resampled onto
the mosaic's own pixel grid (through WGS84: the mosaic's tangent plane
-> lat/lon -> the field's local frame), both windows are turned grey, and phase correlation
(cv2.phaseCorrelate, Hanning-windowed, sub-pixel) gives the shift between them. The shift is where
the mosaic draws the ground around that patch relative to where it truly is: a true patch centre
drawn on the mosaic is that far from the true one. `mosaic_registration_m` is the largest
over the patches; `mosaic_truth.png` draws the true patch circles on the mosaic for the eye.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from flight_sim.render import build_world
from flight_sim.scenario import Scenario
from payload.geo.frames import LocalFrame, geodetic_to_enu

MIN_VALID_SHARE = 0.8  # a window the mosaic covers less than this is not measured (a field edge, a gap)
MIN_RESPONSE = 0.03  # phase correlation peaks below this are noise, not a match
REFINE_STEPS = 4


MAX_ORTHO_PX = 30_000_000  # World.orthophoto refuses ~40 Mpx: a coarser truth than the mosaic beyond this


@dataclass(frozen=True)
class Orthophoto:
    """The true field seen from straight above: row 0 its north edge, column 0 its west edge."""

    rgb: np.ndarray  # (H, W, 3) uint8
    m_per_px: float
    width_m: float
    height_m: float

    def en_to_colrow(self, east_m: np.ndarray, north_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Continuous raster coordinates with pixel centres at integers (cv2.remap's convention)."""
        col = np.asarray(east_m) / self.m_per_px - 0.5
        row = (self.height_m - np.asarray(north_m)) / self.m_per_px - 0.5
        return col, row


def true_orthophoto(s: Scenario, m_per_px: float, world: Any | None = None) -> Orthophoto:
    """The scenario's world (or `world`, an object with World's orthophoto) from straight above at m_per_px
    (coarser when that would exceed MAX_ORTHO_PX)."""
    m = max(m_per_px, math.sqrt(s.field.width_m * s.field.height_m / MAX_ORTHO_PX))
    rgb, _ = (world if world is not None else build_world(s)).orthophoto(m)
    return Orthophoto(rgb, s.field.width_m / rgb.shape[1], s.field.width_m, s.field.height_m)


@dataclass(frozen=True)
class MosaicGrid:
    """Where the mosaic's pixels are: its tangent plane and the top-left corner and size of its pixels."""

    origin: LocalFrame
    west_m: float
    north_m: float
    m_per_px: float


def phase_shift(moving: np.ndarray, reference: np.ndarray) -> tuple[float, float, float]:
    """(dx, dy, response): `moving` shows the content of `reference` dx px further right and dy px further down.

    Both are 2-D float arrays of one shape; a Hanning window keeps the image edges out of the answer.
    The shift must be small against the images (a fraction of their size).
    """
    a = np.asarray(reference, dtype=np.float64)
    b = np.asarray(moving, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"phase correlation needs two 2-D images of one shape, got {a.shape} and {b.shape}")
    # cv2.phaseCorrelate zero-pads other sizes to a fast DFT size, which biases the peak by a fraction
    # of a pixel: measure on the central part whose sides are fast DFT sizes
    h, w = _fast_size(a.shape[0]), _fast_size(a.shape[1])
    r0, c0 = (a.shape[0] - h) // 2, (a.shape[1] - w) // 2
    a, b = a[r0:r0 + h, c0:c0 + w], b[r0:r0 + h, c0:c0 + w]
    win = cv2.createHanningWindow((w, h), cv2.CV_64F)
    ref = a - a.mean()
    (dx, dy), response = cv2.phaseCorrelate(ref, b - b.mean(), win)
    # OpenCV's sub-pixel peak (a centroid) is biased by up to half a pixel: shift `moving` back by the
    # estimate and measure what is left, until it is small
    for _ in range(REFINE_STEPS):
        back = cv2.warpAffine(b, np.array([[1.0, 0.0, -dx], [0.0, 1.0, -dy]]), (b.shape[1], b.shape[0]),
                              flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
        (rx, ry), _ = cv2.phaseCorrelate(ref, back - back.mean(), win)
        dx, dy = dx + rx, dy + ry
        if math.hypot(rx, ry) < 0.01:
            break
    return float(dx), float(dy), float(response)


def _fast_size(n: int) -> int:
    """The largest size <= n that OpenCV's DFT takes without padding."""
    while cv2.getOptimalDFTSize(n) != n:
        n -= 1
    return n


def _grey(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(rgb[..., :3]), cv2.COLOR_RGB2GRAY).astype(np.float64)


def truth_window(field: Orthophoto, field_origin: tuple[float, float, float], grid: MosaicGrid,
                 rows: slice, cols: slice) -> np.ndarray:
    """The true field (RGB) resampled on the mosaic pixels rows x cols (field shrunk to the mosaic's size first)."""
    r = np.arange(rows.start, rows.stop) + 0.5
    c = np.arange(cols.start, cols.stop) + 0.5
    ee = grid.west_m + c[None, :] * grid.m_per_px + 0.0 * r[:, None]
    nn = grid.north_m - r[:, None] * grid.m_per_px + 0.0 * c[None, :]
    lat, lon, _ = grid.origin.to_geodetic(ee.ravel(), nn.ravel(), 0.0)
    fe, fn, _ = geodetic_to_enu(lat, lon, field_origin[2], *field_origin)
    k = field.m_per_px / grid.m_per_px  # < 1: the field is finer than the mosaic; shrink it so nothing aliases
    small = cv2.resize(field.rgb, None, fx=k, fy=k, interpolation=cv2.INTER_AREA) if k < 1 else field.rgb
    kx, ky = small.shape[1] / field.rgb.shape[1], small.shape[0] / field.rgb.shape[0]
    col, row = field.en_to_colrow(np.asarray(fe), np.asarray(fn))
    map_x = ((col + 0.5) * kx - 0.5).astype(np.float32).reshape(ee.shape)
    map_y = ((row + 0.5) * ky - 0.5).astype(np.float32).reshape(ee.shape)
    return cv2.remap(small, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def patch_offsets(mosaic_rgba: np.ndarray, grid: MosaicGrid, field: Orthophoto,
                  field_origin: tuple[float, float, float], centres_en: Sequence[tuple[float, float]],
                  half_m: float) -> list[dict[str, Any]]:
    """For each true centre (field metres): the mosaic's shift there, east and north metres, and its quality."""
    out = []
    h, w = mosaic_rgba.shape[:2]
    mo = grid.origin
    for ce, cn in centres_en:
        lat, lon, _ = LocalFrame(*field_origin).to_geodetic(ce, cn, 0.0)
        me, mn, _ = mo.to_enu(lat, lon, 0.0)
        rc = ((grid.north_m - float(mn)) / grid.m_per_px, (float(me) - grid.west_m) / grid.m_per_px)
        half = int(round(half_m / grid.m_per_px))
        r0, c0 = int(round(rc[0])) - half, int(round(rc[1])) - half
        row = {"east_m": ce, "north_m": cn, "offset_east_m": None, "offset_north_m": None, "offset_m": None}
        if r0 < 0 or c0 < 0 or r0 + 2 * half > h or c0 + 2 * half > w:
            out.append({**row, "why": "outside the mosaic"})
            continue
        rows, cols = slice(r0, r0 + 2 * half), slice(c0, c0 + 2 * half)
        win = mosaic_rgba[rows, cols]
        valid = win[..., 3] > 0 if win.shape[2] == 4 else np.ones(win.shape[:2], bool)
        share = float(valid.mean())
        if share < MIN_VALID_SHARE:
            out.append({**row, "why": f"the mosaic covers {share:.0%} of the window"})
            continue
        m = _grey(win)
        m[~valid] = m[valid].mean()
        t = _grey(truth_window(field, field_origin, grid, rows, cols))
        dx, dy, resp = phase_shift(m, t)
        if resp < MIN_RESPONSE:
            out.append({**row, "why": f"no clear match (phase correlation peak {resp:.3f})"})
            continue
        de, dn = dx * grid.m_per_px, -dy * grid.m_per_px  # image right = east, image down = south
        out.append({**row, "offset_east_m": round(de, 3), "offset_north_m": round(dn, 3),
                    "offset_m": round(math.hypot(de, dn), 3), "response": round(resp, 3)})
    return out


def read_mosaic(out: Path) -> tuple[np.ndarray, MosaicGrid] | None:
    """mosaic.tif as RGBA (rows north first) and its grid, or None when the flight wrote none."""
    tif, info_path = out / "mosaic.tif", out / "mosaic.json"
    if not tif.is_file() or not info_path.is_file():
        return None
    import rasterio

    info = json.loads(info_path.read_text(encoding="utf-8"))
    with rasterio.open(tif) as src:
        rgba = np.moveaxis(src.read(), 0, 2)
        left, _bottom, _right, top = src.bounds
        res = float(src.res[0])
    return rgba, MosaicGrid(LocalFrame(info["origin"]["lat"], info["origin"]["lon"], 0.0), left, top, res)


def mosaic_registration(out: Path, s: Scenario, field: Orthophoto | None = None,
                        world: Any | None = None) -> dict[str, Any] | None:
    """The mosaic's registration at every true patch (None without a mosaic); writes mosaic_truth.png.

    The truth is `field`, else `world`'s orthophoto (the world the flight flew over), else the scenario's World's.
    """
    got = read_mosaic(out)
    if got is None:
        return None
    rgba, grid = got
    field = field if field is not None else true_orthophoto(s, grid.m_per_px, world)
    origin = (s.origin.lat, s.origin.lon, s.origin.alt)
    rows = patch_offsets(rgba, grid, field, origin, [(p.east_m, p.north_m) for p in s.patches],
                         half_m=max(p.radius_m for p in s.patches) + 8.0)
    for p, r in zip(s.patches, rows, strict=True):
        r["class"] = p.cls
    measured = [r["offset_m"] for r in rows if r["offset_m"] is not None]
    draw_truth(out / "mosaic_truth.png", rgba, grid, s)
    return {"mosaic_registration_m": max(measured) if measured else None,
            "measured": len(measured), "patches": rows, "m_per_px": grid.m_per_px}


def draw_truth(path: Path, rgba: np.ndarray, grid: MosaicGrid, s: Scenario) -> None:
    """The mosaic with each true patch's circle and centre drawn where the simulator painted it."""
    img = cv2.cvtColor(np.ascontiguousarray(rgba), cv2.COLOR_RGBA2BGR)
    fo = LocalFrame(s.origin.lat, s.origin.lon, s.origin.alt)
    for p in s.patches:
        lat, lon, _ = fo.to_geodetic(p.east_m, p.north_m, 0.0)
        me, mn, _ = grid.origin.to_enu(lat, lon, 0.0)
        x = (float(me) - grid.west_m) / grid.m_per_px
        y = (grid.north_m - float(mn)) / grid.m_per_px
        centre = (int(round(x)), int(round(y)))
        cv2.circle(img, centre, int(round(p.radius_m / grid.m_per_px)), (255, 255, 255), 1, cv2.LINE_AA)
        cv2.drawMarker(img, centre, (255, 255, 255), cv2.MARKER_CROSS, 12, 1)
        cv2.circle(img, centre, int(round(1.0 / grid.m_per_px)), (0, 255, 255), 1, cv2.LINE_AA)  # 1 m
    cv2.imwrite(str(path), img)
