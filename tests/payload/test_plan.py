"""`payload plan` (payload/plan/): altitude, grid, speed and frame rate against hand-worked numbers, the .plan's
QGroundControl structure, the scenario the simulator loads, and the CLI's errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from shapely.geometry import Point, Polygon

from payload.cli import _main
from payload.cliutil import run_cli
from payload.errors import UserError
from payload.geo.frames import LocalFrame
from payload.plan import chip
from payload.plan.command import PlanArgs, make_plan
from payload.plan.field import field_from_geojson, longest_edge_direction, survey_lines
from payload.plan.planner import CameraGeometry, PlanLimits, plan_survey
from tools.detectability import altitude_for_gsd_m

ORIGIN = (-35.363261, 149.165230)
V2 = CameraGeometry(3.68, 2.76, 3.04, 640, 480, 5.0, 0.001)  # rpi_cam_v2 at 640x480
HQ = CameraGeometry(6.287, 4.712, 6.0, 2028, 1520, 5.0, 0.001)  # rpi_hq_6mm at 2028x1520 (binned)


def _ring(frame: LocalFrame, pts: list[tuple[float, float]]) -> list[list[float]]:
    lat, lon, _ = frame.to_geodetic(np.array([p[0] for p in pts]), np.array([p[1] for p in pts]), 0.0)
    ring = [[float(b), float(a)] for a, b in zip(lat, lon, strict=True)]
    return ring + [ring[0]]


def _field_file(tmp_path: Path, pts: list[tuple[float, float]]) -> Path:
    geo = {"type": "Feature", "properties": {},
           "geometry": {"type": "Polygon", "coordinates": [_ring(LocalFrame(*ORIGIN), pts)]}}
    p = tmp_path / "field.geojson"
    p.write_text(json.dumps(geo), encoding="utf-8")
    return p


def _bundle(tmp_path: Path, working_gsd_mm: float | None = 16.0, latency_ms: float | None = None) -> Path:
    card = {"format_version": 1, "classes": ["healthy", "powdery_mildew", "rust"], "healthy_class": "healthy",
            "disease_classes": ["powdery_mildew", "rust"],
            "input": {"height": 224, "width": 224, "channels": 3, "dtype": "uint8"},
            "thresholds": {"powdery_mildew": 0.5, "rust": 0.5}, "working_gsd_mm": working_gsd_mm}
    if latency_ms is not None:
        card["edgetpu"] = {"latency_ms": latency_ms}
    d = tmp_path / "bundle"
    d.mkdir(exist_ok=True)
    (d / "model_card.json").write_text(json.dumps(card), encoding="utf-8")
    return d


def _camera(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "camera.yaml"
    p.write_text(text, encoding="utf-8")
    return p


# -- altitude and grid, by hand ---------------------------------------------------------------------------

def test_altitude_of_the_pi_camera_by_hand() -> None:
    # 640 px holds 640 // 224 = 2 columns; rows = ceil(480 * 2 / 640) = 2; tile 320 px wide.
    # fx = 640 * 3.04 / 3.68 = 528.70 px; h = 0.016 m * 224 / 320 * 528.70 = 5.921 m
    s = plan_survey(16.0, 224, V2, 1000.0)
    assert (s.tile_rows, s.tile_cols) == (2, 2)
    assert s.altitude_m == pytest.approx(5.921, abs=1e-3)
    assert s.altitude_m == pytest.approx(altitude_for_gsd_m(16.0, 3.04, 3.68, 224, 2), abs=1e-3)
    assert s.model_gsd_mm == pytest.approx(16.0)


def test_altitude_of_the_hq_camera_by_hand() -> None:
    # 2028 // 224 = 9 columns; rows = ceil(1520 * 9 / 2028) = 7; the tile's longer side 2028 / 9 = 225.3 px.
    # h = 0.016 * 6.0 * 9 * 224 / 6.287 = 30.784 m
    s = plan_survey(16.0, 224, HQ, 1000.0)
    assert (s.tile_rows, s.tile_cols, s.tiles_per_frame) == (7, 9, 63)
    assert s.altitude_m == pytest.approx(30.784, abs=1e-3)
    # footprint: frame GSD 30.784 / (2028 * 6 / 6.287) = 15.905 mm/px -> 32.26 m across, 24.18 m along
    assert s.footprint_across_m == pytest.approx(32.26, abs=0.01)
    assert s.footprint_along_m == pytest.approx(24.18, abs=0.01)
    assert s.line_spacing_m == pytest.approx(32.26 * 0.7, abs=0.01)


def test_a_ceiling_takes_columns_away() -> None:
    s = plan_survey(16.0, 224, HQ, 1000.0, PlanLimits(max_altitude_m=20.0))
    # 7 columns, ceil(1520 * 7 / 2028) = 6 rows, 289.7 px wide: 0.016 * 224 / 289.7 * 1935.4 = 23.9 m;
    # 6 columns, 5 rows, 338 px: 20.5 m; 5 columns, 4 rows, 405.6 px: 30.784 * 5 / 9 = 17.10 m, under the ceiling
    assert (s.tile_rows, s.tile_cols) == (4, 5)
    assert s.altitude_m == pytest.approx(17.10, abs=0.01)
    assert s.notes


# -- speed: chip or overlap -------------------------------------------------------------------------------

def test_speed_is_the_chips_when_tiles_would_outrun_it() -> None:
    # 63 tiles a frame, 20 tiles/s: 0.317 frames/s; a frame advances 24.18 * 0.25 = 6.045 m -> 1.92 m/s
    s = plan_survey(16.0, 224, HQ, 20.0)
    assert s.limited_by == "chip throughput"
    assert s.fps == pytest.approx(20.0 / 63, abs=1e-3)
    assert s.speed_mps == pytest.approx(20.0 / 63 * 6.045, abs=0.01)
    assert s.tiles_offered_per_s <= 20.0
    assert s.tiles_classified_per_s == pytest.approx(s.tiles_offered_per_s)
    # the physical bound: the whole swath (32.26 m) at the chip's speed
    assert s.physical_bound_ha_per_h == pytest.approx(32.26 * 20.0 / 63 * 6.045 * 0.36, rel=1e-3)


def test_speed_is_the_overlaps_when_the_chip_keeps_up() -> None:
    fast_shutter = CameraGeometry(3.68, 2.76, 3.04, 640, 480, 5.0, 0.0002)
    # along-track footprint 5.921 / 528.70 * 480 = 5.376 m; advance 1.344 m; 5 frames/s -> 6.72 m/s
    s = plan_survey(16.0, 224, fast_shutter, 1000.0)
    assert s.limited_by == "camera frame rate (forward overlap)"
    assert s.fps == pytest.approx(5.0)
    assert s.speed_mps == pytest.approx(6.72, abs=0.01)
    assert s.tiles_offered_per_s == pytest.approx(20.0)
    assert s.looks_along >= 4.0 - 1e-6  # forward overlap 0.75 kept: at least four looks along track


def test_motion_blur_bounds_the_speed() -> None:
    s = plan_survey(16.0, 224, V2, 1000.0)  # 1/1000 s: 0.5 px of 11.2 mm is 5.6 m/s, below the overlap's 6.72
    assert s.limited_by == "motion blur"
    assert s.speed_mps == pytest.approx(5.6, abs=0.01)


def test_more_tpus_raise_hectares_per_hour_until_overlap_limits() -> None:
    cam = CameraGeometry(6.287, 4.712, 6.0, 2028, 1520, 1.0, 0.0005)
    one = chip.device_models()["usb3"]
    per_tpu = 1.0 / chip.invoke_s(chip.resnet50_cost(224, 224), one)
    assert per_tpu == pytest.approx(23.9, abs=0.2)  # 4.05 G MACs at 441 G MAC/s + 18.2 MB at 558 MB/s: 41.9 ms
    runs = [plan_survey(16.0, 224, cam, n * per_tpu) for n in (1, 2, 3, 4)]
    ha = [r.ha_per_h_lines for r in runs]
    assert ha[0] < ha[1] < ha[2]
    assert [r.limited_by for r in runs[:2]] == ["chip throughput"] * 2
    assert runs[2].limited_by == runs[3].limited_by == "camera frame rate (forward overlap)"  # 1.14 fps > 1.0
    assert ha[3] == pytest.approx(ha[2])


# -- field geometry ---------------------------------------------------------------------------------------

def test_lines_run_along_the_longest_edge_and_stay_inside_a_concave_field() -> None:
    th = math.radians(30)
    u = np.array([math.cos(th), math.sin(th)])
    v = np.array([-u[1], u[0]])
    local = [(0, 0), (200, 0), (200, 60), (80, 60), (80, 120), (0, 120)]  # an L, longest edge 200 m
    pts = [tuple(float(x) for x in a * u + b * v + np.array([300.0, 300.0])) for a, b in local]
    poly = Polygon(pts)
    assert np.allclose(np.abs(longest_edge_direction(poly)), np.abs(u))
    lines = survey_lines(poly, 25.0)
    assert len(lines) == 5  # 120 m across, ceil(120 / 25) = 5 lines 24 m apart
    grown = poly.buffer(0.01)
    for line in lines:
        for p in line:
            assert grown.contains(Point(p))
        for a, b in zip(line[::2], line[1::2], strict=True):
            d = np.subtract(b, a)
            assert abs(float(np.dot(d, v))) < 1e-6  # along the longest edge
    assert sum(len(line) == 2 for line in lines) == 5  # one piece each, the line along the inner edge too


def test_a_field_that_is_not_a_polygon_is_refused() -> None:
    with pytest.raises(UserError, match="not a polygon"):
        field_from_geojson({"type": "LineString", "coordinates": [[149.0, -35.0], [149.1, -35.0]]}, "f.geojson")
    with pytest.raises(UserError, match="exactly one polygon"):
        field_from_geojson({"type": "FeatureCollection", "features": []}, "f.geojson")


# -- the files --------------------------------------------------------------------------------------------

def _plan(tmp_path: Path, bundle: Path | None = None, **kw: object) -> dict:
    field = _field_file(tmp_path, [(0, 0), (120, 0), (120, 80), (0, 80)])
    cam = _camera(tmp_path, "preset: rpi_cam_v2\nwidth: 640\nheight: 480\nmax_fps: 5\n")
    args = PlanArgs(str(field), str(cam), str(bundle or _bundle(tmp_path)), str(tmp_path / "out"),
                    model_cost="resnet50")
    return make_plan(PlanArgs(**{**args.__dict__, **kw}))


def test_the_plan_file_has_qgroundcontrols_structure_and_waypoints_in_the_field(tmp_path: Path) -> None:
    summary = _plan(tmp_path)
    doc = json.loads((tmp_path / "out" / "survey.plan").read_text(encoding="utf-8"))
    assert (doc["fileType"], doc["version"], doc["groundStation"]) == ("Plan", 1, "QGroundControl")
    assert doc["geoFence"] == {"circles": [], "polygons": [], "version": 2}
    assert doc["rallyPoints"] == {"points": [], "version": 2}
    m = doc["mission"]
    assert m["version"] == 2 and len(m["plannedHomePosition"]) == 3
    assert m["plannedHomePosition"][:2] == pytest.approx(list(ORIGIN))
    items = m["items"]
    assert all(it["type"] == "SimpleItem" and len(it["params"]) == 7 for it in items)
    assert [it["doJumpId"] for it in items] == list(range(1, len(items) + 1))
    cmds = [it["command"] for it in items]
    assert cmds[0] == 22 and cmds[-1] == 20 and cmds[-2] == 206
    trig = [it for it in items if it["command"] == 206]
    assert trig[0]["params"][0] == pytest.approx(summary["frame_spacing_m"], abs=1e-3) and trig[-1]["params"][0] == 0
    assert cmds.index(206) > cmds.index(16)  # triggering starts at the first line's start
    wps = [it for it in items if it["command"] == 16]
    assert len(wps) == 2 * summary["field"]["lines"]
    assert all(it["frame"] == 3 and it["params"][6] == pytest.approx(summary["altitude_m"], abs=0.01) for it in wps)
    frame = LocalFrame(*ORIGIN)
    field = Polygon([(0, 0), (120, 0), (120, 80), (0, 80)]).buffer(0.05)
    for it in wps:
        e, n, _ = frame.to_enu(it["params"][4], it["params"][5], 0.0)
        assert field.contains(Point(float(e), float(n)))
    on_disk = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    assert on_disk["ha_per_h_lines"] == summary["ha_per_h_lines"] > 0
    assert on_disk["working_gsd_source"] == "the card's working_gsd_mm (build ladder), moderate stage"
    # the payload's config sections the plan assumes validate as the payload's own
    from payload.config import SchedulerSection, TilingSection
    from payload.settings.camera import CameraSection

    pc = on_disk["payload_config"]
    assert TilingSection(**pc["tiling"]).rows * TilingSection(**pc["tiling"]).cols == summary["tiles_per_frame"]
    assert SchedulerSection(**pc["scheduler"]).max_rate_hz == pytest.approx(summary["fps"])
    assert CameraSection(**pc["camera"]).focal_length_mm == pytest.approx(3.04)


def test_the_scenario_loads_in_the_simulator_and_matches_the_plan(tmp_path: Path) -> None:
    from flight_sim.scenario import load_scenario, tile_ground_size_m

    summary = _plan(tmp_path)
    s = load_scenario(tmp_path / "out" / "scenario.yaml")
    assert s.flight.plan == str((tmp_path / "out" / "survey.plan").resolve())
    assert (s.camera.tile_rows, s.camera.tile_cols) == (summary["tile_rows"], summary["tile_cols"])
    assert s.camera.fps == pytest.approx(summary["fps"])
    w, h = tile_ground_size_m(s)
    assert 1000.0 * max(w, h) / 224 == pytest.approx(16.0, abs=0.01)  # the simulator sees the card's resolution


def test_the_cards_latency_wins_and_tpus_multiply_it(tmp_path: Path) -> None:
    summary = _plan(tmp_path, _bundle(tmp_path, latency_ms=50.0), tpus=3)
    assert summary["chip"]["tiles_per_s"] == pytest.approx(60.0)
    assert "latency_ms" in summary["chip"]["source"]


# -- the CLI's errors -------------------------------------------------------------------------------------

def _cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], *extra: str, camera: str = "preset: rpi_cam_v2\n",
         field: dict | None = None) -> tuple[int, str, str]:
    f = _field_file(tmp_path, [(0, 0), (60, 0), (60, 40), (0, 40)])
    if field is not None:
        f.write_text(json.dumps(field), encoding="utf-8")
    bundle = tmp_path / "bundle" if (tmp_path / "bundle").is_dir() else _bundle(tmp_path)
    argv = ["plan", "--field", str(f), "--camera", str(_camera(tmp_path, camera)), "--bundle", str(bundle),
            "--out", str(tmp_path / "out"), "--model-cost", "resnet50", *extra]
    code = run_cli(_main, argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_a_card_without_working_gsd_names_the_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _bundle(tmp_path, working_gsd_mm=None)
    code, _, err = _cli(tmp_path, capsys)
    assert code == 2 and "working_gsd_mm" in err and "--gsd-mm" in err
    code, out, _ = _cli(tmp_path, capsys, "--gsd-mm", "16")
    assert code == 0 and "!! RESOLUTION: --gsd-mm 16 given by the operator" in out


def test_cli_a_bad_camera_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _cli(tmp_path, capsys, camera="hfov_deg: 62\n")
    assert code == 2 and "preset" in err and "hfov_deg" in err
    code, _, err = _cli(tmp_path, capsys, camera="preset: not_a_camera\n")
    assert code == 2 and "preset" in err
    code, _, err = _cli(tmp_path, capsys, camera="preset: rpi_cam_v2\nheight: 900\n")
    assert code == 2 and "taller" in err


def test_cli_a_field_that_is_not_a_polygon_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _cli(tmp_path, capsys, field={"type": "Point", "coordinates": [149.1, -35.3]})
    assert code == 2 and "not a polygon" in err


def test_cli_prints_the_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _cli(tmp_path, capsys, "--tpus", "2")
    assert code == 0
    assert "altitude 5.92 m" in out and "tile grid 2 x 2" in out and "physical bound" in out and "ha/h" in out
