"""The replay's fitted trajectory (issue 29 item 4): through every recorded sample, with the recorded
rates as its derivative, far closer than straight lines between samples, and what the vehicle serves.

The synthetic flights are a coordinated turn (constant speed and bank, known exactly at any time)
and a roll weave, recorded at 4 Hz as a ground station would; the recorded copter flight checks
that a real log's served streams between samples are smooth (no kinks at the samples) and
self-consistent (position moves as the served velocity says).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
from pymavlink import mavutil

from flight_sim.render import MOTION_DT_S, WorldRenderer
from flight_sim.resample import Resampler
from flight_sim.scenario import Scenario
from flight_sim.sim import CameraRig
from flight_sim.timeline import Event, Timeline
from flight_sim.tlog import read_tlog
from flight_sim.trajectory import (
    HermiteCurve,
    Trajectory,
    body_to_euler_rates,
    euler_to_body_rates,
    metres_per_degree,
)
from flight_sim.vehicle import MAV_CMD_SET_MESSAGE_INTERVAL, VehicleEndpoint
from tests.flight_sim.conftest import TlogBuilder, free_udp_port, gps, heartbeat

LAT0, LON0, ALT0 = 52.0, 5.0, 140.0
SPEED = 15.0  # m/s
OMEGA = 0.8  # rad/s (46 deg/s): a tight turn
PITCH = math.radians(4.0)
BANK = math.atan(SPEED * OMEGA / 9.81)  # coordinated: 51 deg
RADIUS = SPEED / OMEGA
HZ = 4.0
PSI0 = 2.5  # heading at t = 0, so the turn passes +-180 deg within the first second


def _circle(t: np.ndarray) -> dict[str, np.ndarray]:
    """The coordinated turn's exact state: north/east (m from the centre), NED velocity, attitude, body rates."""
    psi = PSI0 + OMEGA * t
    p, q, r = euler_to_body_rates(np.full_like(t, BANK), np.full_like(t, PITCH), 0 * t, 0 * t, np.full_like(t, OMEGA))
    return {"n": RADIUS * np.sin(psi), "e": -RADIUS * np.cos(psi), "vn": SPEED * np.cos(psi),
            "ve": SPEED * np.sin(psi), "yaw": (psi + math.pi) % (2 * math.pi) - math.pi, "p": p, "q": q, "r": r}


def _to_latlon(n: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mlat, mlon = metres_per_degree(np.array(LAT0), np.array(ALT0))
    return LAT0 + n / mlat, LON0 + e / mlon


def _circle_events(seconds: float = 30.0, hz: float = HZ) -> list[Event]:
    """The turn as GLOBAL_POSITION_INT and ATTITUDE at `hz`, in the messages' integer units."""
    t = np.arange(0.0, seconds, 1.0 / hz)
    c = _circle(t)
    lat, lon = _to_latlon(c["n"], c["e"])
    events = []
    for k, tk in enumerate(t):
        events.append(Event(float(tk), "GLOBAL_POSITION_INT", {
            "time_boot_ms": int(tk * 1000), "lat": int(round(lat[k] * 1e7)), "lon": int(round(lon[k] * 1e7)),
            "alt": int(ALT0 * 1000), "relative_alt": 40_000, "vx": int(round(c["vn"][k] * 100)),
            "vy": int(round(c["ve"][k] * 100)), "vz": 0, "hdg": int(math.degrees(c["yaw"][k]) * 100) % 36000}))
        events.append(Event(float(tk) + 0.01, "ATTITUDE", {
            "time_boot_ms": int(tk * 1000) + 10, "roll": BANK, "pitch": PITCH, "yaw": float(c["yaw"][k]),
            "rollspeed": float(c["p"][k]), "pitchspeed": float(c["q"][k]), "yawspeed": float(c["r"][k])}))
    return events


def _ground_error_m(lat: np.ndarray, lon: np.ndarray, n: np.ndarray, e: np.ndarray) -> np.ndarray:
    mlat, mlon = metres_per_degree(np.array(LAT0), np.array(ALT0))
    return np.hypot((lat - LAT0) * mlat - n, (lon - LON0) * mlon - e)


def _wrapped(a: np.ndarray) -> np.ndarray:
    return (np.asarray(a) + math.pi) % (2 * math.pi) - math.pi


def test_hermite_curve_matches_values_and_slopes_and_bridges_long_gaps_linearly() -> None:
    c = HermiteCurve(np.array([0.0, 1.0, 2.0, 10.0]), np.array([0.0, 1.0, 0.0, 4.0]), np.array([1.0, 0.0, -1.0, 3.0]))
    assert c.value(np.array([0.0, 1.0, 2.0, 10.0])) == pytest.approx([0.0, 1.0, 0.0, 4.0], abs=1e-12)
    # at 2 the curve arrives with its slope (-1) and leaves on the long gap's straight line (0.5)
    assert c.derivative(np.array([0.0, 1.0, 2.0 - 1e-12, 2.0])) == pytest.approx([1.0, 0.0, -1.0, 0.5], abs=1e-9)
    # y = x^3 - x from its values and slopes at 0 and 2 is reproduced exactly (a cubic is its own Hermite)
    cube = HermiteCurve(np.array([0.0, 2.0]), np.array([0.0, 6.0]), np.array([-1.0, 11.0]))
    x = np.linspace(0, 2, 9)
    assert cube.value(x) == pytest.approx(x**3 - x, abs=1e-12)
    assert cube.derivative(x) == pytest.approx(3 * x**2 - 1, abs=1e-12)
    # the 8 s gap is longer than MAX_HERMITE_GAP_S: a straight line, whatever the slopes say
    assert c.value(np.array([6.0]))[0] == pytest.approx(2.0)
    assert c.derivative(np.array([6.0]))[0] == pytest.approx(0.5)
    # held outside the knots
    assert c.value(np.array([-1.0, 11.0])) == pytest.approx([0.0, 4.0])
    assert c.derivative(np.array([-1.0, 11.0])) == pytest.approx([0.0, 0.0])
    with pytest.raises(ValueError, match="strictly increasing"):
        HermiteCurve(np.array([0.0, 0.0]), np.zeros(2), np.zeros(2))


def test_body_and_euler_rates_convert_both_ways() -> None:
    rng = np.random.default_rng(3)
    roll, pitch = rng.uniform(-1.2, 1.2, 50), rng.uniform(-1.2, 1.2, 50)
    p, q, r = rng.normal(0, 1, (3, 50))
    back = euler_to_body_rates(roll, pitch, *body_to_euler_rates(roll, pitch, p, q, r))
    for a, b in zip(back, (p, q, r), strict=True):
        assert a == pytest.approx(b, abs=1e-9)
    # a level 45 deg bank turning at 0.5 rad/s: the gyro sees q = r = 0.354, yaw' is 0.5
    droll, dpitch, dyaw = body_to_euler_rates(*(np.array([v]) for v in (math.pi / 4, 0.0, 0.0, 0.3536, 0.3536)))
    assert (droll[0], dpitch[0], dyaw[0]) == pytest.approx((0.0, 0.0, 0.5), abs=1e-3)


def test_fit_passes_through_every_sample_with_the_recorded_rates_as_its_derivative() -> None:
    events = _circle_events()
    fit = Trajectory.from_events(events)
    pos = [e for e in events if e.name == "GLOBAL_POSITION_INT"]
    att = [e for e in events if e.name == "ATTITUDE"]
    tp, ta = np.array([e.t for e in pos]), np.array([e.t for e in att])
    lat, lon, alt = fit.position_at(tp)
    assert lat * 1e7 == pytest.approx([e.fields["lat"] for e in pos], abs=1e-6)
    assert lon * 1e7 == pytest.approx([e.fields["lon"] for e in pos], abs=1e-6)
    assert alt == pytest.approx([e.fields["alt"] / 1e3 for e in pos], abs=1e-9)
    vn, ve, vd = fit.velocity_at(tp)
    assert vn * 100 == pytest.approx([e.fields["vx"] for e in pos], abs=1e-6)
    assert ve * 100 == pytest.approx([e.fields["vy"] for e in pos], abs=1e-6)
    assert vd == pytest.approx(np.zeros(len(tp)), abs=1e-9)
    for got, key in zip(fit.attitude_at(ta), ("roll", "pitch", "yaw"), strict=True):
        assert _wrapped(got - np.array([e.fields[key] for e in att])) == pytest.approx(np.zeros(len(ta)), abs=1e-9)
    for got, key in zip(fit.body_rates_at(ta), ("rollspeed", "pitchspeed", "yawspeed"), strict=True):
        assert got == pytest.approx([e.fields[key] for e in att], abs=1e-9)


def test_copter_fit_passes_through_every_recorded_sample(copter: Timeline) -> None:
    fit = copter.fit
    assert fit is not None
    by_t = {e.t: e for e in reversed([e for e in copter.of("GLOBAL_POSITION_INT") if e.fields["lat"]])}
    pos = [by_t[t] for t in fit.t_pos]  # of messages received in one instant, the first is the sample
    lat, lon, alt = fit.position_at(fit.t_pos)
    assert np.abs(lat * 1e7 - [e.fields["lat"] for e in pos]).max() < 1e-5
    assert np.abs(lon * 1e7 - [e.fields["lon"] for e in pos]).max() < 1e-5
    assert np.abs(alt * 1e3 - [e.fields["alt"] for e in pos]).max() < 1e-6
    att_by_t = {e.t: e for e in reversed(copter.of("ATTITUDE"))}
    att = [att_by_t[t] for t in fit.t_att]
    for got, key in zip(fit.attitude_at(fit.t_att), ("roll", "pitch", "yaw"), strict=True):
        assert np.abs(_wrapped(got - [e.fields[key] for e in att])).max() < 1e-9
    # the derivative is the recorded rate wherever the next sample is close enough for a cubic
    close = np.diff(fit.t_att, append=np.inf) <= 2.0
    close &= np.diff(fit.t_att, prepend=-np.inf) <= 2.0
    for got, key in zip(fit.body_rates_at(fit.t_att), ("rollspeed", "pitchspeed", "yawspeed"), strict=True):
        assert np.abs(got - [e.fields[key] for e in att])[close].max() < 1e-6
    # the timeline's truth samples are the fit's, and the camera's pose comes from the fit
    assert copter.truth.t == pytest.approx(fit.t_pos)
    tm = float(fit.t_pos[1000] + fit.t_pos[1001]) / 2
    assert copter.pose_at(tm).roll_rad == pytest.approx(float(fit.attitude_at(tm)[0][0]))


def test_a_turn_recorded_at_4_hz_is_reproduced_far_better_than_by_straight_lines() -> None:
    events = _circle_events()
    fit = Trajectory.from_events(events)
    t_rec = np.array([e.t for e in events if e.name == "GLOBAL_POSITION_INT"])
    mid = (t_rec[:-1] + t_rec[1:]) / 2
    truth = _circle(mid)
    lat, lon, _ = fit.position_at(mid)
    fitted = _ground_error_m(lat, lon, truth["n"], truth["e"])
    rec_lat = np.array([e.fields["lat"] for e in events if e.name == "GLOBAL_POSITION_INT"]) / 1e7
    rec_lon = np.array([e.fields["lon"] for e in events if e.name == "GLOBAL_POSITION_INT"]) / 1e7
    linear = _ground_error_m(np.interp(mid, t_rec, rec_lat), np.interp(mid, t_rec, rec_lon), truth["n"], truth["e"])
    assert linear.max() > 0.08  # the chord's sagitta: R (1 - cos(omega h / 2)) = 9 cm
    assert fitted.max() < linear.max() / 5, (fitted.max(), linear.max())
    # velocity between samples is the fit's derivative: within 0.1 m/s of the turn's 15 m/s (the
    # recorded positions' 1.1 cm integer steps over 0.25 s are most of it)
    vn, ve, _ = fit.velocity_at(mid)
    assert np.hypot(vn - truth["vn"], ve - truth["ve"]).max() < 0.1


def test_a_roll_weave_recorded_at_4_hz_is_reproduced_far_better_than_by_straight_lines() -> None:
    amp, period = math.radians(40.0), 2.0  # roll rate up to 126 deg/s
    t = np.arange(0.0, 10.0, 1 / 4.3)
    roll = amp * np.sin(2 * math.pi * t / period)
    rate = amp * 2 * math.pi / period * np.cos(2 * math.pi * t / period)
    pos = [Event(0.0, "GLOBAL_POSITION_INT", {"lat": 520000000, "lon": 50000000, "alt": 100000,
                                               "vx": 0, "vy": 0, "vz": 0})]
    att = [Event(float(tk), "ATTITUDE", {"roll": float(rk), "pitch": 0.0, "yaw": 1.0, "rollspeed": float(pk),
                                         "pitchspeed": 0.0, "yawspeed": 0.0})
           for tk, rk, pk in zip(t, roll, rate, strict=True)]
    fit = Trajectory(pos, att)
    mid = (t[:-1] + t[1:]) / 2
    true_mid = amp * np.sin(2 * math.pi * mid / period)
    fitted = np.abs(fit.attitude_at(mid)[0] - true_mid)
    linear = np.abs(np.interp(mid, t, roll) - true_mid)
    assert math.degrees(linear.max()) > 2.0
    assert fitted.max() < linear.max() / 5, (math.degrees(fitted.max()), math.degrees(linear.max()))
    assert fit.attitude_at(mid)[2] == pytest.approx(np.ones(len(mid)), abs=1e-12)  # yaw held, not disturbed


def test_yaw_wraps_through_180_degrees_without_a_spin() -> None:
    fit = Trajectory.from_events(_circle_events())
    t = np.arange(0.01, 29.5, 0.01)
    yaw = fit.attitude_at(t)[2]
    truth = _circle(t - 0.01)["yaw"]  # ATTITUDE is stamped 10 ms after its sample
    assert np.abs(_wrapped(yaw - truth)).max() < math.radians(0.05)
    crossings = np.flatnonzero(np.abs(np.diff(yaw)) > math.pi)
    assert len(crossings) >= 3  # 30 s at 46 deg/s passes +-180 deg four times
    step = np.diff(np.unwrap(yaw))
    assert step.min() > 0 and step.max() < 2 * OMEGA * 0.01  # always turning one way, at about OMEGA
    # the served body rates stay the turn's, through the wrap too
    r = fit.body_rates_at(t)[2]
    assert r == pytest.approx(_circle(t - 0.01)["r"], abs=0.01)


def test_yaw_faster_than_half_a_turn_per_sample_is_unwrapped_by_its_rate() -> None:
    omega = 2 * math.pi * 0.7  # 252 deg/s at 2 Hz: 126 deg between samples, and the short way is wrong
    t = np.arange(0.0, 5.0, 0.5)
    pos = [Event(0.0, "GLOBAL_POSITION_INT", {"lat": 520000000, "lon": 50000000, "alt": 100000,
                                               "vx": 0, "vy": 0, "vz": 0})]
    att = [Event(float(tk), "ATTITUDE", {"roll": 0.0, "pitch": 0.0, "yaw": float(_wrapped(omega * tk)),
                                         "rollspeed": 0.0, "pitchspeed": 0.0, "yawspeed": omega}) for tk in t]
    fit = Trajectory(pos, att)
    tq = np.arange(0.0, 4.5, 0.01)
    assert np.abs(_wrapped(fit.attitude_at(tq)[2] - omega * tq)).max() < 1e-9


def _circle_tlog(tmp_path: Path) -> Timeline:
    records = [(e.t + 0.005, e.name, e.fields) for e in _circle_events(seconds=40.0)]
    for k in range(40):
        records += [(k + 0.001, "HEARTBEAT", heartbeat(1, armed=True)), (k + 0.02, "GPS_RAW_INT", gps(k, LAT0, LON0))]
    b = TlogBuilder()
    for t, name, fields in sorted(records, key=lambda r: r[0]):
        b.add(t, 1, 1, name, fields)
    return read_tlog(b.write(tmp_path / "circle.tlog"))


def test_the_resampler_serves_the_fit_for_recorded_flights(tmp_path: Path, survey: Timeline) -> None:
    tl = _circle_tlog(tmp_path)
    assert tl.fit is not None
    r = Resampler(tl)
    t = np.arange(2.0, 30.0, 0.04)
    served = [r.fields_at("GLOBAL_POSITION_INT", x) for x in t]
    lat = np.array([f["lat"] for f in served]) / 1e7
    lon = np.array([f["lon"] for f in served]) / 1e7
    truth = _circle(t - 0.005)  # the builder's receive stamps are 5 ms after the sample's time
    assert _ground_error_m(lat, lon, truth["n"], truth["e"]).max() < 0.03  # 1e-7 deg is 1.1 cm
    v = np.array([[f["vx"], f["vy"]] for f in served]) / 100
    assert np.hypot(v[:, 0] - truth["vn"], v[:, 1] - truth["ve"]).max() < 0.1
    assert all(f["relative_alt"] == 40_000 and f["hdg"] >= 0 for f in served)
    att = [r.fields_at("ATTITUDE", x) for x in t]
    assert np.abs(_wrapped(np.array([a["yaw"] for a in att]) - _circle(t - 0.015)["yaw"])).max() < math.radians(0.1)
    # a scripted survey has no fit and keeps the straight line between its 10 Hz samples
    assert survey.fit is None
    a, b = survey.of("ATTITUDE")[500:502]
    mid = Resampler(survey).fields_at("ATTITUDE", (a.t + b.t) / 2)
    assert mid is not None and mid["pitch"] == pytest.approx((a.fields["pitch"] + b.fields["pitch"]) / 2, abs=1e-6)


def test_the_vehicle_serves_requested_rates_from_the_fit(tmp_path: Path) -> None:
    tl = _circle_tlog(tmp_path)
    port = free_udp_port()
    client = mavutil.mavlink_connection(f"udpin:127.0.0.1:{port}", source_system=255)
    ep = VehicleEndpoint(tl, f"udp:127.0.0.1:{port}", speed=1.0, start_s=2.0)
    got = []
    try:
        ep.start()
        assert client.recv_match(type="HEARTBEAT", blocking=True, timeout=5) is not None
        client.mav.command_long_send(1, 0, MAV_CMD_SET_MESSAGE_INTERVAL, 0, 33, 40_000, 0, 0, 0, 0, 0)
        assert client.recv_match(type="COMMAND_ACK", blocking=True, timeout=2) is not None
        while len(got) < 60:
            m = client.recv_match(type="GLOBAL_POSITION_INT", blocking=True, timeout=2)
            assert m is not None
            got.append(m)
    finally:
        ep.stop()
        client.close()
    lat = np.array([m.lat for m in got[10:]]) / 1e7
    lon = np.array([m.lon for m in got[10:]]) / 1e7
    mlat, mlon = metres_per_degree(np.array(LAT0), np.array(ALT0))
    off_circle = np.abs(np.hypot((lat - LAT0) * mlat, (lon - LON0) * mlon) - RADIUS)
    # served between the 4 Hz samples, yet on the circle: straight lines would cut 9 cm inside it
    assert off_circle.max() < 0.03, off_circle.max()
    dt = np.diff([m.time_boot_ms for m in got[10:]])
    assert np.median(dt) < 100  # several times the recorded 4 Hz


def _kinks_and_consistency(tl: Timeline, t0: float, t1: float, dt: float = 0.02) -> tuple[float, float]:
    """The largest jump of the served roll's slope (deg/s) and of served position against served velocity (m/s)."""
    r = Resampler(tl)
    t = np.arange(t0, t1, dt)
    att = [r.fields_at("ATTITUDE", x) for x in t]
    roll = np.unwrap([a["roll"] for a in att])
    kink = math.degrees(np.abs(np.diff(np.diff(roll) / dt)).max())
    pos = [r.fields_at("GLOBAL_POSITION_INT", x) for x in t]
    lat = np.array([p["lat"] for p in pos]) / 1e7
    vn = np.array([p["vx"] for p in pos]) / 100
    h = 10  # over 0.2 s, so the 1.1 cm of lat's integer units are 0.06 m/s
    mlat, _ = metres_per_degree(lat[:1], np.array([0.0]))
    moved = (lat[h:] - lat[:-h]) * mlat[0] / (h * dt)
    said = np.array([vn[k:k + h + 1].mean() for k in range(len(vn) - h)])
    return kink, float(np.abs(moved - said).max())


@pytest.mark.parametrize("t0", [465.0, 654.0])  # the log's fastest rotation (164 deg/s), its fastest leg (8 m/s)
def test_the_copter_replay_serves_smooth_streams_between_samples(copter: Timeline, t0: float) -> None:
    fit_kink, fit_gap = _kinks_and_consistency(copter, t0, t0 + 20.0)
    lin_kink, lin_gap = _kinks_and_consistency(dataclasses.replace(copter, fit=None), t0, t0 + 20.0)
    assert fit_kink < lin_kink / 3, (fit_kink, lin_kink)
    assert fit_gap < 0.5 and fit_gap < lin_gap / 3, (fit_gap, lin_gap)


def test_one_time_and_many_times_give_the_same_state(copter: Timeline) -> None:
    # the vehicle and the camera ask one time at a time (plain floats); the figures ask arrays
    fit = copter.fit
    assert fit is not None
    tq = np.concatenate([np.linspace(-5.0, copter.duration + 5.0, 3001), fit.t_att[::50], fit.t_pos[::50]])
    one = np.array([fit.attitude_rates(float(x)) + fit.position_velocity(float(x)) for x in tq]).T
    many = np.vstack([*fit.attitude_at(tq), *fit.body_rates_at(tq), *fit.position_at(tq), *fit.velocity_at(tq)])
    assert np.abs(one - many).max() < 1e-6
    pose = copter.pose_at(float(tq[1000]))
    assert (pose.lat_deg, pose.yaw_rad) == pytest.approx((one[6, 1000], one[2, 1000]), abs=1e-12)


def test_the_camera_of_a_replay_renders_at_the_fitted_pose(copter: Timeline, scenario: Scenario,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    monkeypatch.setattr(WorldRenderer, "render", lambda self, pose, t_s, pose_later=None: seen.append(
        (t_s, pose, pose_later)) or np.zeros((2, 2, 3), np.uint8))
    rig = CameraRig.build(scenario, copter, world=object())
    fit = copter.fit
    assert fit is not None
    # between two samples of the fastest rotation, where straight lines and the fit disagree most
    t = float(fit.t_att[np.searchsorted(fit.t_att, 475.0)] + 0.1)
    rig.camera.render_at(t)
    (t_s, pose, later), = seen
    roll, pitch, yaw, *_ = fit.attitude_rates(t)
    assert t_s == t and (pose.roll_rad, pose.pitch_rad, pose.yaw_rad) == pytest.approx((roll, pitch, yaw), abs=1e-12)
    assert later.roll_rad == pytest.approx(fit.attitude_rates(t + MOTION_DT_S)[0], abs=1e-12)
    # and not the straight line between the recorded samples either side (0.55 deg apart here)
    att = copter.of("ATTITUDE")
    i = int(np.searchsorted([e.t for e in att], t)) - 1
    a, b = att[i], att[i + 1]
    linear = a.fields["roll"] + (t - a.t) / (b.t - a.t) * (b.fields["roll"] - a.fields["roll"])
    assert abs(math.degrees(pose.roll_rad - linear)) > 0.3


def test_a_nan_attitude_is_left_out_and_does_not_poison_the_rest() -> None:
    events = _circle_events(seconds=10.0)
    att = [e for e in events if e.name == "ATTITUDE"]
    bad = Event(att[5].t + 0.1, "ATTITUDE", dict(att[5].fields, yaw=float("nan"), yawspeed=float("nan")))
    fit = Trajectory.from_events(sorted([*events, bad], key=lambda e: e.t))
    assert fit.notes == ["1 ATTITUDE messages with a NaN or infinite field left out of the replay's trajectory"]
    t = np.arange(0.01, 9.5, 0.05)
    assert np.abs(_wrapped(fit.attitude_at(t)[2] - _circle(t - 0.01)["yaw"])).max() < math.radians(0.05)


def test_a_log_without_velocities_or_rates_takes_its_slopes_from_the_samples() -> None:
    # some stacks send GLOBAL_POSITION_INT with vx/vy/vz 0 and ATTITUDE without rates: slopes of 0
    # would stop the vehicle at every sample
    events = []
    for e in _circle_events(seconds=20.0):
        zeroed = ("vx", "vy", "vz") if e.name == "GLOBAL_POSITION_INT" else ("rollspeed", "pitchspeed", "yawspeed")
        events.append(Event(e.t, e.name, dict(e.fields, **dict.fromkeys(zeroed, 0))))
    fit = Trajectory.from_events(events)
    assert len(fit.notes) == 2 and "no velocity" in fit.notes[0] and "no rates" in fit.notes[1]
    t_rec = np.array([e.t for e in events if e.name == "GLOBAL_POSITION_INT"])
    mid = (t_rec[1:-2] + t_rec[2:-1]) / 2
    vn, ve, _ = fit.velocity_at(mid)
    assert np.hypot(vn, ve) == pytest.approx(np.full(len(mid), SPEED), rel=0.02)  # moving, not stopping
    truth = _circle(mid)
    lat, lon, _ = fit.position_at(mid)
    assert _ground_error_m(lat, lon, truth["n"], truth["e"]).max() < 0.05
    assert fit.body_rates_at(mid)[2] == pytest.approx(_circle(mid)["r"], rel=0.05)
