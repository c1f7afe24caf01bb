"""Scenario files: a valid example loads; bad files give one clear message and exit 2."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from flight_sim.scenario import (
    Scenario,
    altitude_for_gsd,
    load_scenario,
    model_input_gsd_mm,
    random_scenario,
    scenario_from_dict,
    scenario_to_yaml,
    tile_ground_size_m,
)
from payload.geo.camerapresets import PRESETS
from tests.configtests import del_path, expect_config_error, run_cli, set_path, write_yaml
from tests.flight_sim.conftest import WHEAT_30M


def example() -> dict:
    return yaml.safe_load(WHEAT_30M.read_text())


def test_example_loads() -> None:
    s = load_scenario(WHEAT_30M)
    assert isinstance(s, Scenario)
    assert [p.cls for p in s.patches] == ["rust", "powdery_mildew", "rust"]
    assert s.camera.tile_rows == 3 and s.camera.tile_cols == 4


def test_wrong_type_names_file_field_value_and_rule(tmp_path: Path) -> None:
    p = write_yaml(tmp_path, set_path(example(), "flight.altitude_m", "thirty"))
    expect_config_error(load_scenario, p, "flight.altitude_m", "'thirty'", "number")


def test_unknown_key(tmp_path: Path) -> None:
    p = write_yaml(tmp_path, set_path(example(), "camera.hfov", 60))
    expect_config_error(load_scenario, p, "camera.hfov", "unknown key")


def test_missing_required_field(tmp_path: Path) -> None:
    p = write_yaml(tmp_path, del_path(example(), "flight.line_spacing_m"))
    expect_config_error(load_scenario, p, "flight.line_spacing_m", "required")


def test_unknown_patch_class(tmp_path: Path) -> None:
    data = example()
    data["patches"][1]["class"] = "blight"
    p = write_yaml(tmp_path, data)
    expect_config_error(load_scenario, p, "patches[1].class", "'blight'", "'rust'", "'powdery_mildew'")


def test_patch_outside_the_field(tmp_path: Path) -> None:
    data = example()
    data["patches"][2]["east_m"] = 118  # radius 5 reaches 3 m past the 120 m edge
    p = write_yaml(tmp_path, data)
    expect_config_error(load_scenario, p, "patches[2]", "outside the field", "east 0..120", "move it inside")


@pytest.mark.parametrize(("key", "fix"), [("field.m_per_px", "delete field.m_per_px"),
                                          ("camera.hfov_deg", "preset"),
                                          ("terrain.paint_at_local_height", "delete it")])
def test_painted_world_keys_are_rejected_with_their_fix(tmp_path: Path, key: str, fix: str) -> None:
    """An old file's raster and texture-scale keys meant something: say what to do, never ignore them."""
    data = example()
    if key.startswith("terrain"):
        data["terrain"] = {}
    p = write_yaml(tmp_path, set_path(data, key, 0.05))
    expect_config_error(load_scenario, p, key.split(".")[0], key.split(".")[1], "no longer a scenario key", fix)


def test_camera_by_preset_or_intrinsics(tmp_path: Path) -> None:
    s = load_scenario(WHEAT_30M)
    assert s.camera.preset == "rpi_cam_v2" and s.camera.hfov_deg == pytest.approx(PRESETS["rpi_cam_v2"].hfov_deg)
    d = example()
    d["camera"] = {k: v for k, v in d["camera"].items() if k != "preset"}
    d["camera"].update(sensor_width_mm=6.287, sensor_height_mm=4.712, focal_length_mm=6.0)
    hq = scenario_from_dict(d)
    assert hq.camera.hfov_deg == pytest.approx(PRESETS["rpi_hq_6mm"].hfov_deg)
    d["camera"]["focal_length_mm"] = None
    expect_config_error(load_scenario, write_yaml(tmp_path, d, "half.yaml"), "camera", "together")
    tall = set_path(example(), "camera.preset", "rpi_cam_v3")  # 16:9 sensor, 640x480 output
    expect_config_error(load_scenario, write_yaml(tmp_path, tall), "camera.height", "at most 36")


def test_patch_stage_defaults_to_moderate_and_is_checked(tmp_path: Path) -> None:
    data = example()
    del data["patches"][0]["stage"]
    assert scenario_from_dict(data).patches[0].stage == "moderate"
    data["patches"][0]["stage"] = "severe"
    expect_config_error(load_scenario, write_yaml(tmp_path, data), "patches[0].stage", "'early'", "'late'")


def test_tile_scale_follows_altitude_lens_and_tiling() -> None:
    s = load_scenario(WHEAT_30M)
    w, h = tile_ground_size_m(s)
    p = PRESETS["rpi_cam_v2"]
    footprint_w = 30 * p.sensor_width_mm / p.focal_length_mm  # GSD x width = h x sensor / focal
    assert w == pytest.approx(footprint_w / 4) and h == pytest.approx(footprint_w * 0.75 / 3)
    assert model_input_gsd_mm(s, 224) == pytest.approx(1000 * max(w, h) / 224)
    twice = s.model_copy(update={"flight": s.flight.model_copy(update={"altitude_m": 60})})
    assert model_input_gsd_mm(twice) == pytest.approx(2 * model_input_gsd_mm(s))
    agl = altitude_for_gsd(s.camera, model_input_gsd_mm(s))
    assert agl == pytest.approx(30.0)


def test_random_scenario_from_a_seed() -> None:
    a, b = random_scenario(11), random_scenario(11)
    assert a == b and random_scenario(12) != a
    assert 2 <= len(a.patches) <= 6
    for i, p in enumerate(a.patches):
        assert p.radius_m <= p.east_m <= a.field.width_m - p.radius_m
        assert p.radius_m <= p.north_m <= a.field.height_m - p.radius_m
        for q in a.patches[i + 1 :]:
            assert math.hypot(p.east_m - q.east_m, p.north_m - q.north_m) > p.radius_m + q.radius_m
    assert scenario_from_dict(yaml.safe_load(scenario_to_yaml(a))) == a
    assert {p.stage for s in map(random_scenario, range(12)) for p in s.patches} == {"early", "moderate", "late"}


@pytest.mark.parametrize("target", [10.0, 20.0, 40.0])
def test_random_scenario_flies_at_the_target_model_input_resolution(target: float) -> None:
    for seed in range(5):
        s = random_scenario(seed, target_gsd_mm=target)
        if 4.0 < s.flight.altitude_m < 120.0:  # not clipped to the altitude limits
            assert model_input_gsd_mm(s) == pytest.approx(target, rel=0.01)
        gsd = s.flight.altitude_m / float(s.camera.model().K[0, 0])
        assert s.flight.speed_mps * s.camera.exposure_s / gsd <= 0.5 + 1e-9  # blur under half a pixel


def test_random_scenario_for_what_a_bundle_sees() -> None:
    # a card's field trial: late disease at 32 / 24 mm per model pixel, moderate mildew at 16, rust never
    seen = {"rust": {"early": None, "moderate": None, "late": 32.0},
            "powdery_mildew": {"early": None, "moderate": 16.0, "late": 24.0}}
    allowed = {("rust", "late"): 32.0, ("powdery_mildew", "moderate"): 16.0, ("powdery_mildew", "late"): 24.0}
    for seed in range(8):
        s = random_scenario(seed, width_m=80, height_m=60, input_px=96, seen=seen)
        pairs = {(p.cls, p.stage) for p in s.patches}
        assert pairs and pairs <= set(allowed), pairs  # only what the bundle sees
        assert s.camera.tile_cols == 5
        if 4.0 < s.flight.altitude_m < 120.0:  # flown for the finest resolution any of its patches needs
            assert model_input_gsd_mm(s, 96) == pytest.approx(min(allowed[p] for p in pairs), rel=0.01)
    assert random_scenario(3, seen=seen) == random_scenario(3, seen=seen)
    with pytest.raises(ValueError, match="sees no disease"):
        random_scenario(3, seen={"rust": {"late": None}})


def test_cli_gives_exit_2_and_no_traceback(tmp_path: Path) -> None:
    data = example()
    data["patches"][0]["class"] = "blight"
    p = write_yaml(tmp_path, data)
    out = run_cli(["-m", "flight_sim", "validate-config", str(p)])
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "patches[0].class" in out.stderr and "'blight'" in out.stderr and "powdery_mildew" in out.stderr
    ok = run_cli(["-m", "flight_sim", "validate-config", str(WHEAT_30M)])
    assert ok.returncode == 0, ok.stderr
    assert '"class": "rust"' in ok.stdout


def test_sparse_lines_are_noted() -> None:
    from flight_sim.survey import survey_timeline

    s = load_scenario(WHEAT_30M)
    sparse = s.model_copy(update={"flight": s.flight.model_copy(update={"line_spacing_m": 50.0})})
    assert any("never seen" in n for n in survey_timeline(sparse).notes)
    assert not any("never seen" in n for n in survey_timeline(s).notes)


def test_the_default_scenario_flies_where_late_disease_is_seen() -> None:
    # README "The world at real scale": late rust and mildew are seen at 16-32 mm per model pixel by the quick
    # bundle (96 px); moderate rust is not seen from any drone altitude, so the default's patches are late
    s = load_scenario(WHEAT_30M.parent / "default.yaml")
    assert {p.stage for p in s.patches} == {"late"}
    assert 16.0 <= model_input_gsd_mm(s, 96) <= 32.0
    # the old default flew where a model pixel is ~94 mm: nothing there is seen
    assert model_input_gsd_mm(load_scenario(WHEAT_30M), 96) > 64.0


def test_scouting_flights_lock_the_white_balance_the_field_trial_locks() -> None:
    # an auto balance takes a frame filled by late rust for warm light and greys it (flight_sim/camerafx.py);
    # the default and the random flights drawn for a bundle lock it where tools.detectability's frames do
    from flight_sim.camerafx import AWB_DAYLIGHT_K
    from flight_sim.scenario import LOCKED_WHITE_BALANCE_K

    assert LOCKED_WHITE_BALANCE_K == AWB_DAYLIGHT_K
    assert load_scenario(WHEAT_30M.parent / "default.yaml").camera.white_balance_k == AWB_DAYLIGHT_K
    seen = {"rust": {"late": 32.0}}
    assert random_scenario(5, seen=seen).camera.white_balance_k == AWB_DAYLIGHT_K
    assert random_scenario(5).camera.white_balance_k is None  # other random fields keep the auto balance
