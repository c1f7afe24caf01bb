"""Scenario files: a valid example loads; bad files give one clear message and exit 2."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from flight_sim.scenario import (
    Scenario,
    load_scenario,
    random_scenario,
    scenario_from_dict,
    scenario_to_yaml,
    texture_scale_px,
    tile_ground_size_m,
)
from tests.configtests import del_path, expect_config_error, run_cli, set_path, write_yaml
from tests.flight_sim.conftest import DEFAULT_SCENARIO


def example() -> dict:
    return yaml.safe_load(DEFAULT_SCENARIO.read_text())


def test_example_loads() -> None:
    s = load_scenario(DEFAULT_SCENARIO)
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


def test_field_raster_too_big(tmp_path: Path) -> None:
    p = write_yaml(tmp_path, set_path(example(), "field.m_per_px", 0.005))
    expect_config_error(load_scenario, p, "field.m_per_px", "Mpx", "raise m_per_px")


def test_tile_scale_follows_altitude_lens_and_tiling() -> None:
    s = load_scenario(DEFAULT_SCENARIO)
    w, h = tile_ground_size_m(s)
    footprint_w = 2 * 30 * math.tan(math.radians(60) / 2)
    assert w == pytest.approx(footprint_w / 4) and h == pytest.approx(footprint_w * 0.75 / 3)
    assert texture_scale_px(s) == pytest.approx(w / 0.05)
    twice = s.model_copy(update={"flight": s.flight.model_copy(update={"altitude_m": 60})})
    assert texture_scale_px(twice) == pytest.approx(2 * texture_scale_px(s))


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


def test_cli_gives_exit_2_and_no_traceback(tmp_path: Path) -> None:
    data = example()
    data["patches"][0]["class"] = "blight"
    p = write_yaml(tmp_path, data)
    out = run_cli(["-m", "flight_sim", "validate-config", str(p)])
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "patches[0].class" in out.stderr and "'blight'" in out.stderr and "powdery_mildew" in out.stderr
    ok = run_cli(["-m", "flight_sim", "validate-config", str(DEFAULT_SCENARIO)])
    assert ok.returncode == 0, ok.stderr
    assert '"class": "rust"' in ok.stdout


def test_field_too_coarse_for_lesions(tmp_path: Path) -> None:
    p = write_yaml(tmp_path, set_path(example(), "field.m_per_px", 0.5))
    expect_config_error(load_scenario, p, "field.m_per_px", "too coarse", "lower m_per_px")


def test_sparse_lines_are_noted() -> None:
    from flight_sim.survey import survey_timeline

    s = load_scenario(DEFAULT_SCENARIO)
    sparse = s.model_copy(update={"flight": s.flight.model_copy(update={"line_spacing_m": 50.0})})
    assert any("never seen" in n for n in survey_timeline(sparse).notes)
    assert not any("never seen" in n for n in survey_timeline(s).notes)
