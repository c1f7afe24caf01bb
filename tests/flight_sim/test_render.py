"""The camera renderer over the world: geometry against the payload's camera model and analytic answers, the
per-pixel footprint, the truth frame, and physical checks of what a tile over a patch shows."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pymap3d
import pytest

from flight_sim.camerafx import CameraEffects, motion_kernel
from flight_sim.render import (
    WorldRenderer,
    build_world,
    footprint_size_m,
    hfov_footprint_width_m,
    pixel_footprint,
    tile_shares,
    tile_truth,
)
from flight_sim.scenario import Scenario
from flight_sim.timeline import Timeline
from flight_sim.world.world import LABEL_OUTSIDE
from payload.bundle import CLASSES
from payload.geo.camera import CameraModel, ground_offsets_to_pixels, ground_to_pixel
from payload.pipeline.tiling import grid
from payload.types import Pose

RUST, MILDEW = CLASSES.index("rust"), CLASSES.index("powdery_mildew")


@pytest.fixture(scope="module")
def renderer(scenario: Scenario) -> WorldRenderer:
    return WorldRenderer.for_scenario(scenario, effects=False)


def pose_at_en(s: Scenario, east: float, north: float, agl: float, roll=0.0, pitch=0.0, yaw=0.0) -> Pose:
    lat, lon, alt = pymap3d.enu2geodetic(east, north, agl, s.origin.lat, s.origin.lon, s.origin.alt)
    return Pose(float(lat), float(lon), float(alt), roll, pitch, yaw)


def latlon_of(s: Scenario, east: float, north: float) -> tuple[float, float]:
    lat, lon, _ = pymap3d.enu2geodetic(east, north, 0.0, s.origin.lat, s.origin.lon, s.origin.alt)
    return float(lat), float(lon)


def test_world_holds_the_patches_as_ground_truth(scenario: Scenario, renderer: WorldRenderer) -> None:
    """Straight down over each patch centre the label is its class, and the world is the same for the seed."""
    for p in scenario.patches:
        pose = pose_at_en(scenario, p.east_m, p.north_m, scenario.flight.altitude_m)
        labels = renderer.render_labels(pose)
        assert labels[240, 320] == CLASSES.index(p.cls)
    pose = pose_at_en(scenario, 25.0, 20.0, 30.0)
    a = renderer.scene(pose).radiance
    b = WorldRenderer.for_scenario(scenario, build_world(scenario), effects=False).scene(pose).radiance
    assert np.array_equal(a, b)  # deterministic for the seed


def test_nadir_frame_covers_the_analytic_footprint(scenario: Scenario) -> None:
    """Straight down from 30 m: the frame spans 2 h tan(hfov/2) x its 4:3 height, to the pixel."""
    cam = CameraModel.from_hfov(640, 480, 60.0)
    s = scenario.model_copy(update={"field": scenario.field.model_copy(update={"width_m": 60.0, "height_m": 60.0}),
                                    "patches": []})
    origin = (s.origin.lat, s.origin.lon, s.origin.alt)
    r = WorldRenderer(build_world(s), cam, *origin)
    h = 30.0
    fw, fh = footprint_size_m(cam, h)
    assert fw == pytest.approx(hfov_footprint_width_m(60.0, h)) and fh == pytest.approx(fw * 0.75)
    gsd = fw / 640

    def pose(east: float, north: float) -> Pose:
        lat, lon, alt = pymap3d.enu2geodetic(east, north, h, *origin)
        return Pose(float(lat), float(lon), float(alt))

    # corners of the frame (pixel centres) land where the analytic footprint says
    p = pose(30.0, 30.0)
    en = r.ground_offsets(p).reshape(480, 640, 2)
    assert en[0, 0] == pytest.approx([30 - fw / 2 + gsd / 2, 30 + fh / 2 - gsd / 2], abs=1e-4)
    assert en[-1, -1] == pytest.approx([30 + fw / 2 - gsd / 2, 30 - fh / 2 + gsd / 2], abs=1e-4)
    assert not (r.render_labels(p) == LABEL_OUTSIDE).any()  # entirely inside the field
    # put the field's west edge 3 pixels inside the frame and its south edge 2 pixels inside it
    out = r.render_labels(pose(fw / 2 - 3 * gsd, fh / 2 - 2 * gsd)) == LABEL_OUTSIDE
    assert out[:, :3].all() and not out[:-2, 3:].any()
    assert out[-2:, :].all()


def test_pixel_footprint_is_the_analytic_ground_area(scenario: Scenario) -> None:
    """Nadir over flat ground every pixel covers h / f; pitched by theta the centre pixel covers h / (f cos^1.5)."""
    cam = CameraModel.from_hfov(640, 480, 60.0)
    origin = (scenario.origin.lat, scenario.origin.lon, scenario.origin.alt)
    r = WorldRenderer(build_world(scenario), cam, *origin)
    f = float(cam.K[0, 0])
    for theta in (0.0, 0.5):
        lat, lon, alt = pymap3d.enu2geodetic(60.0, 40.0, 30.0, *origin)
        gm = r.ground_map(Pose(float(lat), float(lon), float(alt), 0.0, theta, 0.0))
        want = 30.0 / (f * math.cos(theta) ** 1.5)
        assert float(gm.footprint_m[240, 320]) == pytest.approx(want, rel=2e-3)
        if theta == 0.0:
            assert np.allclose(gm.footprint_m, 30.0 / f, rtol=1e-3)
        else:  # pixels nearer the horizon cover more ground
            assert gm.footprint_m[10, 320] > gm.footprint_m[470, 320]
    # a stretched map: the footprint is sqrt(area), not the longer side
    e, n = np.meshgrid(np.arange(8) * 0.02, np.arange(6) * 0.08)
    assert np.allclose(pixel_footprint(e, n), math.sqrt(0.02 * 0.08))


@pytest.mark.parametrize(
    ("patch", "offset", "attitude"),
    [(0, (0.0, 0.0), (0.0, 0.0, 0.0)), (0, (-2.0, 3.0), (0.08, -0.12, 0.6)), (1, (6.0, 3.0), (-0.1, 0.05, -2.5))],
)
def test_patch_appears_at_the_pixel_ground_to_pixel_predicts(
    scenario: Scenario, renderer: WorldRenderer, patch: int, offset: tuple[float, float], attitude: tuple
) -> None:
    p = scenario.patches[patch]
    pose = pose_at_en(scenario, p.east_m + offset[0], p.north_m + offset[1], 30.0, *attitude)
    labels = renderer.render_labels(pose)
    vs, us = np.nonzero(labels == CLASSES.index(p.cls))
    assert len(us) > 1000
    lat, lon = latlon_of(scenario, p.east_m, p.north_m)
    u, v = ground_to_pixel(renderer.cam, lat, lon, pose, scenario.origin.alt)
    assert 150 < u < 490 and 150 < v < 330, "the whole patch must be in view for this test"
    assert labels[int(v), int(u)] == CLASSES.index(p.cls)
    # the disk's outline as the payload's model projects it, filled: the rendered patch must match it
    th = np.linspace(0, 2 * np.pi, 720, endpoint=False)
    outline = np.array(
        [ground_to_pixel(renderer.cam, *latlon_of(scenario, p.east_m + p.radius_m * math.cos(a),
                                                   p.north_m + p.radius_m * math.sin(a)), pose, scenario.origin.alt)
         for a in th]
    )  # fmt: skip
    predicted = np.zeros_like(labels)
    cv2.fillPoly(predicted, [np.round((outline - 0.5) * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    rendered = labels == CLASSES.index(p.cls)
    pv, pu = np.nonzero(predicted)
    assert np.logical_xor(rendered, predicted > 0).sum() / len(pu) < 0.03
    assert (us.mean(), vs.mean()) == pytest.approx((pu.mean(), pv.mean()), abs=0.3)
    if attitude == (0.0, 0.0, 0.0):  # straight down, the disk's image is a disk centred on its centre's image
        assert (us.mean() + 0.5, vs.mean() + 0.5) == pytest.approx((u, v), abs=0.3)


def test_renderer_inverts_through_the_payload_model(scenario: Scenario, renderer: WorldRenderer) -> None:
    pose = pose_at_en(scenario, 50.0, 40.0, 28.0, 0.15, -0.2, 1.1)
    en = renderer.ground_offsets(pose)
    e, n, agl = renderer.camera_en_agl(pose)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(en), 200)
    back = ground_offsets_to_pixels(renderer.cam, en[idx] - [e, n], pose.roll_rad, pose.pitch_rad, pose.yaw_rad, agl)
    uv = np.stack([idx % 640 + 0.5, idx // 640 + 0.5], axis=1)
    assert np.abs(back - uv).max() < 1e-6


def test_survey_frames_see_every_patch_at_its_predicted_place(
    scenario: Scenario, survey: Timeline, renderer: WorldRenderer
) -> None:
    seen = set()
    for t in np.arange(20.0, survey.duration - 20, 1.0):
        pose = survey.pose_at(float(t))
        labels = renderer.render_labels(pose)
        for i, p in enumerate(scenario.patches):
            uv = ground_to_pixel(renderer.cam, *latlon_of(scenario, p.east_m, p.north_m), pose, scenario.origin.alt)
            if uv is None or not (80 < uv[0] < 560 and 80 < uv[1] < 400):
                continue
            assert labels[int(uv[1]), int(uv[0])] == CLASSES.index(p.cls)
            seen.add(i)
    assert seen == set(range(len(scenario.patches)))


def _tile_at(renderer: WorldRenderer, s: Scenario, east: float, north: float, agl: float):
    pose = pose_at_en(s, east, north, agl)
    sc = renderer.scene(pose)
    th, tw = 480 // s.camera.tile_rows, 640 // s.camera.tile_cols
    win = (slice(240 - th // 2, 240 + th // 2), slice(320 - tw // 2, 320 + tw // 2))
    return sc, win


def test_a_tile_over_a_late_patch_is_coloured_by_its_disease(scenario: Scenario) -> None:
    """Physics, not training looks: late rust reddens a canopy tile, late mildew whitens it, against healthy crop
    under the same light, seen straight down from a few metres (camera effects off: radiance compared)."""
    late = [p.model_copy(update={"stage": "late"}) for p in scenario.patches]
    s = scenario.model_copy(update={"patches": late})
    r = WorldRenderer.for_scenario(s, effects=False)
    agl = 6.0
    healthy, hw = _tile_at(r, s, 60.0, 10.0, agl)
    rust, rw = _tile_at(r, s, s.patches[0].east_m, s.patches[0].north_m, agl)
    mildew, mw = _tile_at(r, s, s.patches[1].east_m, s.patches[1].north_m, agl)
    h_rgb, r_rgb, m_rgb = (x.radiance[w].reshape(-1, 3).mean(axis=0) for x, w in ((healthy, hw), (rust, rw),
                                                                                   (mildew, mw)))
    assert r_rgb[0] / r_rgb[1] > h_rgb[0] / h_rgb[1]  # redder
    assert m_rgb.min() / m_rgb.max() > h_rgb.min() / h_rgb.max()  # greyer / whiter
    assert (healthy.labels[hw] == 0).all() and (rust.labels[rw] == RUST).mean() > 0.9


def test_tile_shares_give_diseased_leaf_and_ground(scenario: Scenario, renderer: WorldRenderer) -> None:
    """Per tile: the region share from the labels, the diseased share of leaf area and of ground from the world;
    a healthy tile has none, a patch tile some but never more than the stage's severity allows."""
    s = scenario
    boxes = grid(640, 480, s.camera.tile_rows, s.camera.tile_cols)
    p = s.patches[0]
    sc = renderer.scene(pose_at_en(s, p.east_m, p.north_m, 12.0))
    shares = tile_shares(sc.labels, sc.leaf, sc.diseased, boxes)
    centre = next(t for b, t in zip(boxes, shares, strict=True) if b.row == 1 and b.col == 1)
    assert centre.region["rust"] > 0.9 and centre.outside == 0.0
    assert 0.0 < centre.diseased_of_leaf <= 0.08 + 1e-6  # moderate: severity 0.08 at most, at the centre
    assert centre.diseased_of_ground <= centre.diseased_of_leaf
    h = renderer.scene(pose_at_en(s, 60.0, 10.0, 12.0))
    for t in tile_shares(h.labels, h.leaf, h.diseased, boxes):
        assert t.diseased_of_leaf == 0.0 and t.region["healthy"] == pytest.approx(1.0)


def test_motion_blur_smears_along_the_ground_motion(scenario: Scenario, survey: Timeline) -> None:
    """Blur (px) = speed x exposure / GSD along the image direction the ground moves (a leg flown east)."""
    r = WorldRenderer.for_scenario(scenario, effects=False)
    t = next(float(x) for x in np.arange(20.0, survey.duration, 0.5)
             if abs(math.degrees(survey.pose_at(float(x)).yaw_rad) - 90) < 2)
    def level(q: Pose) -> Pose:  # the attitude's wobble adds its own (true) rotational smear: keep the translation
        return Pose(q.lat_deg, q.lon_deg, q.alt_m, 0.0, 0.0, q.yaw_rad)

    vu, vv = r.image_motion(level(survey.pose_at(t)), level(survey.pose_at(t + 0.05)), 0.05)
    gsd = scenario.flight.altitude_m / float(r.cam.K[0, 0])
    assert math.hypot(vu, vv) == pytest.approx(scenario.flight.speed_mps / gsd, rel=0.15)
    # heading east: image top is east, so the ground moves down the image (v grows)
    assert abs(vv) > 5 * abs(vu) and vv > 0
    k = motion_kernel(0.0, 4.0)
    assert k is not None and k.sum() == pytest.approx(1.0) and k.shape[0] >= 5
    assert k[:, k.shape[1] // 2].sum() == pytest.approx(1.0, abs=1e-6)  # all of it on the vertical line
    assert motion_kernel(0.2, 0.1) is None


def test_auto_exposure_lags_like_a_camera() -> None:
    """A step in brightness: the gain moves part of the way in one frame, all of it after a few seconds."""
    fx = CameraEffects((48, 64), 0.0, 0)
    dark = np.full((48, 64, 3), 40.0, np.float32)
    bright = np.full((48, 64, 3), 160.0, np.float32)
    fx.apply(dark, 0.0)
    g_dark = fx.state.gain
    out = fx.apply(bright, 0.2)
    settled = 255.0 * math.sqrt(0.5)  # a uniform scene: its brightest 2 % (all of it) held at linear luma 0.5
    assert fx.state.gain > settled / 160.0 and fx.state.gain < g_dark  # still too bright: it lags
    assert out.mean() > settled + 10
    for k in range(1, 30):
        out = fx.apply(bright, 0.2 + 0.2 * k)
    assert out.mean() == pytest.approx(settled, abs=3)


def test_exposure_meters_linear_luma_as_libcamera_does() -> None:
    """Known answers for libcamera's rule: mean linear luma to 0.16, unless the brightest 2 % would stay under 0.5."""
    from flight_sim.camerafx import exposure_gain

    # 98 % canopy at linear luma 0.04 (encoded 51), 2 % glints at luma 0.64 (encoded 204): mean luma 0.052,
    # the highlights already above 0.5, so the mean rule binds: linear gain 0.16 / 0.052
    px = np.full((1000, 3), 51.0, np.float32)
    px[:20] = 204.0
    lin = (px / 255.0) ** 2 @ np.array([0.299, 0.587, 0.114])
    assert exposure_gain(px) == pytest.approx(math.sqrt(0.16 / lin.mean()), rel=1e-4)
    # a flat grey scene: the highlight bound binds and takes it to luma 0.5 whatever its level
    for level in (40.0, 120.0, 200.0):
        grey = np.full((500, 3), level, np.float32)
        assert (level * exposure_gain(grey) / 255.0) ** 2 == pytest.approx(0.5, rel=1e-4)


def test_sky_and_outside_field_are_marked(scenario: Scenario, renderer: WorldRenderer) -> None:
    pose = pose_at_en(scenario, 60.0, 40.0, 30.0, 0.0, math.radians(70), 0.0)  # pitched up: horizon in view
    gm = renderer.ground_map(pose)
    assert gm.sky.any() and not gm.sky.all()
    labels = renderer.render_labels(pose, gm)
    assert (labels[gm.sky] == LABEL_OUTSIDE).all()


def test_ground_outside_the_field_is_headland(scenario: Scenario, renderer: WorldRenderer) -> None:
    pose = pose_at_en(scenario, -20.0, 40.0, 30.0, 0.0, 0.0, 0.0)  # over the west headland
    sc = renderer.scene(pose)
    outside = sc.labels == LABEL_OUTSIDE
    assert outside.mean() > 0.3
    assert (sc.diseased[outside] == 0).all()
    soil = sc.radiance[outside]
    assert soil[:, 0].mean() > soil[:, 2].mean()  # soil, not sky


def test_tile_truth_follows_the_payload_grid() -> None:
    labels = np.zeros((480, 640), np.uint8)
    labels[:160, :160] = RUST  # tile (0, 0) fully rust
    labels[160:320, 160:200] = MILDEW  # tile (1, 1): 25% mildew -> flagged
    labels[160:320, 320:350] = MILDEW  # tile (1, 2): under 25% -> healthy
    labels[320:, 480:] = LABEL_OUTSIDE  # tile (2, 3): off the field
    labels[320:, 360:400] = LABEL_OUTSIDE  # tile (2, 2): a quarter off the field, still judged
    assert tile_truth(labels, 3, 4) == [
        ["rust", "healthy", "healthy", "healthy"],
        ["healthy", "powdery_mildew", "healthy", "healthy"],
        ["healthy", "healthy", "healthy", "-"],
    ]


def _zones_lit_by(temp_k: float, reflectances: list[tuple[float, float, float]], n: int = 192) -> np.ndarray:
    """Zone means of surfaces lit by a black body at `temp_k`, in the world's daylight-balanced space."""
    from flight_sim.world.light import WHITE_BALANCE_K, planck_rgb

    tint = planck_rgb(temp_k) / planck_rgb(WHITE_BALANCE_K)
    tint = tint / tint[1]
    refl = np.array([reflectances[i % len(reflectances)] for i in range(n)])
    return (refl * tint).astype(np.float32)


def test_white_balance_finds_the_light_of_a_grey_scene() -> None:
    """Known answers for libcamera's Bayesian AWB: grey cards lit by 3000 K or 4000 K light are balanced
    to that light (the zones' greyness outweighs the daylight prior), and the gains make them grey."""
    from flight_sim.camerafx import awb_gains, awb_temperature

    for light in (3000.0, 4000.0):
        zones = _zones_lit_by(light, [(0.18, 0.18, 0.18), (0.3, 0.3, 0.3)])
        t = awb_temperature(zones)
        assert t == pytest.approx(light, rel=0.03)
        balanced = zones[0] * awb_gains(t) ** 2  # the gains act on gamma-2 values
        assert balanced[0] / balanced[1] == pytest.approx(1.0, abs=0.03)
        assert balanced[2] / balanced[1] == pytest.approx(1.0, abs=0.03)


def test_white_balance_over_a_canopy_holds_daylight() -> None:
    """No leaf zone can be made grey, so every zone sits at the cap and the prior's peak (6500 K) wins;
    the canopy keeps its blue below its red, as the leaf reflects it (no grey-world lift)."""
    from flight_sim.camerafx import AWB_PRIOR, awb_gains, awb_temperature

    leaves = [(0.045, 0.095, 0.032), (0.05, 0.115, 0.03), (0.03, 0.05, 0.02)]
    t = awb_temperature(_zones_lit_by(5500.0, leaves))
    peak = max(AWB_PRIOR, key=lambda p: p[1])[0]
    assert t == pytest.approx(peak, rel=0.02)
    leaf = np.array(leaves[0]) * awb_gains(t) ** 2
    assert leaf[2] < leaf[0] < leaf[1]


def test_white_balance_keeps_the_last_gains_without_enough_zones() -> None:
    """A frame mostly off the field or in the dark gives too few zones: no new temperature is picked."""
    from flight_sim.camerafx import AWB_MIN_ZONES, awb_temperature, awb_zones

    assert awb_temperature(np.full((AWB_MIN_ZONES - 1, 3), 0.2, np.float32)) is None
    valid = np.zeros((480, 640), bool)
    valid[:40, :] = True  # the top row of zones (12 rows of 40 px)
    assert len(awb_zones(np.full((480, 640, 3), 0.2, np.float32), valid)) == 16
    assert len(awb_zones(np.full((480, 640, 3), 0.001, np.float32))) == 0  # too dark to count


def test_a_locked_white_balance_ignores_the_scene() -> None:
    """A survey camera with its balance locked keeps it whatever fills the frame (a rusty canopy included),
    while auto exposure still follows the scene."""
    from flight_sim.camerafx import AWB_DAYLIGHT_K, CameraEffects, awb_gains
    from flight_sim.world.light import encode

    rusty = encode(np.full((48, 64, 3), (0.21, 0.20, 0.12), np.float32))  # late rust filling a frame
    locked = CameraEffects((48, 64), 0.0, 1, wb_temp_k=AWB_DAYLIGHT_K)
    free = CameraEffects((48, 64), 0.0, 1)
    gain_l, wb_l = locked.meter(rusty, None, 0.0)
    gain_f, wb_f = free.meter(rusty, None, 0.0)
    assert np.allclose(wb_l, awb_gains(AWB_DAYLIGHT_K))
    assert wb_f[2] > wb_l[2] * 1.05  # the auto balance takes the rust's colour for a warm light
    assert gain_l == pytest.approx(gain_f)
