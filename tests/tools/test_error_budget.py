"""tools/error_budget.py against hand-worked cases: a hover, a pure time offset, a constant roll rate."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from payload.geo.camera import CameraModel
from payload.geo.frames import enu_to_geodetic
from payload.types import Pose
from tools.error_budget import (
    CAUSES,
    Case,
    error_budget,
    main,
    sampled_stream,
    summary,
    table,
    tile_centres,
)

ROOT = Path(__file__).resolve().parents[2]
LAT0, LON0, GROUND = -35.3632, 149.1652, 584.0
HEIGHT = 30.0
CAM = CameraModel.from_hfov(640, 480, 62.2)
UV = tile_centres(CAM, 3, 4)
# exposures at no fixed phase to the telemetry's samples (a camera's clock is not the autopilot's)
FRAMES = np.sort(np.random.default_rng(1).uniform(2.0, 8.0, 30))


def _pose(e: float, n: float, roll: float = 0.0, yaw: float = 0.0) -> Pose:
    lat, lon, alt = enu_to_geodetic(e, n, HEIGHT, LAT0, LON0, GROUND)
    return Pose(float(lat), float(lon), float(alt), roll, 0.0, yaw)


def _budget(truth, hz: float, case: Case):
    msgs = sampled_stream(truth, hz, 0.0, 10.0, home_alt_m=GROUND)
    return error_budget(truth, msgs, FRAMES, case, CAM, GROUND, UV)


def _median(b, figure: str) -> float:
    return float(np.median(b.metres(figure)))


def test_a_level_hover_has_no_error_from_any_cause() -> None:
    b = _budget(lambda t: _pose(0.0, 0.0), 4.0, Case("hover", None, camera_delay_s=0.1, payload_latency_s=0.0))
    assert b.frames == len(FRAMES) and b.bank_deg.size == len(FRAMES) * 12
    for figure in (*CAUSES, "total", "interaction"):
        assert b.metres(figure).max() < 1e-3, figure


def test_a_pure_time_offset_is_speed_times_offset_along_the_track_in_the_time_cause() -> None:
    v, dt = 10.0, 0.1  # north at 10 m/s, frames stamped 0.1 s late: 1 m ahead along the track
    b = _budget(lambda t: _pose(0.0, v * t), 25.0, Case("late", 25.0, camera_delay_s=dt, payload_latency_s=0.0))
    time = b.vectors["time"]
    assert np.allclose(time[:, 1], v * dt, atol=0.01) and np.allclose(time[:, 0], 0.0, atol=0.01)
    assert b.metres("attitude").max() < 1e-3
    assert b.metres("position").max() < 0.01  # Hermite on the velocities is exact at constant velocity
    assert np.allclose(b.metres("total"), v * dt, atol=0.02)
    # the same flight with the delay known: nothing left
    known = _budget(lambda t: _pose(0.0, v * t), 25.0, Case("known", 25.0, camera_delay_s=dt, payload_latency_s=dt))
    assert known.metres("time").max() < 1e-3 and known.metres("total").max() < 0.01


def test_a_constant_roll_rate_on_sparse_attitude_samples_errs_less_at_a_higher_rate() -> None:
    rate = math.radians(10.0)  # hovering, rolling at 10 deg/s from -30 deg (t = 2 s) to +30 deg (8 s)
    truth = lambda t: _pose(0.0, 0.0, roll=math.radians(-30.0) + rate * (t - 2.0))  # noqa: E731
    # the pose is looked up as the frame arrives: the newest sample is older, the attitude held from it
    case = Case("roll", None, camera_delay_s=0.0, payload_latency_s=0.0, lookup_delay_s=0.0)
    sparse, dense = _budget(truth, 4.0, case), _budget(truth, 25.0, case)
    assert _median(sparse, "attitude") > 0.2
    assert _median(dense, "attitude") < _median(sparse, "attitude") / 4
    for b in (sparse, dense):
        assert b.metres("time").max() < 1e-3 and b.metres("position").max() < 0.01
    # hand-worked: at the image centre, a roll error d at height h and bank phi moves the ground h d / cos^2 phi;
    # held samples are on average half a gap old (0.125 s at 4 Hz: 1.25 deg, 0.65 m level), over |phi| <= 30 deg
    mean_age_err = rate * 0.125
    assert HEIGHT * mean_age_err * 0.5 < _median(sparse, "attitude") < HEIGHT * mean_age_err / math.cos(
        math.radians(30)) ** 2 * 1.5
    # with the next sample already in (the lookup waits), a linear interpolation of a constant rate is exact
    waited = _budget(truth, 4.0, Case("roll", None, camera_delay_s=0.0, payload_latency_s=0.0, lookup_delay_s=0.3))
    assert waited.metres("attitude").max() < 0.01


def test_the_summary_bins_tiles_by_bank_and_prints_a_table() -> None:
    rate = math.radians(5.0)  # frames at 2-8 s: banked 10-40 deg
    b = _budget(lambda t: _pose(0.0, 0.0, roll=rate * t), 4.0, Case("roll", None, 0.05, 0.0))
    s = summary(b)
    assert s["tiles"] == sum(x["tiles"] for x in s["by_bank"]) == b.bank_deg.size == len(FRAMES) * 12
    assert [x["tiles"] > 0 for x in s["by_bank"]] == [False, True, True, True, False]
    text = table([s])
    assert text.splitlines()[0].startswith("| case | bank | tiles | attitude")


def test_the_command_on_a_window_of_the_recorded_copter(tmp_path: Path, capsys) -> None:
    out = tmp_path / "budget.json"
    try:
        main(["--scenario", str(ROOT / "configs/scenarios/copter_2015.yaml"), "--tlog",
              str(ROOT / "tests/data/flights/copter_sitl_2015.tlog"), "--start", "300", "--end", "330",
              "--json", str(out)])
    except SystemExit as e:
        assert e.code == 0
    got = json.loads(out.read_text())
    assert [s["case"] for s in got] == ["before", "after"]
    assert got[1]["streams"] == "25 Hz" and got[1]["payload_latency_s"] == 0.1
    assert "| before | all |" in capsys.readouterr().out


def test_messages_on_another_boot_clock_give_the_same_budget_when_the_exposure_is_on_it_too() -> None:
    v, dt, boot0 = 10.0, 0.1, 100.0
    truth = lambda t: _pose(0.0, v * t)  # noqa: E731
    case = Case("late", 25.0, camera_delay_s=dt, payload_latency_s=0.0)
    msgs = [(t, name, {**f, "time_boot_ms": f["time_boot_ms"] + boot0 * 1000.0} if "time_boot_ms" in f else f)
            for t, name, f in sampled_stream(truth, 25.0, 0.0, 10.0, home_alt_m=GROUND)]
    b = error_budget(truth, msgs, FRAMES, case, CAM, GROUND, UV, boot_of=lambda t: t + boot0)
    assert np.allclose(b.metres("time"), v * dt, atol=0.01) and b.metres("position").max() < 0.01
    # samples stamped 50 ms early on that clock (a ground station's receive jitter in a replayed tlog): the
    # payload takes each for the vehicle 50 ms later, 0.5 m ahead, in the position cause
    early = [(t, name, {**f, "time_boot_ms": f["time_boot_ms"] - 50.0} if "time_boot_ms" in f else f)
             for t, name, f in msgs]
    b = error_budget(truth, early, FRAMES, case, CAM, GROUND, UV, boot_of=lambda t: t + boot0)
    assert np.allclose(b.vectors["position"][:, 1], v * 0.05, atol=0.01)
