"""flight_sim flies a QGroundControl .plan: the reader, the scenario's `flight.plan`, and a timeline through the
plan's waypoints."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from flight_sim.planfile import plan_from_data, read_plan
from flight_sim.scenario import load_scenario, plan_scenario
from flight_sim.survey import plan_waypoints_enu, survey_timeline
from payload.errors import ConfigError
from payload.geo.frames import LocalFrame, geodetic_to_enu
from payload.plan.command import PlanArgs, make_plan
from payload.plan.qgc import plan_document

ROOT = Path(__file__).resolve().parents[2]
ORIGIN = (-35.363261, 149.165230)


@pytest.fixture()
def planned(tmp_path: Path) -> Path:
    """A `payload plan` output folder over a 60 x 40 m field (survey.plan, scenario.yaml)."""
    frame = LocalFrame(*ORIGIN)
    lat, lon, _ = frame.to_geodetic(np.array([0.0, 60.0, 60.0, 0.0, 0.0]), np.array([0.0, 0.0, 40.0, 40.0, 0.0]), 0.0)
    field = tmp_path / "field.geojson"
    field.write_text(json.dumps({"type": "Polygon", "coordinates": [[[float(b), float(a)] for a, b in
                                                                      zip(lat, lon, strict=True)]]}), "utf-8")
    cam = tmp_path / "camera.yaml"
    cam.write_text("preset: rpi_cam_v2\nwidth: 640\nheight: 480\nmax_fps: 5\n", "utf-8")
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "model_card.json").write_text(json.dumps({
        "format_version": 1, "classes": ["healthy", "rust"], "healthy_class": "healthy", "disease_classes": ["rust"],
        "input": {"height": 224, "width": 224, "channels": 3, "dtype": "uint8"}, "thresholds": {"rust": 0.5},
        "working_gsd_mm": 40.0}), "utf-8")
    make_plan(PlanArgs(str(field), str(cam), str(bundle), str(tmp_path / "out"), model_cost="resnet50",
                       home_alt_m=584.0))
    return tmp_path / "out"


def test_the_timeline_passes_through_every_waypoint(planned: Path) -> None:
    s = load_scenario(planned / "scenario.yaml")
    plan = read_plan(planned / "survey.plan")
    tl = survey_timeline(s)
    tr = tl.truth
    e, n, u = geodetic_to_enu(tr.lat, tr.lon, tr.alt, s.origin.lat, s.origin.lon, s.origin.alt)
    wps = plan_waypoints_enu(s)
    assert len(wps) == len(plan.waypoints) >= 4
    for a, b in wps:
        k = int(np.argmin(np.hypot(e - a, n - b)))
        assert np.hypot(e[k] - a, n[k] - b) < 0.1  # the copter stops on each waypoint
        assert u[k] == pytest.approx(plan.altitude_m, abs=0.05)
    # ... in the plan's order
    order = [int(np.argmin(np.hypot(e - a, n - b))) for a, b in wps]
    assert order == sorted(order)
    assert any("plan" in note for note in tl.notes)


def test_a_scenario_disagreeing_with_its_plan_is_refused(planned: Path) -> None:
    data = yaml.safe_load((planned / "scenario.yaml").read_text("utf-8"))
    data["flight"]["altitude_m"] += 3.0
    bad = planned / "bad.yaml"
    bad.write_text(yaml.safe_dump(data), "utf-8")
    with pytest.raises(ConfigError, match="flight.altitude_m"):
        load_scenario(bad)
    data["flight"]["plan"] = "missing.plan"
    bad.write_text(yaml.safe_dump(data), "utf-8")
    with pytest.raises(ConfigError, match="not found"):
        load_scenario(bad)


def test_survey_plan_flies_a_plan_over_another_scenario(planned: Path) -> None:
    s = plan_scenario(load_scenario(ROOT / "configs/scenarios/wheat_30m.yaml"), planned / "survey.plan")
    plan = read_plan(planned / "survey.plan")
    assert s.flight.altitude_m == pytest.approx(plan.altitude_m, abs=1e-3)
    assert s.flight.speed_mps == plan.speed_mps
    assert len(plan_waypoints_enu(s)) == len(plan.waypoints)


def test_the_reader_refuses_what_it_cannot_fly() -> None:
    good = plan_document((ORIGIN[0], ORIGIN[1], 0.0), [[(ORIGIN[0] + 1e-4, ORIGIN[1]), (ORIGIN[0] + 1e-4,
                                                                                          ORIGIN[1] + 1e-3)]],
                         20.0, 5.0, 3.0)
    m = plan_from_data(good)
    assert (len(m.waypoints), m.altitude_m, m.speed_mps, m.trigger_m) == (2, 20.0, 5.0, 3.0)
    with pytest.raises(ConfigError, match="fileType"):
        plan_from_data({"fileType": "Mission"})
    complex_item = json.loads(json.dumps(good))
    complex_item["mission"]["items"].insert(2, {"type": "ComplexItem", "complexItemType": "survey"})
    with pytest.raises(ConfigError, match="SimpleItems"):
        plan_from_data(complex_item)
    amsl = json.loads(json.dumps(good))
    for it in amsl["mission"]["items"]:
        if it["command"] == 16:
            it["frame"] = 0
    with pytest.raises(ConfigError, match="frame"):
        plan_from_data(amsl)


def test_the_command_line_flies_a_plan(planned: Path) -> None:
    from flight_sim.cli import _scenario, build_parser

    plan = read_plan(planned / "survey.plan")
    for cmd in (["survey"], ["render", "--out", str(planned / "frames")]):
        args = build_parser().parse_args([*cmd, "--scenario", str(ROOT / "configs/scenarios/wheat_30m.yaml"),
                                          "--plan", str(planned / "survey.plan")])
        s = _scenario(args)
        assert s.flight.plan == str((planned / "survey.plan").resolve())
        assert s.flight.altitude_m == pytest.approx(plan.altitude_m, abs=1e-3)
