"""A TEST DOUBLE world painted with the classifier's own training textures: it measures the chain, never perception.

`TrainingTextureWorld` has flight_sim.world.World's interface (shade, orthophoto, radiance_scale)
but none of its physics: it paints a raster of the field with compile.synthetic's textures
(leaf_canvas, paint_lesions, soil_canvas) at the scale the old painted field used (deleted in
cc109bb: flight_sim/field.py), so that one classifier tile over a patch looks like a training image
of that patch's class. A classifier trained on those textures (`generator: family` or `single`)
therefore sees disease in it, which lets the one chain test measure what comes after the
classifier: the camera geometry and geotags, the map's fusion, the zones, the mosaic, the rasters
and the prescription. It says NOTHING about whether the classifier can see disease in the physical
world: that world is flight_sim/world (docs/WORLD.md), and this double lives under tests/ so the
simulator never imports compile/ (tests/test_architecture.py).

Encoding. World.shade returns gamma-2 encoded radiance at nominal exposure, and the camera chain
(flight_sim/camerafx.py) then scales the encoded values (auto exposure as libcamera meters: mean
linear luma 0.16, the brightest 2 % at least 0.5; a partial white balance on the red-blue axis).
The painted values here are the old field's frame values and
are returned as they are, as if they were that encoded radiance: with the scenario's
`camera.auto_exposure: false` the camera's frame is exactly the painted field (plus read noise,
blur and JPEG, as the old renderer gave); with auto exposure on, the healthy canopy (mean ~80) is
lifted and lightly white-balanced, which a family-trained model tolerates (its looks vary
in brightness and tint). `radiance_scale` is 1 (nominal light, no sun or clouds).

Raster layout as the old field: row 0 is the field's north edge, column 0 its west edge; pixel
(row, col) covers east [col, col+1) * m_per_px, north [height_m - (row+1) m_per_px, height_m - row m_per_px).
Points are sampled bilinearly (cv2.remap) at their centres; the footprint is ignored (the old
renderer did not filter either). Outside the field: soil_canvas mirror-tiled, leaf 0, label
LABEL_OUTSIDE; inside: leaf 1, diseased = the patch disks, labels = the class index.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from compile.synthetic import CLASSES, LESION_RADII, REFERENCE_PX, leaf_canvas, paint_lesions, soil_canvas
from flight_sim.scenario import Scenario, tile_ground_size_m
from flight_sim.world import LABEL_OUTSIDE, Shaded

M_PER_PX = 0.05  # the old field's raster resolution
SOIL_TILE_PX = 1024  # the soil around the field repeats (mirrored) every this many raster pixels


def texture_scale_px(s: Scenario, m_per_px: float = M_PER_PX) -> float:
    """compile.synthetic's `scale`: raster pixels one classifier tile spans straight down from the survey altitude."""
    w, h = tile_ground_size_m(s)
    return math.sqrt(w * h) / m_per_px


def _remap(img: np.ndarray, col: np.ndarray, row: np.ndarray, width: int = 1024) -> np.ndarray:
    """Bilinear samples (N, 3) of img at (col, row), pixel centres at integers (edges replicated).

    cv2.remap takes maps under 32767 on a side: the N points are laid out as rows of `width`.
    """
    n = col.size
    rows = max(1, -(-n // width))
    mx = np.zeros(rows * width, np.float32)
    my = np.zeros(rows * width, np.float32)
    mx[:n], my[:n] = col, row
    out = cv2.remap(img, mx.reshape(rows, width), my.reshape(rows, width), cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(-1, 3)[:n]


class TrainingTextureWorld:
    """The scenario's field painted with compile.synthetic's training textures (a test double; see the module doc)."""

    def __init__(self, s: Scenario, m_per_px: float = M_PER_PX) -> None:
        self.width_m = float(s.field.width_m)
        self.height_m = float(s.field.height_m)
        self.m_per_px = float(m_per_px)
        h = max(1, int(round(self.height_m / m_per_px)))
        w = max(1, int(round(self.width_m / m_per_px)))
        rng = np.random.default_rng(s.seed)
        self.scale_px = scale = texture_scale_px(s, m_per_px)
        rgb = leaf_canvas(h, w, rng, scale)
        labels = np.zeros((h, w), np.uint8)
        diseased = np.zeros((h, w), np.float32)
        # lesions centred inside a disk reach up to 1.6 of their radius beyond it: pad the window by that
        pad = int(np.ceil(max(r[1] for r in LESION_RADII.values()) * scale / REFERENCE_PX * 1.6)) + 2
        for p in s.patches:
            c0 = max(int(np.floor((p.east_m - p.radius_m) / m_per_px)) - pad, 0)
            c1 = min(int(np.ceil((p.east_m + p.radius_m) / m_per_px)) + 1 + pad, w)
            r0 = max(int(np.floor((self.height_m - p.north_m - p.radius_m) / m_per_px)) - pad, 0)
            r1 = min(int(np.ceil((self.height_m - p.north_m + p.radius_m) / m_per_px)) + 1 + pad, h)
            east = (np.arange(c0, c1) + 0.5) * m_per_px
            north = self.height_m - (np.arange(r0, r1) + 0.5) * m_per_px
            mask = (east[None, :] - p.east_m) ** 2 + (north[:, None] - p.north_m) ** 2 <= p.radius_m**2
            win = (slice(r0, r1), slice(c0, c1))
            # only the window around the disk is painted: lesion density is per area of the mask anyway
            rgb[win] = paint_lesions(rgb[win], p.cls, rng, scale, mask=mask)
            labels[win][mask] = CLASSES.index(p.cls)
            diseased[win][mask] = 1.0
        self._rgb = np.ascontiguousarray(rgb.astype(np.float32))
        self._labels = labels
        self._diseased = diseased
        # the soil around the field comes from the generator the classifier learnt soil from
        soil = soil_canvas(SOIL_TILE_PX, SOIL_TILE_PX, np.random.default_rng([s.seed, 1]), scale)
        self._soil = np.ascontiguousarray(soil.astype(np.float32))

    def radiance_scale(self, t_s: float) -> float:
        """Nominal light at every moment: the double has no sun and no clouds."""
        return 1.0

    def _colrow(self, e: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return e / self.m_per_px - 0.5, (self.height_m - n) / self.m_per_px - 0.5

    def labels(self, east_m: Any, north_m: Any) -> np.ndarray:
        """The painted label raster at the points (LABEL_OUTSIDE outside the field), as World.labels."""
        e = np.asarray(east_m, np.float64).ravel()
        n = np.asarray(north_m, np.float64).ravel()
        bad = ~(np.isfinite(e) & np.isfinite(n))
        e, n = np.where(bad, -1000.0, e), np.where(bad, -1000.0, n)
        inside = (e >= 0) & (e <= self.width_m) & (n >= 0) & (n <= self.height_m)
        col, row = self._colrow(e, n)
        ci = np.clip(np.rint(col), 0, self._labels.shape[1] - 1).astype(np.intp)
        ri = np.clip(np.rint(row), 0, self._labels.shape[0] - 1).astype(np.intp)
        return np.where(inside, self._labels[ri, ci], LABEL_OUTSIDE).astype(np.uint8)

    def shade(self, east_m: Any, north_m: Any, footprint_m: Any = None, t_s: float = 0.0) -> Shaded:
        """The painted field at the points (metres from the south-west corner); footprint and time are ignored."""
        e = np.asarray(east_m, np.float64).ravel()
        n = np.asarray(north_m, np.float64).ravel()
        bad = ~(np.isfinite(e) & np.isfinite(n))
        e = np.where(bad, -1000.0, e)
        n = np.where(bad, -1000.0, n)
        inside = (e >= 0) & (e <= self.width_m) & (n >= 0) & (n <= self.height_m)
        col, row = self._colrow(e, n)
        rgb = _remap(self._rgb, col, row)
        if (~inside).any():
            period = 2.0 * (SOIL_TILE_PX - 1)  # mirror-tiled: continuous, no seams

            def fold(a: np.ndarray) -> np.ndarray:
                return period / 2 - np.abs(np.mod(a, period) - period / 2)

            out = ~inside
            rgb[out] = _remap(self._soil, fold(col[out]), fold(row[out]))
        ci = np.clip(np.rint(col), 0, self._labels.shape[1] - 1).astype(np.intp)
        ri = np.clip(np.rint(row), 0, self._labels.shape[0] - 1).astype(np.intp)
        labels = np.where(inside, self._labels[ri, ci], LABEL_OUTSIDE).astype(np.uint8)
        diseased = np.where(inside, self._diseased[ri, ci], 0.0).astype(np.float32)
        return Shaded(np.ascontiguousarray(rgb, np.float32), inside.astype(np.float32), diseased, labels)

    def orthophoto(self, m_per_px: float, t_s: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """(rgb uint8 (H, W, 3), labels uint8 (H, W)) of the field from straight above; row 0 = north edge."""
        h = max(1, int(round(self.height_m / m_per_px)))
        w = max(1, int(round(self.width_m / m_per_px)))
        # the raster itself, area-averaged (a coarser orthophoto than the raster would alias if point-sampled)
        interp = cv2.INTER_AREA if m_per_px >= self.m_per_px else cv2.INTER_LINEAR
        rgb = cv2.resize(self._rgb, (w, h), interpolation=interp)
        labels = cv2.resize(self._labels, (w, h), interpolation=cv2.INTER_NEAREST)
        return np.clip(rgb + 0.5, 0, 255).astype(np.uint8), labels
