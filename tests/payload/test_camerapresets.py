"""Cameras by intrinsics: every preset is sourced and self-consistent, and the payload's config takes them."""

from __future__ import annotations

import math
import typing
from pathlib import Path

import numpy as np
import pytest
import yaml

from payload.config import CameraPresetName, CameraSection, load_payload_config
from payload.geo.camera import CameraModel
from payload.geo.camerapresets import PRESETS, camera_from_intrinsics, gsd_m, intrinsics_hfov_deg, preset
from payload.geo.detections import camera_for
from tests.configtests import expect_config_error, set_path, write_yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "configs" / "payload.yaml"


def test_every_preset_names_its_source_and_is_in_the_docs() -> None:
    docs = (ROOT / "docs" / "WORLD.md").read_text(encoding="utf-8") if (ROOT / "docs" / "WORLD.md").is_file() else ""
    for p in PRESETS.values():
        assert p.source.strip() and "http" in p.source, f"{p.name} has no source"
        assert p.sensor_width_mm > p.sensor_height_mm > 0 and p.focal_length_mm > 0
        # the native resolution's pixel pitch is square within 3 % (a typo in a size shows here)
        assert p.sensor_width_mm / p.native_width == pytest.approx(p.sensor_height_mm / p.native_height, rel=0.03)
        if docs:
            assert p.name in docs, f"docs/WORLD.md's camera table lacks {p.name}"


def test_config_preset_names_are_the_presets() -> None:
    assert set(typing.get_args(CameraPresetName)) == set(PRESETS)


def test_pi_camera_v2_is_the_historic_62_2_degrees() -> None:
    # the datasheet's rounded 3.68 mm and 3.04 mm give 62.37 deg against its stated 62.2 deg
    assert preset("rpi_cam_v2").hfov_deg == pytest.approx(62.2, abs=0.25)
    a = preset("rpi_cam_v2").camera(640, 480)
    b = CameraModel.from_hfov(640, 480, 62.2)
    assert a.K[0, 0] == pytest.approx(b.K[0, 0], rel=5e-3)


def test_gsd_follows_the_textbook_formula() -> None:
    """GSD = sensor width x height / (focal length x image width)."""
    for p in PRESETS.values():
        h = 30.0
        width = 640
        height = min(480, int(width * p.sensor_height_mm / p.sensor_width_mm))
        cam = p.camera(width, height)
        want = (p.sensor_width_mm / 1000) * h / ((p.focal_length_mm / 1000) * width)
        assert gsd_m(cam, h) == pytest.approx(want, rel=1e-9)


def test_a_taller_output_than_the_sensor_is_an_error() -> None:
    v3 = preset("rpi_cam_v3")  # 16:9
    v3.camera(640, 360)
    with pytest.raises(ValueError, match="at most 36"):
        v3.camera(640, 480)
    with pytest.raises(KeyError, match="known: rpi_cam_v2"):
        preset("gopro")
    with pytest.raises(ValueError):
        camera_from_intrinsics(640, 480, 3.68, 2.76, 0.0)
    assert intrinsics_hfov_deg(2.0, 1.0) == pytest.approx(90.0)


def test_payload_config_takes_a_preset_or_intrinsics(tmp_path: Path) -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    cfg = load_payload_config(write_yaml(tmp_path, set_path(data, "camera.preset", "rpi_hq_6mm")))
    cam = camera_for(cfg.camera, 640, 480)
    assert cam.hfov_deg == pytest.approx(preset("rpi_hq_6mm").hfov_deg)
    d2 = set_path(set_path(set_path(data, "camera.sensor_width_mm", 3.68), "camera.sensor_height_mm", 2.76),
                  "camera.focal_length_mm", 3.04)
    cfg2 = load_payload_config(write_yaml(tmp_path, set_path(d2, "camera.exposure_s", 0.001), "i.yaml"))
    assert np.allclose(camera_for(cfg2.camera, 640, 480).K, preset("rpi_cam_v2").camera(640, 480).K)
    assert cfg2.camera.exposure_s == 0.001
    # the historic hfov path is untouched
    assert camera_for(CameraSection(), 640, 480).hfov_deg == pytest.approx(62.2)
    assert math.isclose(camera_for(CameraSection(hfov_deg=60.0), 640, 480).hfov_deg, 60.0)


def test_payload_config_errors_name_the_field_and_the_fix(tmp_path: Path) -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    expect_config_error(load_payload_config, write_yaml(tmp_path, set_path(data, "camera.preset", "gopro")),
                        "camera.preset", "rpi_cam_v2")
    expect_config_error(load_payload_config, write_yaml(tmp_path, set_path(data, "camera.focal_length_mm", 3.0)),
                        "camera", "add sensor_height_mm, sensor_width_mm")
    both = set_path(set_path(data, "camera.preset", "rpi_cam_v2"), "camera.K", [[500, 0, 320], [0, 500, 240],
                                                                               [0, 0, 1]])
    expect_config_error(load_payload_config, write_yaml(tmp_path, both), "camera", "keep one of them")
    expect_config_error(load_payload_config, write_yaml(tmp_path, set_path(data, "camera.focal_length_mm", -1)),
                        "camera.focal_length_mm", "greater than 0")
