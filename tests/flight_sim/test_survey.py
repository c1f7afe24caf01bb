"""The scripted survey: a lawnmower over the field with realistic attitude, noise and rates."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pymap3d
import pytest
from pymavlink import mavutil

from flight_sim.scenario import Scenario
from flight_sim.survey import DRAG_PER_S, G, survey_lines, survey_timeline
from flight_sim.timeline import Timeline
from flight_sim.tlog import read_tlog, write_tlog


def _auto_window(tl: Timeline) -> tuple[float, float]:
    auto = [e.t for e in tl.of("HEARTBEAT") if e.fields["custom_mode"] == 3]
    return auto[0], auto[-1]


def _truth_en(tl: Timeline, s: Scenario) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    tr = tl.truth
    e, n, u = pymap3d.geodetic2enu(tr.lat, tr.lon, tr.alt, s.origin.lat, s.origin.lon, s.origin.alt)
    return np.asarray(e), np.asarray(n), np.asarray(u)


def test_legs_cover_the_whole_field(scenario: Scenario) -> None:
    legs = survey_lines(scenario)
    footprint_w = 2 * scenario.flight.altitude_m * math.tan(math.radians(scenario.camera.hfov_deg) / 2)
    east = [e for e, _, _ in legs]
    assert east[0] - footprint_w / 2 <= 0 and east[-1] + footprint_w / 2 >= scenario.field.width_m
    assert max(np.diff(east)) <= min(scenario.flight.line_spacing_m, footprint_w)
    for _e, a, b in legs:
        assert min(a, b) < 0 and max(a, b) > scenario.field.height_m


def test_flies_the_legs_at_altitude_in_auto(survey: Timeline, scenario: Scenario) -> None:
    t0, t1 = _auto_window(survey)
    e, n, u = _truth_en(survey, scenario)
    t = survey.truth.t
    sel = (t >= t0 + 1.6) & (t <= t1 - 1.6)  # the climb's and descent's smoothing reach 1.5 s
    assert np.allclose(u[sel], scenario.flight.altitude_m, atol=0.01)
    v = np.gradient(n, t)
    over_field = (n >= 0) & (n <= scenario.field.height_m)  # legs overshoot by margin_m to turn outside
    on_leg = sel & over_field & (np.abs(v) > scenario.flight.speed_mps * 0.99)
    legs = np.array([x for x, _, _ in survey_lines(scenario)])
    dist = np.min(np.abs(e[on_leg, None] - legs[None, :]), axis=1)
    assert dist.max() < 0.05
    assert np.ptp(e[on_leg]) > legs[-1] - legs[0] - 0.1
    modes = [e.fields["custom_mode"] for e in survey.of("HEARTBEAT")]
    assert modes[0] == 4 and 3 in modes and modes[-1] == 9  # GUIDED, AUTO, LAND
    assert survey.of("HEARTBEAT")[-1].fields["base_mode"] & 128 == 0  # landed and disarmed


def test_banks_in_turns_and_pitches_with_acceleration(survey: Timeline, scenario: Scenario) -> None:
    fl = scenario.flight
    tr = survey.truth
    roll = np.degrees(tr.roll)
    r = (survey_lines(scenario)[1][0] - survey_lines(scenario)[0][0]) / 2
    expected = math.degrees(math.atan(fl.speed_mps**2 / (r * G)))
    assert np.percentile(np.abs(roll), 99.5) == pytest.approx(expected, abs=3.0)
    # cruise on a leg: a little nose-down against drag; accelerating: clearly more
    e, n, _ = _truth_en(survey, scenario)
    speed = np.hypot(np.gradient(e, tr.t), np.gradient(n, tr.t))
    acc = np.gradient(speed, tr.t)
    cruise = (np.abs(speed - fl.speed_mps) < 0.01) & (np.abs(acc) < 0.01)
    accel = acc > fl.accel_mps2 * 0.9
    pitch = np.degrees(tr.pitch)
    assert np.median(pitch[cruise]) == pytest.approx(-math.degrees(math.atan(DRAG_PER_S * fl.speed_mps / G)), abs=0.5)
    assert np.median(pitch[accel]) < np.median(pitch[cruise]) - 5.0
    assert np.median(pitch[acc < -fl.accel_mps2 * 0.9]) > 4.0  # braking: nose up


def test_gps_noise_and_rates(survey: Timeline, scenario: Scenario) -> None:
    fl = scenario.flight
    gps = survey.of("GPS_RAW_INT")
    att = survey.of("ATTITUDE")
    assert np.median(np.diff([g.t for g in gps])) == pytest.approx(1 / fl.gps_rate_hz, abs=1e-6)
    assert np.median(np.diff([a.t for a in att])) == pytest.approx(1 / fl.telemetry_rate_hz, abs=1e-6)
    errs = []
    for g in gps:
        p = survey.pose_at(g.t)
        e, n, _ = pymap3d.geodetic2enu(g.fields["lat"] / 1e7, g.fields["lon"] / 1e7, p.alt_m, p.lat_deg, p.lon_deg,
                                       p.alt_m)  # fmt: skip
        errs += [e, n]
    sigma = float(np.std(errs))
    assert sigma == pytest.approx(math.hypot(fl.gps_noise_m, fl.position_error_m), rel=0.25)
    ekf = []
    for g in survey.of("GLOBAL_POSITION_INT"):
        p = survey.pose_at(g.t)
        e, n, _ = pymap3d.geodetic2enu(g.fields["lat"] / 1e7, g.fields["lon"] / 1e7, p.alt_m, p.lat_deg, p.lon_deg,
                                       p.alt_m)  # fmt: skip
        ekf.append(math.hypot(e, n))
    assert 0.05 < float(np.sqrt(np.mean(np.square(ekf)))) < 4 * fl.position_error_m
    # attitude telemetry is the truth (a good AHRS); the mode string is what dronekit shows
    a = att[len(att) // 2]
    assert a.fields["roll"] == pytest.approx(survey.pose_at(a.t).roll_rad, abs=2e-3)
    assert mavutil.mode_mapping_bynumber(2)[survey.of("HEARTBEAT")[50].fields["custom_mode"]] == "AUTO"


def test_deterministic_for_a_seed(scenario: Scenario, survey: Timeline) -> None:
    again = survey_timeline(scenario)
    assert again.events == survey.events
    other = survey_timeline(scenario.model_copy(update={"seed": scenario.seed + 1}))
    assert other.events != survey.events


def test_written_as_a_tlog_it_replays_identically(survey: Timeline, tmp_path: Path) -> None:
    back = read_tlog(write_tlog(survey, tmp_path / "survey.tlog"))
    assert back.events == survey.events
    assert back.params == survey.params
    assert (back.sysid, back.compid, back.vehicle_type) == (survey.sysid, survey.compid, survey.vehicle_type)
    assert back.bad_crc == 0 and back.notes == []
