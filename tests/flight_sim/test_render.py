"""The field and the camera renderer: geometry against the payload's camera model and analytic answers."""

from __future__ import annotations

import math
import time

import cv2
import numpy as np
import pymap3d
import pytest

from compile.synthetic import CLASSES, leaf_image
from flight_sim.field import LABEL_OUTSIDE, SOIL_RGB, Field, build_field
from flight_sim.render import FieldRenderer, footprint_size_m, hfov_footprint_width_m, tile_truth
from flight_sim.scenario import Scenario, texture_scale_px
from flight_sim.timeline import Timeline
from payload.geo.camera import CameraModel, ground_offsets_to_pixels, ground_to_pixel
from payload.types import Pose

RUST, MILDEW = CLASSES.index("rust"), CLASSES.index("powdery_mildew")


@pytest.fixture(scope="module")
def field(scenario: Scenario) -> Field:
    return build_field(scenario)


@pytest.fixture(scope="module")
def renderer(scenario: Scenario, field: Field) -> FieldRenderer:
    return FieldRenderer.for_scenario(scenario, field)


def pose_at_en(s: Scenario, east: float, north: float, agl: float, roll=0.0, pitch=0.0, yaw=0.0) -> Pose:
    lat, lon, alt = pymap3d.enu2geodetic(east, north, agl, s.origin.lat, s.origin.lon, s.origin.alt)
    return Pose(float(lat), float(lon), float(alt), roll, pitch, yaw)


def latlon_of(s: Scenario, east: float, north: float) -> tuple[float, float]:
    lat, lon, _ = pymap3d.enu2geodetic(east, north, 0.0, s.origin.lat, s.origin.lon, s.origin.alt)
    return float(lat), float(lon)


def test_field_holds_the_patches_as_ground_truth(scenario: Scenario, field: Field) -> None:
    assert field.shape == (1600, 2400)
    assert field.scale_px == pytest.approx(texture_scale_px(scenario))
    for p in scenario.patches:
        c, r = field.en_to_colrow(p.east_m, p.north_m)
        assert field.labels[int(round(r)), int(round(c))] == CLASSES.index(p.cls)
    areas = {cls: (field.labels == CLASSES.index(cls)).sum() * field.m_per_px**2 for cls in ("rust", "powdery_mildew")}
    assert areas["rust"] == pytest.approx(math.pi * (6**2 + 5**2), rel=0.02)
    assert areas["powdery_mildew"] == pytest.approx(math.pi * 7**2, rel=0.02)
    assert np.array_equal(build_field(scenario).rgb, field.rgb)  # deterministic for the seed


def test_nadir_frame_covers_the_analytic_footprint() -> None:
    """Straight down from 30 m: the frame spans 2 h tan(hfov/2) x its 4:3 height, to the pixel."""
    cam = CameraModel.from_hfov(640, 480, 60.0)
    s_w, s_h = 60.0, 60.0
    white = Field(np.full((3000, 3000, 3), 255, np.uint8), np.zeros((3000, 3000), np.uint8), 0.02, s_w, s_h, 100.0)
    origin = (-35.0, 149.0, 500.0)
    r = FieldRenderer(white, cam, *origin)
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
    assert np.all(r.render(p) == 255)  # entirely inside the field
    # put the field's west edge 3 pixels inside the frame and its south edge 2 pixels inside it
    img = r.render(pose(fw / 2 - 3 * gsd, fh / 2 - 2 * gsd))
    soil = np.all(img == SOIL_RGB, axis=2)
    assert soil[:, :3].all() and not soil[:-2, 3:].any()
    assert soil[-2:, :].all() and not soil[:-2, 3:].any()


@pytest.mark.parametrize(
    ("patch", "offset", "attitude"),
    [(0, (0.0, 0.0), (0.0, 0.0, 0.0)), (0, (-2.0, 3.0), (0.08, -0.12, 0.6)), (1, (6.0, 3.0), (-0.1, 0.05, -2.5))],
)
def test_patch_appears_at_the_pixel_ground_to_pixel_predicts(
    scenario: Scenario, renderer: FieldRenderer, patch: int, offset: tuple[float, float], attitude: tuple
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


def test_renderer_inverts_through_the_payload_model(scenario: Scenario, renderer: FieldRenderer) -> None:
    pose = pose_at_en(scenario, 50.0, 40.0, 28.0, 0.15, -0.2, 1.1)
    en = renderer.ground_offsets(pose)
    e, n, agl = renderer.camera_en_agl(pose)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(en), 200)
    back = ground_offsets_to_pixels(renderer.cam, en[idx] - [e, n], pose.roll_rad, pose.pitch_rad, pose.yaw_rad, agl)
    uv = np.stack([idx % 640 + 0.5, idx // 640 + 0.5], axis=1)
    assert np.abs(back - uv).max() < 1e-6


def test_survey_frames_see_every_patch_at_its_predicted_place(
    scenario: Scenario, survey: Timeline, renderer: FieldRenderer
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


def _rust_fraction(img: np.ndarray) -> float:
    r, g = img[..., 0].astype(int), img[..., 1].astype(int)
    return float(np.mean(r > g + 10))


def _mildew_fraction(img: np.ndarray) -> float:
    return float(np.mean(img.min(axis=2) > 150))


def test_a_tile_over_a_patch_looks_like_a_training_image(scenario: Scenario, renderer: FieldRenderer) -> None:
    """Lesion cover in a classifier tile matches the training images of that class (same scale)."""
    rows, cols = scenario.camera.tile_rows, scenario.camera.tile_cols
    th, tw = 480 // rows, 640 // cols

    def centre_tile(east: float, north: float) -> np.ndarray:
        img = renderer.render(pose_at_en(scenario, east, north, scenario.flight.altitude_m))
        # the tile whose centre is nearest the image centre, shifted to be centred on it
        return img[240 - th // 2 : 240 + th // 2, 320 - tw // 2 : 320 + tw // 2]

    rng = np.random.default_rng(1)
    train_rust = np.mean([_rust_fraction(leaf_image("rust", 224, rng)) for _ in range(6)])
    train_mildew = np.mean([_mildew_fraction(leaf_image("powdery_mildew", 224, rng)) for _ in range(6)])
    train_healthy = np.mean([_rust_fraction(leaf_image("healthy", 224, rng)) for _ in range(3)])
    rust_tile = centre_tile(scenario.patches[0].east_m, scenario.patches[0].north_m)
    mildew_tile = centre_tile(scenario.patches[1].east_m, scenario.patches[1].north_m)
    healthy_tile = centre_tile(60.0, 20.0)
    assert 0.5 * train_rust < _rust_fraction(rust_tile) < 2.0 * train_rust
    assert 0.5 * train_mildew < _mildew_fraction(mildew_tile) < 2.0 * train_mildew
    assert _rust_fraction(healthy_tile) <= train_healthy + 0.01


def test_sky_and_outside_field_are_marked(scenario: Scenario, renderer: FieldRenderer) -> None:
    pose = pose_at_en(scenario, 60.0, 40.0, 30.0, 0.0, math.radians(70), 0.0)  # pitched up: horizon in view
    gm = renderer.ground_map(pose)
    assert gm.sky.any() and not gm.sky.all()
    labels = renderer.render_labels(pose, gm)
    assert (labels[gm.sky] == LABEL_OUTSIDE).all()


def test_ground_outside_the_field_is_textured_soil(scenario: Scenario, renderer: FieldRenderer) -> None:
    pose = pose_at_en(scenario, -20.0, 40.0, 30.0, 0.0, 0.0, 0.0)  # over the west headland
    rgb = renderer.render(pose).astype(float)
    outside = renderer.render_labels(pose) == LABEL_OUTSIDE
    assert outside.mean() > 0.3
    soil = rgb[outside]
    assert soil[:, 0].mean() > soil[:, 1].mean() > soil[:, 2].mean()  # brown
    assert soil.std(axis=0).min() > 3.0  # the generator's texture, not a flat colour
    # mirror tiling: no seam, neighbouring rows differ no more than the texture itself does
    rows = rgb.mean(axis=2)
    cols_out = outside.all(axis=0)
    steps = np.abs(np.diff(rows[:, cols_out], axis=0)).mean(axis=1)
    assert steps.max() < 6 * np.median(steps) + 2


def test_render_rate_on_one_core(scenario: Scenario, renderer: FieldRenderer, survey: Timeline) -> None:
    """>= 10 frames/s at 640x480 measured in this process's CPU time with OpenCV on one thread."""
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        renderer.render(survey.pose_at(50.0))
        n = 20
        c0 = time.process_time()
        for k in range(n):
            renderer.render(survey.pose_at(50.0 + k))
        cpu = time.process_time() - c0
    finally:
        cv2.setNumThreads(threads)
    fps = n / cpu
    print(f"render: {fps:.1f} frames per CPU second at 640x480")
    assert fps >= 10


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
