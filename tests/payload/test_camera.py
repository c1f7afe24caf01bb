"""Camera geometry against answers computed another way (analytic, or hand-built rotations)."""

from __future__ import annotations

import math
import time

import numpy as np
import pymap3d
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from payload.geo.camera import (
    CameraModel,
    footprint,
    gimbal_mount_rpy_deg,
    ground_offsets_to_pixels,
    ground_sample_distance,
    ground_to_pixel,
    pixel_to_ground,
    pixels_to_ground_offsets,
)
from payload.types import Pose

LAT0, LON0, GROUND = 52.2, 0.12, 15.0


def _rodrigues(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rotation about a unit axis (Rodrigues), to build attitudes without the module's matrices."""
    a = axis / np.linalg.norm(axis)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * (k @ k)


def _independent_ground_offset(u, v, fx, cx, cy, roll, pitch, yaw, h):
    """Hand derivation: rotate body axes intrinsically (yaw about down, pitch about the new right,
    roll about the new forward), build the ray from them, and cut it with the ground plane."""
    fwd, right, down = np.array([1.0, 0, 0]), np.array([0, 1.0, 0]), np.array([0, 0, 1.0])  # NED
    r1 = _rodrigues(down, yaw)
    fwd, right = r1 @ fwd, r1 @ right
    r2 = _rodrigues(right, pitch)
    fwd, down = r2 @ fwd, r2 @ down
    r3 = _rodrigues(fwd, roll)
    right, down = r3 @ right, r3 @ down
    # nadir camera: image right = body right, image down = body backward, optical axis = body down
    ray = ((u - cx) / fx) * right + ((v - cy) / fx) * (-fwd) + down
    t = h / ray[2]
    n, e = ray[0] * t, ray[1] * t
    return e, n


def test_nadir_footprint_is_analytic() -> None:
    cam = CameraModel.from_hfov(640, 480, 62.2)
    h = 30.0
    corners = np.array([[0, 0], [640, 0], [640, 480], [0, 480]], dtype=float)
    en = pixels_to_ground_offsets(cam, corners, 0.0, 0.0, 0.0, h)
    half_w = h * math.tan(math.radians(62.2) / 2)
    half_h = half_w * 480 / 640
    expected = np.array([[-half_w, half_h], [half_w, half_h], [half_w, -half_h], [-half_w, -half_h]])
    np.testing.assert_allclose(en, expected, atol=1e-9)
    assert 2 * half_w == pytest.approx(2 * h * math.tan(math.radians(31.1)))
    # and through lat/lon: width of the polygon measured with pymap3d
    pose = Pose(LAT0, LON0, GROUND + h)
    poly = footprint(cam, pose, GROUND)
    assert poly is not None
    e0, n0, _ = pymap3d.geodetic2enu(*poly[0], GROUND, LAT0, LON0, GROUND)
    e1, n1, _ = pymap3d.geodetic2enu(*poly[1], GROUND, LAT0, LON0, GROUND)
    assert abs(math.hypot(e1 - e0, n1 - n0) - 2 * half_w) < 1e-3
    assert ground_sample_distance(cam, h) == pytest.approx(2 * half_w / 640)


def test_image_orientation_u_east_v_south() -> None:
    cam = CameraModel.from_hfov(640, 480, 60)
    en = pixels_to_ground_offsets(cam, np.array([[320, 240], [600, 240], [320, 20]]), 0, 0, 0, 30)
    np.testing.assert_allclose(en[0], [0, 0], atol=1e-9)
    assert en[1, 0] > 1 and abs(en[1, 1]) < 1e-9  # right of centre -> east
    assert en[2, 1] > 1 and abs(en[2, 0]) < 1e-9  # top of image -> north
    # yaw 90 (nose east): top of the image now looks east
    en = pixels_to_ground_offsets(cam, np.array([[320, 20]]), 0, 0, math.pi / 2, 30)
    assert en[0, 0] > 1 and abs(en[0, 1]) < 1e-9


def test_single_axis_tilts() -> None:
    cam = CameraModel.from_hfov(640, 480, 60)
    c = np.array([[320.0, 240.0]])
    h = 30.0
    # nose up 5 deg: belly (and camera) tilt forward -> centre lands north
    np.testing.assert_allclose(
        pixels_to_ground_offsets(cam, c, 0, math.radians(5), 0, h), [[0, h * math.tan(math.radians(5))]], atol=1e-9
    )
    # right wing down 10 deg: belly tilts left -> centre lands west
    np.testing.assert_allclose(
        pixels_to_ground_offsets(cam, c, math.radians(10), 0, 0, h), [[-h * math.tan(math.radians(10)), 0]], atol=1e-9
    )


def test_roll10_pitch5_yaw37_matches_independent_derivation() -> None:
    cam = CameraModel.from_hfov(640, 480, 62.2)
    fx, cx, cy = cam.K[0, 0], cam.K[0, 2], cam.K[1, 2]
    roll, pitch, yaw, h = math.radians(10), math.radians(5), math.radians(37), 30.0
    pixels = np.array([[320, 240], [0, 0], [640, 0], [640, 480], [0, 480], [100.5, 377.25]])
    got = pixels_to_ground_offsets(cam, pixels, roll, pitch, yaw, h)
    want = np.array([_independent_ground_offset(u, v, fx, cx, cy, roll, pitch, yaw, h) for u, v in pixels])
    np.testing.assert_allclose(got, want, atol=1e-9)
    # pure pitch+yaw: the centre moves h*tan(pitch) along the heading
    got = pixels_to_ground_offsets(cam, np.array([[320, 240]]), 0, pitch, yaw, h)[0]
    d = h * math.tan(pitch)
    np.testing.assert_allclose(got, [d * math.sin(yaw), d * math.cos(yaw)], atol=1e-9)


@pytest.mark.parametrize("dist", [None, [-0.28, 0.09, 0.0008, -0.0005, -0.012]])
def test_round_trip_pixel_ground_pixel_under_1cm(dist) -> None:
    if dist is None:
        cam = CameraModel.from_hfov(640, 480, 62.2, mount_rpy_deg=(1.5, -2.0, 3.0))
    else:
        k = [[520.0, 0, 318.2], [0, 522.0, 241.7], [0, 0, 1]]
        cam = CameraModel.from_calibration(640, 480, k, dist, mount_rpy_deg=(0.0, 4.0, 0.0))
    pose = Pose(LAT0, LON0, GROUND + 31.0, math.radians(10), math.radians(5), math.radians(37))
    rng = np.random.default_rng(1)
    for u, v in rng.uniform([0, 0], [640, 480], size=(40, 2)):
        ll = pixel_to_ground(cam, u, v, pose, GROUND)
        assert ll is not None
        uv = ground_to_pixel(cam, ll[0], ll[1], pose, GROUND)
        assert uv is not None
        gsd = ground_sample_distance(cam, 31.0) * 2  # generous metres-per-pixel at the edges
        err_m = math.hypot(uv[0] - u, uv[1] - v) * gsd
        assert err_m < 0.01
    # ground -> pixel -> ground
    for e, n in rng.uniform(-10, 10, size=(20, 2)):
        lat, lon, _ = pymap3d.enu2geodetic(e, n, 0, LAT0, LON0, GROUND)
        uv = ground_to_pixel(cam, lat, lon, pose, GROUND)
        ll = pixel_to_ground(cam, uv[0], uv[1], pose, GROUND)
        e2, n2, _ = pymap3d.geodetic2enu(ll[0], ll[1], GROUND, LAT0, LON0, GROUND)
        assert math.hypot(e2 - e, n2 - n) < 0.01


def test_calibration_principal_point_and_distortion_match_opencv() -> None:
    cv2 = pytest.importorskip("cv2")
    k = np.array([[520.0, 0, 318.2], [0, 522.0, 241.7], [0, 0, 1]])
    dist = np.array([-0.28, 0.09, 0.0008, -0.0005, -0.012])
    cam = CameraModel.from_calibration(640, 480, k, dist)
    # points in the camera frame (x right, y down, z forward) = nadir: body right, back, down
    pts = np.array([[1.0, -2.0, 30.0], [-5.0, 4.0, 30.0], [0.0, 0.0, 30.0]])
    img, _ = cv2.projectPoints(pts, np.zeros(3), np.zeros(3), k, dist)
    img = img.reshape(-1, 2) + 0.5  # OpenCV's pixel-centre integers -> corner convention
    # camera x right = east, camera y down = south at yaw 0 nadir
    en = np.stack([pts[:, 0], -pts[:, 1]], axis=1)
    np.testing.assert_allclose(ground_offsets_to_pixels(cam, en, 0, 0, 0, 30.0), img, atol=1e-6)


def test_horizon_and_behind_give_nan_and_none() -> None:
    cam = CameraModel.from_hfov(640, 480, 90)
    # pitched 80 deg nose-up: the camera looks almost at the horizon; the top rows miss the ground
    en = pixels_to_ground_offsets(cam, np.array([[320, 0], [320, 479]]), 0, math.radians(80), 0, 30)
    assert np.all(np.isnan(en[0])) and np.all(np.isfinite(en[1]))
    pose = Pose(LAT0, LON0, GROUND + 30, 0, math.radians(80), 0)
    assert footprint(cam, pose, GROUND) is None
    assert pixel_to_ground(cam, 320, 0, pose, GROUND) is None
    # a ground point behind the camera (south of it, camera looking north past horizontal)
    lat, lon, _ = pymap3d.enu2geodetic(0, -100, 0, LAT0, LON0, GROUND)
    pose = Pose(LAT0, LON0, GROUND + 30, 0, math.radians(100), 0)
    assert ground_to_pixel(cam, lat, lon, pose, GROUND) is None


def test_gimbal_forward_looks_forward() -> None:
    base = CameraModel.from_hfov(640, 480, 60)
    cam = base.with_mount(gimbal_mount_rpy_deg(0, -45, 0))  # 45 deg down from horizontal
    en = pixels_to_ground_offsets(cam, np.array([[320, 240]]), 0, 0, 0, 30)
    np.testing.assert_allclose(en, [[0, 30]], atol=1e-9)


def test_vectorised_full_frame_is_fast_enough_for_rendering() -> None:
    """Every pixel of a 640x480 frame both ways well inside a 10 fps budget (best of 3: the CPU is shared)."""
    cam = CameraModel.from_hfov(640, 480, 62.2)
    uu, vv = np.meshgrid(np.arange(640) + 0.5, np.arange(480) + 0.5)
    uv = np.stack([uu.ravel(), vv.ravel()], axis=1)
    best = math.inf
    for _ in range(3):
        t0 = time.perf_counter()
        en = pixels_to_ground_offsets(cam, uv, 0.1, 0.05, 0.6, 30)
        back = ground_offsets_to_pixels(cam, en, 0.1, 0.05, 0.6, 30)
        best = min(best, time.perf_counter() - t0)
    np.testing.assert_allclose(back, uv, atol=1e-6)
    # vectorised, a 640x480 frame takes a few tens of ms; a per-pixel Python loop would take seconds,
    # which is what this catches (a loaded machine must not fail it)
    assert best < 0.5, f"full-frame projection took {best:.3f} s"


@settings(max_examples=200, deadline=None)
@given(
    roll=st.floats(-0.5, 0.5),
    pitch=st.floats(-0.5, 0.5),
    yaw=st.floats(-math.pi, math.pi),
    h=st.floats(2.0, 150.0),
    u=st.floats(0.0, 640.0),
    v=st.floats(0.0, 480.0),
    mount_pitch=st.floats(-20.0, 20.0),
)
def test_round_trip_holds_for_any_reasonable_pose(roll, pitch, yaw, h, u, v, mount_pitch) -> None:
    cam = CameraModel.from_calibration(
        640,
        480,
        [[520.0, 0, 318.2], [0, 522.0, 241.7], [0, 0, 1]],
        [-0.2, 0.05, 0.001, -0.0005, 0.0],
        (0, mount_pitch, 0),
    )
    en = pixels_to_ground_offsets(cam, np.array([[u, v]]), roll, pitch, yaw, h)
    assume(np.all(np.isfinite(en)))  # a ray at or above the horizon has no ground point to return to
    back = ground_offsets_to_pixels(cam, en, roll, pitch, yaw, h)
    np.testing.assert_allclose(back, [[u, v]], atol=1e-6)
