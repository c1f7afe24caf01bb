"""The quick mosaic: the homography against known answers, the compositing rule, bounded memory, the GeoTIFF."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from payload.config import MosaicSection
from payload.geo.camera import CameraModel, box_corners, ground_offsets_to_pixels, pixels_to_ground_offsets
from payload.geo.frames import LocalFrame
from payload.geo.mosaic import (
    EMPTY,
    MosaicCanvas,
    apply_homography,
    composite,
    homography_from_points,
    nadir_key,
    new_tile,
)
from payload.pipeline.tiling import grid
from payload.sinks.mosaic import MosaicSink, SpillingTiles, png_shrink, write_mosaic
from payload.types import Frame, FrameResult, TileBox, TileResult

ORIGIN = LocalFrame(-35.363261, 149.165230, 0.0)
CAM = CameraModel.from_hfov(640, 480, 60.0)
BOXES = grid(640, 480, 3, 4)
CORNERS = np.concatenate([box_corners(b.x, b.y, b.w, b.h) for b in BOXES])


def gradient_frame() -> np.ndarray:
    """R encodes the pixel column, G the row, B is constant: a pixel's colour says where in the frame it was."""
    u = (np.arange(640) + 0.5) / 640 * 255
    v = (np.arange(480) + 0.5) / 480 * 255
    img = np.zeros((480, 640, 3), np.uint8)
    img[..., 0] = np.rint(u)[None, :]
    img[..., 1] = np.rint(v)[:, None]
    img[..., 2] = 90
    return img


def nadir_pairs(cam_en: tuple[float, float], height: float, yaw: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    en = pixels_to_ground_offsets(CAM, CORNERS, 0.0, 0.0, yaw, height)
    return CORNERS, en + np.asarray(cam_en)


def test_homography_recovers_a_known_one() -> None:
    h = np.array([[1.2, 0.1, 30.0], [-0.05, 0.9, -12.0], [1e-4, -2e-4, 1.0]])
    src = np.array([[0, 0], [640, 0], [640, 480], [0, 480], [320, 240], [100, 400]], float)
    dst = apply_homography(h, src)
    np.testing.assert_allclose(homography_from_points(src, dst), h, rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="at least 4"):
        homography_from_points(src[:3], dst[:3])
    with pytest.raises(ValueError, match="do not determine"):
        homography_from_points(np.array([[0, 0], [1, 1], [2, 2], [3, 3]]), dst[:4])


def test_nadir_camera_frame_corner_lands_on_the_known_ground_point() -> None:
    # 60 degrees across 640 px from 30 m, nose north: the top-left corner is 30 tan(30 deg) west and
    # 30 tan(30 deg) * 480/640 north of the point below the camera; the centre is that point
    src, dst = nadir_pairs((5.0, -7.0), 30.0)
    h = homography_from_points(src, dst)
    half_w = 30.0 * math.tan(math.radians(30.0))
    got = apply_homography(h, np.array([[0.0, 0.0], [320.0, 240.0], [640.0, 480.0]]))
    np.testing.assert_allclose(got[0], [5.0 - half_w, -7.0 + half_w * 0.75], atol=1e-6)
    np.testing.assert_allclose(got[1], [5.0, -7.0], atol=1e-6)
    np.testing.assert_allclose(got[2], [5.0 + half_w, -7.0 - half_w * 0.75], atol=1e-6)


def test_nadir_key_is_the_off_nadir_tangent() -> None:
    k = nadir_key(np.array([0.0, 3.0, 30.0, 500.0]), np.array([0.0, 4.0, 0.0, 0.0]), (0.0, 0.0), 10.0)
    assert k.tolist() == [0, 50, 254, 254]  # tan 0, 0.5, 3 and 50 (saturated below EMPTY)


def test_composite_keeps_the_most_nadir_pixel_and_ties_go_to_the_newer() -> None:
    dst = new_tile(4)[:2, :2]
    composite(dst, np.full((2, 2, 3), 10, np.uint8), np.array([[5, 5], [5, EMPTY]], np.uint8))
    assert dst[..., 0].tolist() == [[10, 10], [10, 0]] and dst[1, 1, 3] == EMPTY  # EMPTY never paints
    composite(dst, np.full((2, 2, 3), 20, np.uint8), np.array([[9, 5], [1, 1]], np.uint8))
    assert dst[..., 0].tolist() == [[10, 20], [20, 20]]  # worse key loses, a tie and better keys win
    assert dst[..., 3].tolist() == [[5, 5], [1, 1]]


def canvas_colour_at(canvas: MosaicCanvas, e: float, n: float) -> np.ndarray:
    t = canvas.tile_px
    i, j = math.floor(-n / canvas.m_per_px), math.floor(e / canvas.m_per_px)
    return canvas.store.get((i // t, j // t))[i % t, j % t]


@pytest.mark.parametrize("yaw_deg", [0.0, 37.0])
def test_canvas_puts_each_ground_point_where_the_camera_saw_it(yaw_deg: float) -> None:
    canvas = MosaicCanvas(ORIGIN, 0.1)
    cam_en = (12.0, 40.0)
    yaw = math.radians(yaw_deg)
    src, dst = nadir_pairs(cam_en, 30.0, yaw)
    assert canvas.add_frame(gradient_frame(), src, dst, cam_en, 30.0)
    for de, dn in [(0.0, 0.0), (6.0, -4.0), (-10.0, 7.5), (14.0, 2.0)]:
        uv = ground_offsets_to_pixels(CAM, np.array([[de, dn]]), 0.0, 0.0, yaw, 30.0)[0]
        got = canvas_colour_at(canvas, cam_en[0] + de, cam_en[1] + dn).astype(float)
        # the frame is shrunk to the canvas's 10 cm before warping: within a couple of levels (~3 px)
        assert abs(got[0] - uv[0] / 640 * 255) < 2.5 and abs(got[1] - uv[1] / 480 * 255) < 3.0, (de, dn, got, uv)
        assert abs(got[3] - math.hypot(de, dn) / 30.0 * 100) <= 1.0  # the off-nadir tangent, at the cell centre
    # 20 m north is outside the footprint (13 m along the image's height either way) in a tile it painted
    t = canvas.tile_px
    assert (math.floor(-(cam_en[1] + 20.0) / 0.1) // t, math.floor(cam_en[0] / 0.1) // t) in canvas.store.keys()
    assert canvas_colour_at(canvas, cam_en[0], cam_en[1] + 20.0)[3] == EMPTY


def test_the_view_from_straight_above_wins_over_an_oblique_one() -> None:
    canvas = MosaicCanvas(ORIGIN, 0.2)
    img_a = np.full((480, 640, 3), 50, np.uint8)
    img_b = np.full((480, 640, 3), 200, np.uint8)
    canvas.add_frame(img_a, *nadir_pairs((0.0, 0.0), 30.0), (0.0, 0.0), 30.0)
    canvas.add_frame(img_b, *nadir_pairs((10.0, 0.0), 30.0), (10.0, 0.0), 30.0)  # newer, 10 m east
    assert canvas_colour_at(canvas, 1.0, 0.0)[0] == 50  # nearer the first camera's nadir
    assert canvas_colour_at(canvas, 9.0, 0.0)[0] == 200
    assert canvas_colour_at(canvas, 5.1, 0.0)[0] == 200 and canvas_colour_at(canvas, 4.7, 0.0)[0] == 50


def lawnmower(canvas: MosaicCanvas, legs: int = 4, per_leg: int = 12) -> None:
    rng = np.random.default_rng(3)
    for leg in range(legs):
        for k in range(per_leg):
            n = k * 5.0 if leg % 2 == 0 else (per_leg - 1 - k) * 5.0
            cam_en = (leg * 20.0, n)
            img = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
            canvas.add_frame(img, *nadir_pairs(cam_en, 30.0, 0.0 if leg % 2 == 0 else math.pi), cam_en, 30.0)


def test_spilling_store_bounds_memory_and_changes_nothing(tmp_path) -> None:
    ref = MosaicCanvas(ORIGIN, 0.15)
    lawnmower(ref)
    store = SpillingTiles(tmp_path / "spill", max_in_memory=6)
    small = MosaicCanvas(ORIGIN, 0.15, store)
    lawnmower(small)
    assert store.spills > 0 and store.reloads > 0, "the survey must revisit spilled tiles"
    assert len(store.hot) <= 6 and store.peak_tiles <= 6 + 4  # one frame touches at most 4 tiles beyond the cap
    assert sorted(store.keys()) == sorted(ref.store.keys())
    for key in ref.store.keys():
        np.testing.assert_array_equal(store.read(key), ref.store.get(key))
    store.remove()
    assert not (tmp_path / "spill").exists()


def test_png_shrink_is_a_power_of_two_within_the_limit() -> None:
    assert png_shrink(1000, 800, 2048) == 1
    assert png_shrink(6656, 6400, 2048) == 4
    assert png_shrink(10**6, 10, 256) == 256  # never coarser than a tile


def test_geotiff_is_georeferenced_and_reads_back_the_colours(tmp_path) -> None:
    import rasterio
    from rasterio.warp import transform

    canvas = MosaicCanvas(ORIGIN, 0.15)
    cam_en = (30.0, -20.0)
    canvas.add_frame(gradient_frame(), *nadir_pairs(cam_en, 30.0), cam_en, 30.0)
    written = write_mosaic(tmp_path, canvas, canvas.store.get, 300)
    assert [p.name for p in written] == ["mosaic.tif", "mosaic.png", "mosaic.json"]
    info = json.loads((tmp_path / "mosaic.json").read_text())
    with rasterio.open(tmp_path / "mosaic.tif") as src:
        assert src.crs.to_proj4().startswith("+proj=ortho") and src.res == (0.15, 0.15)
        assert src.count == 4 and src.colorinterp[3].name == "alpha"
        # the ground point below the camera, through WGS84, reads the frame's centre pixel
        lat, lon, _ = ORIGIN.to_geodetic(cam_en[0], cam_en[1], 0.0)
        xs, ys = transform("EPSG:4326", src.crs, [float(lon)], [float(lat)])
        r, c = src.index(xs[0], ys[0])
        px = src.read(window=((r, r + 1), (c, c + 1)))[:, 0, 0]
        assert abs(int(px[0]) - 128) <= 2 and abs(int(px[1]) - 128) <= 2 and px[3] == 255
        assert src.read(4)[0, 0] == 0  # a corner of the tile the frame did not reach is transparent
        left, bottom, right, top = src.bounds
        b = info["bounds_en"]
        assert (left, bottom, right, top) == pytest.approx((b["west"], b["south"], b["east"], b["north"]))
    assert info["png"]["shrink"] == 2  # 512 px of tiles shrunk within 300
    assert (tmp_path / "mosaic.png").read_bytes()[:4] == b"\x89PNG"


def test_sink_composites_trusted_looks_and_writes_at_close(tmp_path) -> None:
    sink = MosaicSink(tmp_path, MosaicSection(every_n_frames=2, max_tiles_in_memory=4))
    for seq in range(6):
        cam_en = (0.0, 5.0 * seq)
        lat, lon, _ = ORIGIN.to_geodetic(cam_en[0], cam_en[1], 0.0)
        en = pixels_to_ground_offsets(CAM, CORNERS, 0.0, 0.0, 0.0, 30.0) + np.asarray(cam_en)
        la, lo, _ = ORIGIN.to_geodetic(en[:, 0], en[:, 1], 0.0)
        fps = np.stack([la, lo], axis=1).reshape(len(BOXES), 4, 2)
        look = {"trusted": seq != 1, "vehicle": {"lat": float(lat), "lon": float(lon), "height_agl_m": 30.0},
                "tiles": [{"footprint": q.tolist()} for q in fps]}
        tiles = tuple(TileResult(b, np.zeros(3), "healthy", 0.9, False) for b in BOXES)
        frame = Frame(gradient_frame(), seq, float(seq), 1.79e9 + seq)
        sink.on_look(look, FrameResult(frame, tiles, 1.0, "cpu", float(seq)))
    assert sink.canvas is not None and sink.canvas.frames == 3  # 5 trusted looks, every 2nd
    sink.on_close()
    info = json.loads((tmp_path / "mosaic.json").read_text())
    assert info["frames"] == 3 and info["memory"]["max_tiles_in_memory"] == 4
    assert not (tmp_path / ".mosaic_tiles").exists()
    # the origin is the first trusted look's vehicle: the disease map's rule, so the rasters share the CRS
    assert info["origin"]["lat"] == pytest.approx(ORIGIN.lat0, abs=1e-9)


def test_a_failing_mosaic_does_not_raise_into_the_flight(tmp_path, caplog) -> None:
    sink = MosaicSink(tmp_path, MosaicSection())
    look = {"trusted": True, "vehicle": {"lat": 1.0, "lon": 2.0, "height_agl_m": 30.0},
            "tiles": [{"footprint": [[1.0, 2.0]] * 4}] * 2}
    frame = Frame(np.zeros((480, 640, 3), np.uint8), 0, 0.0, 0.0)
    tiles = tuple(TileResult(TileBox(0, 0, 10, 10), np.zeros(3), "healthy", 0.9, False) for _ in range(2))
    sink.on_look(look, FrameResult(frame, tiles, 1.0, "cpu", 0.0))  # degenerate: every corner one point
    assert "mosaic failed" in caplog.text
    sink.on_close()
    assert not (tmp_path / "mosaic.tif").exists()


def test_a_local_pose_without_an_origin_is_skipped_not_a_failure(tmp_path, caplog) -> None:
    # indoors with no origin on Earth a look's vehicle has local metres and no lat/lon
    sink = MosaicSink(tmp_path, MosaicSection())
    look = {"trusted": True, "vehicle": {"lat": None, "lon": None, "east_m": 3.0, "north_m": 1.0},
            "tiles": [{"footprint": None}]}
    frame = Frame(np.zeros((480, 640, 3), np.uint8), 0, 0.0, 0.0)
    tile = TileResult(TileBox(0, 0, 10, 10), np.zeros(3), "healthy", 0.9, False)
    sink.on_look(look, FrameResult(frame, (tile,), 1.0, "cpu", 0.0))
    assert sink.canvas is None and not sink._broken and "mosaic failed" not in caplog.text
    sink.on_close()
