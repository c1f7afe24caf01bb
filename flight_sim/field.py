"""The field: an orthophoto-like ground raster of healthy crop with disease patches: the ground truth.

Textures come from compile.synthetic (the generator the classifier is trained on), painted at a
`scale` equal to the field pixels one classifier tile covers from the survey altitude, so that a
tile over a rust patch looks like a rust training image to the payload. Beside the RGB raster a
label raster records which class each ground pixel truly is, so a rendered frame's ground truth
is known pixel by pixel.

Raster layout: row 0 is the field's NORTH edge, column 0 its WEST edge (an image of the field seen
from above with north up); pixel (row, col) covers east [col, col+1) * m_per_px and north
[height_m - (row+1) * m_per_px, height_m - row * m_per_px).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compile.synthetic import CLASSES, LESION_RADII, REFERENCE_PX, leaf_canvas, paint_lesions, soil_canvas
from flight_sim.scenario import Scenario, terrain_height, texture_scale_px

LABEL_OUTSIDE = 255  # label of ground outside the field
SOIL_RGB = (112, 88, 62)  # bare soil around the field (the edge colour; the ground beyond is `Field.soil`)
SOIL_TILE_PX = 1024  # the soil texture around the field repeats every this many raster pixels


@dataclass(frozen=True)
class Field:
    """RGB and label rasters of the field, with the metric layout that maps them to the ground."""

    rgb: np.ndarray  # (H, W, 3) uint8
    labels: np.ndarray  # (H, W) uint8 indices into CLASSES
    m_per_px: float
    width_m: float
    height_m: float
    scale_px: float
    soil: np.ndarray | None = None  # (S, S, 3) uint8 texture tiled over the ground outside the field

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.rgb.shape[0]), int(self.rgb.shape[1])

    def en_to_colrow(self, east_m: np.ndarray, north_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Continuous raster coordinates with pixel centres at integers (cv2.remap's convention)."""
        col = np.asarray(east_m) / self.m_per_px - 0.5
        row = (self.height_m - np.asarray(north_m)) / self.m_per_px - 0.5
        return col, row


def patch_masks(
    s: Scenario, shape: tuple[int, int], pad_px: int = 0
) -> list[tuple[str, tuple[slice, slice], np.ndarray]]:
    """For each patch: its class, the raster window around its disk (plus pad_px) and the disk mask in it."""
    h, w = shape
    m = s.field.m_per_px
    out = []
    for p in s.patches:
        c0 = max(int(np.floor((p.east_m - p.radius_m) / m)) - pad_px, 0)
        c1 = min(int(np.ceil((p.east_m + p.radius_m) / m)) + 1 + pad_px, w)
        r0 = max(int(np.floor((s.field.height_m - p.north_m - p.radius_m) / m)) - pad_px, 0)
        r1 = min(int(np.ceil((s.field.height_m - p.north_m + p.radius_m) / m)) + 1 + pad_px, h)
        cols = (np.arange(c0, c1) + 0.5) * m
        norths = s.field.height_m - (np.arange(r0, r1) + 0.5) * m
        mask = (cols[None, :] - p.east_m) ** 2 + (norths[:, None] - p.north_m) ** 2 <= p.radius_m**2
        out.append((p.cls, (slice(r0, r1), slice(c0, c1)), mask))
    return out


def build_field(s: Scenario) -> Field:
    """Paint the scenario's field (deterministic for its seed); a few seconds for 2400 x 1600 px."""
    m = s.field.m_per_px
    h = max(1, int(round(s.field.height_m / m)))
    w = max(1, int(round(s.field.width_m / m)))
    rng = np.random.default_rng(s.seed)
    scale = texture_scale_px(s)
    rgb = leaf_canvas(h, w, rng, scale)
    labels = np.zeros((h, w), np.uint8)
    # lesions centred inside a disk reach up to 1.6 of their radius beyond it: pad the window by that
    local = s.terrain is not None and s.terrain.paint_at_local_height
    scales = [texture_scale_px(s, s.flight.altitude_m - float(terrain_height(s, p.east_m, p.north_m))) if local
              else scale for p in s.patches]
    big = max([scale, *scales])
    pad = int(np.ceil(max(LESION_RADII.values(), key=lambda r: r[1])[1] * big / REFERENCE_PX * 1.6)) + 2
    # on terrain, a patch can be painted at the scale its tile has from the flight's height above it
    for sc, (cls, (rows, cols), mask) in zip(scales, patch_masks(s, (h, w), pad), strict=True):
        # paint only the window around the disk: lesion density is per area of the mask anyway
        rgb[rows, cols] = paint_lesions(rgb[rows, cols], cls, rng, sc, mask=mask)
        labels[rows, cols][mask] = CLASSES.index(cls)
    # the soil around the field comes from the same generator the classifier learnt soil from
    soil = soil_canvas(SOIL_TILE_PX, SOIL_TILE_PX, np.random.default_rng([s.seed, 1]), scale)
    return Field(rgb, labels, m, float(s.field.width_m), float(s.field.height_m), scale, soil)
