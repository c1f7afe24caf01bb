"""tools/real_frames.py: tiling at a target resolution, no-data, the texture and vegetation measures, the CSV."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tools.real_frames import (
    RealFramesError,
    all_stats,
    cut_tiles,
    fine_texture,
    markdown,
    nearer,
    read_manifest,
    vegetation_stats,
)


def test_tiles_cover_the_target_ground_and_skip_upsampling() -> None:
    rgb = np.zeros((400, 600, 3), np.uint8)
    rgb[..., 1] = 120
    valid = np.ones((400, 600), bool)
    t = cut_tiles(rgb, valid, src_gsd_mm=4.0, target_gsd_mm=8.0, model_px=96)  # 192 px of photo per tile
    assert t.shape == (2 * 3, 96, 96, 3)
    assert cut_tiles(rgb, valid, src_gsd_mm=10.0, target_gsd_mm=8.0).shape[0] == 0  # would need upsampling
    assert cut_tiles(rgb, valid, src_gsd_mm=8.1, target_gsd_mm=8.0).shape[0] > 0  # within 2 %: native
    valid[100, 300] = False  # one no-data pixel drops the tile holding it
    assert cut_tiles(rgb, valid, 4.0, 8.0).shape[0] == 5


def test_fine_texture_sees_stripes_not_a_ramp() -> None:
    flat = np.full((1, 32, 32, 3), 100, np.uint8)
    ramp = np.repeat(np.linspace(50, 200, 32).astype(np.uint8)[None, :, None], 32, axis=0)[None].repeat(3, axis=3)
    stripes = flat.copy()
    stripes[0, :, ::2] = 200
    assert fine_texture(flat)[0] == pytest.approx(0.0)
    assert fine_texture(ramp)[0] < 5.0
    assert fine_texture(stripes)[0] > 40.0


def test_pixel_texture_sees_single_pixels_not_blobs() -> None:
    """The sigma-0.7 band holds one-pixel detail; features five pixels wide barely reach it."""
    fine = np.zeros((1, 96, 96, 3), np.uint8)
    fine[0, ::2, ::2] = 200  # isolated single pixels
    blobs = np.zeros((1, 96, 96, 3), np.uint8)
    for y in range(0, 96, 16):
        for x in range(0, 96, 16):
            blobs[0, y:y + 5, x:x + 5] = 200
    f, b = all_stats(fine), all_stats(blobs)
    assert f["pixel_texture"] > 3 * b["pixel_texture"]
    assert b["fine_texture"] > b["pixel_texture"]  # the blobs' energy lies in the coarser band


def test_vegetation_stats_on_a_half_green_tile() -> None:
    tile = np.zeros((1, 40, 40, 3), np.uint8)
    tile[0, :, :20] = (60, 120, 40)  # saturated green
    tile[0, :, 20:] = (200, 200, 190)  # whitish
    v = vegetation_stats(tile)
    assert v["veg_share"] == pytest.approx(0.5)
    assert v["veg_mean_rgb"] == [60.0, 120.0, 40.0]
    assert v["veg_saturated_share"] == pytest.approx(1.0)
    assert v["canopy_whitish_share"] == pytest.approx(0.0)


def test_nearer_and_markdown() -> None:
    a = all_stats(np.full((2, 96, 96, 3), (60, 120, 40), np.uint8))
    b = all_stats(np.full((2, 96, 96, 3), (70, 120, 40), np.uint8))
    c = all_stats(np.full((2, 96, 96, 3), (200, 200, 190), np.uint8))
    assert nearer(a, b, c)["mean_rgb"] == "world"
    res = {"seed": 1, "model_px": 96, "texture_sigma_px": 3.0,
           "rows": [{"gsd_mm": 16.0, "skipped_frames": [], "real": {"soybean/healthy": a},
                     "renderers": {"world (soybean)": b, "training": c},
                     "nearer": {"soybean/healthy": {"world_row": "world (soybean)", **nearer(a, b, c)}}},
                    {"gsd_mm": 2.0, "skipped_frames": ["x.tif"], "real": {}, "renderers": {}}]}
    md = markdown(res)
    assert "| real soybean/healthy | 2 | 60/120/40 |" in md
    assert "mean_rgb world" in md
    assert "without upsampling (x.tif)" in md


def test_manifest(tmp_path: Path) -> None:
    p = tmp_path / "f.csv"
    p.write_text("# comment\nfile,gsd_mm,crop,state,note\na.tif,10.8,soybean,healthy,x\n", encoding="utf-8")
    assert read_manifest(p) == [{"file": "a.tif", "gsd_mm": 10.8, "crop": "soybean", "state": "healthy", "note": "x"}]
    p.write_text("file,gsd_mm\na.tif,-1\n", encoding="utf-8")
    with pytest.raises(RealFramesError, match="positive"):
        read_manifest(p)
