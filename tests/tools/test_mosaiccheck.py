"""The mosaic registration measure finds a known shift (image, then a georeferenced mosaic of a synthetic field)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from payload.geo.frames import LocalFrame
from tools.mission.mosaiccheck import MosaicGrid, Orthophoto, patch_offsets, phase_shift, truth_window

FIELD_ORIGIN = (-35.363261, 149.165230, 584.0)


def texture(h: int, w: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.normal(0, 1, (h, w)), (0, 0), 2.0)


def shifted(img: np.ndarray, dx: float, dy: float) -> np.ndarray:
    m = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]])
    return cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


@pytest.mark.parametrize("dx,dy", [(3.4, -2.2), (-5.0, 0.6), (0.0, 0.0)])
def test_phase_shift_finds_a_known_image_shift(dx: float, dy: float) -> None:
    ref = texture(160, 160)
    got = phase_shift(shifted(ref, dx, dy), ref)
    assert got[0] == pytest.approx(dx, abs=0.15) and got[1] == pytest.approx(dy, abs=0.15) and got[2] > 0.3


def synthetic_field() -> Orthophoto:
    """60 m x 40 m at 5 cm of smooth random texture: the measure is tested, not the world's look."""
    rng = np.random.default_rng(5)
    small = rng.uniform(40, 200, (80, 120, 3)).astype(np.float32)
    rgb = cv2.resize(small, (1200, 800), interpolation=cv2.INTER_CUBIC)
    rgb = np.clip(rgb + rng.normal(0, 6, rgb.shape), 0, 255).astype(np.uint8)
    return Orthophoto(rgb, 0.05, 60.0, 40.0)


@pytest.mark.parametrize("shift_en", [(0.6, -0.45), (-1.5, 1.2)])
def test_patch_offsets_measure_a_mosaic_drawn_off_by_a_known_distance(shift_en: tuple[float, float]) -> None:
    field = synthetic_field()
    # a mosaic in its own tangent plane (origin 20 m east, 10 m north of the field's corner), 15 cm pixels,
    # showing the ground `shift_en` metres away from where it truly is
    fo = LocalFrame(*FIELD_ORIGIN)
    lat, lon, _ = fo.to_geodetic(20.0, 10.0, 0.0)
    mo = LocalFrame(float(lat), float(lon), 0.0)
    grid = MosaicGrid(mo, -20.0, 30.0, 0.15)
    rows, cols = slice(0, 267), slice(0, 400)  # 40 m x 60 m: the whole field
    true = truth_window(field, FIELD_ORIGIN, grid, rows, cols)
    drawn = MosaicGrid(mo, grid.west_m - shift_en[0], grid.north_m - shift_en[1], 0.15)
    mosaic = np.dstack([truth_window(field, FIELD_ORIGIN, drawn, rows, cols), np.full(true.shape[:2], 255, np.uint8)])
    res = patch_offsets(mosaic, grid, field, FIELD_ORIGIN, [(15.0, 20.0), (45.0, 22.0)], half_m=10.0)
    for r in res:
        assert r["offset_east_m"] == pytest.approx(shift_en[0], abs=0.05), r
        assert r["offset_north_m"] == pytest.approx(shift_en[1], abs=0.05), r
    # without a shift the measure says 0, and a window off the mosaic is reported, not measured
    mosaic0 = np.dstack([true, np.full(true.shape[:2], 255, np.uint8)])
    same, outside = patch_offsets(mosaic0, grid, field, FIELD_ORIGIN, [(30.0, 20.0), (58.0, 20.0)], half_m=10.0)
    assert same["offset_m"] < 0.05 and outside["offset_m"] is None and outside["why"] == "outside the mosaic"
