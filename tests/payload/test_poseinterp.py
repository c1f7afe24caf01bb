"""Pose interpolation against a known trajectory, angle wrap, clock mapping and reboots."""

from __future__ import annotations

import math

import numpy as np
import pymap3d
import pytest

from payload.vehicle.clocksync import ClockSync
from payload.vehicle.interp import interp_angle, interpolate_attitude
from payload.vehicle.poseinterp import StateBuffer
from payload.vehicle.samples import AttitudeSample, GpsSample, PositionSample

LAT0, LON0, ALT0 = -33.87, 151.21, 40.0


def _truth_line(t: float) -> tuple[float, float, float, float, float]:
    """10 m/s towards bearing 60 deg, 30 m above home: (east, north, up, ve, vn)."""
    b = math.radians(60)
    return 10 * t * math.sin(b), 10 * t * math.cos(b), 30.0, 10 * math.sin(b), 10 * math.cos(b)


def _truth_circle(t: float) -> tuple[float, float, float, float, float]:
    """10 m/s on a 40 m radius circle (a tight survey turn)."""
    r, w = 40.0, 10.0 / 40.0
    return r * math.sin(w * t), r * math.cos(w * t), 30.0, r * w * math.cos(w * t), -r * w * math.sin(w * t)


def _feed(buf: StateBuffer, truth, offset: float, rate_hz: float, dur: float, rng) -> None:
    t = 0.0
    while t <= dur:
        e, n, u, ve, vn = truth(t)
        lat, lon, alt = pymap3d.enu2geodetic(e, n, u, LAT0, LON0, ALT0)
        latency = 0.004 + rng.exponential(0.02)
        yaw = math.atan2(ve, vn)
        buf.add_position(PositionSample(t, lat, lon, alt, u, vn, ve, 0.0), t_rx_mono=t + offset + latency)
        buf.add_attitude(AttitudeSample(t + 0.01, 0.0, 0.0, yaw), t_rx_mono=t + 0.01 + offset + latency)
        buf.add_gps(GpsSample(t, 3, 0.9, 14))
        t += 1.0 / rate_hz


@pytest.mark.parametrize("truth", [_truth_line, _truth_circle])
def test_4hz_telemetry_at_10ms_interpolates_within_half_a_metre(truth) -> None:
    rng = np.random.default_rng(5)
    offset = 1234.5678  # companion monotonic - autopilot boot time
    buf = StateBuffer()
    _feed(buf, truth, offset, 4.0, 30.0, rng)
    errs = []
    for t in rng.uniform(1.0, 29.0, size=300):
        est = buf.state_at(t + offset)
        assert est is not None
        e, n, u, _, _ = truth(t)
        ge, gn, gu = pymap3d.geodetic2enu(est.pose.lat_deg, est.pose.lon_deg, est.pose.alt_m, LAT0, LON0, ALT0)
        errs.append(math.sqrt((ge - e) ** 2 + (gn - n) ** 2 + (gu - u) ** 2))
        assert est.age_s <= 0.125 + 1e-6
        assert est.fix_type == 3 and est.satellites == 14
        assert not est.extrapolated
    assert max(errs) < 0.5, f"max error {max(errs):.3f} m"
    # the min-latency offset is within the smallest latency (4 ms) plus jitter of the truth
    assert abs(buf.clock.offset_s - offset) < 0.01


def test_linear_interpolation_alone_would_fail_on_the_turn() -> None:
    """Guards the test above: cutting the chord of the circle at 4 Hz is off by more than 0.5 m
    somewhere only if the interpolation ignored velocity; check the Hermite gain is real."""
    rng = np.random.default_rng(2)
    buf = StateBuffer()
    _feed(buf, _truth_circle, 0.0, 1.0, 30.0, rng)  # 1 Hz: chord sagitta 40*(1-cos(0.125)) = 0.31 m
    t = 10.5
    e, n, *_ = _truth_circle(t)
    est = buf.state_at_boot(t)
    ge, gn, _ = pymap3d.geodetic2enu(est.pose.lat_deg, est.pose.lon_deg, est.pose.alt_m, LAT0, LON0, ALT0)
    assert math.hypot(ge - e, gn - n) < 0.02


def test_dead_reckoning_past_the_last_sample_and_age() -> None:
    buf = StateBuffer()
    rng = np.random.default_rng(1)
    _feed(buf, _truth_line, 0.0, 4.0, 10.0, rng)
    est = buf.state_at_boot(10.3)
    e, n, *_ = _truth_line(10.3)
    ge, gn, _ = pymap3d.geodetic2enu(est.pose.lat_deg, est.pose.lon_deg, est.pose.alt_m, LAT0, LON0, ALT0)
    assert math.hypot(ge - e, gn - n) < 0.05
    assert est.extrapolated and est.age_s == pytest.approx(0.3, abs=1e-6)


def test_gps_lag_shifts_the_position_back_in_time() -> None:
    rng = np.random.default_rng(1)
    lagged = StateBuffer(gps_lag_s=0.2)
    _feed(lagged, _truth_line, 0.0, 4.0, 10.0, rng)
    est = lagged.state_at_boot(5.0)
    # a sample stamped 5.2 describes t = 5.0
    e, n, *_ = _truth_line(5.2)
    ge, gn, _ = pymap3d.geodetic2enu(est.pose.lat_deg, est.pose.lon_deg, est.pose.alt_m, LAT0, LON0, ALT0)
    assert math.hypot(ge - e, gn - n) < 0.01


def test_yaw_wraps_across_180() -> None:
    a = [AttitudeSample(0.0, 0.0, 0.0, math.radians(170)), AttitudeSample(1.0, 0.0, 0.0, math.radians(-170))]
    att, age = interpolate_attitude(a, 0.5)
    assert abs(abs(math.degrees(att.yaw)) - 180) < 1e-9
    assert age == pytest.approx(0.5)
    att, age = interpolate_attitude(a, 0.75)
    assert math.degrees(att.yaw) == pytest.approx(-175)
    assert age == pytest.approx(0.25)
    assert math.degrees(interp_angle(math.radians(-179), math.radians(179), 0.25)) == pytest.approx(-179.5)
    assert interp_angle(0.1, 0.3, 0.5) == pytest.approx(0.2)


def test_gap_in_telemetry_shows_in_age() -> None:
    buf = StateBuffer()
    for t in (0.0, 0.25, 10.0, 10.25):
        buf.add_position(PositionSample(t, LAT0, LON0, ALT0, 0, 0, 0, 0), t_rx_mono=t)
        buf.add_attitude(AttitudeSample(t, 0, 0, 0), t_rx_mono=t)
    assert buf.state_at(5.0).age_s == pytest.approx(4.75)
    assert buf.state_at(0.1).age_s == pytest.approx(0.1)


def test_reboot_clears_the_buffer_and_the_clock() -> None:
    buf = StateBuffer()
    for t in (100.0, 100.25):
        buf.add_position(PositionSample(t, LAT0, LON0, ALT0, 0, 0, 0, 0), t_rx_mono=t + 5)
        buf.add_attitude(AttitudeSample(t, 0, 0, 0), t_rx_mono=t + 5)
    buf.add_position(PositionSample(1.0, LAT0 + 0.001, LON0, ALT0, 0, 0, 0, 0), t_rx_mono=106.0)
    assert buf.reboots == 1
    assert buf.counts()["position"] == 1
    assert buf.clock.offset_s == pytest.approx(105.0)


def test_clock_sync_prefers_a_tight_timesync() -> None:
    c = ClockSync()
    with pytest.raises(LookupError):
        _ = c.offset_s
    c.observe(10.0, 110.05)  # 50 ms one-way latency: offset bound 100.05
    assert c.offset_s == pytest.approx(100.05) and c.source == "min_latency"
    c.observe_roundtrip(200.0, 100.0005, 200.001)  # 1 ms round trip -> 100.0000 +- 0.5 ms
    assert c.offset_s == pytest.approx(100.0, abs=1e-3) and c.source == "timesync"


def test_nothing_before_telemetry() -> None:
    buf = StateBuffer()
    assert buf.state_at(1.0) is None
    buf.add_position(PositionSample(1.0, LAT0, LON0, ALT0, 0, 0, 0, 0), t_rx_mono=2.0)
    assert buf.state_at(2.0) is None  # no attitude yet


def test_a_pose_carries_its_samples_gaps_rates_acceleration_and_clock_uncertainty() -> None:
    """What the look's place error is computed from (payload/geo/placeerror.py)."""
    buf = StateBuffer()
    # 4 Hz position on the 40 m circle at 10 m/s (2.5 m/s^2 centripetal); 4 Hz attitude rolling at 15 deg/s
    for k in range(0, 41):
        t = k * 0.25
        e, n, u, ve, vn = _truth_circle(t)
        lat, lon, alt = pymap3d.enu2geodetic(e, n, u, LAT0, LON0, ALT0)
        buf.add_position(PositionSample(t, lat, lon, alt, u, vn, ve, 0.0), t_rx_mono=100.0 + t)
        buf.add_attitude(AttitudeSample(t, math.radians(15.0 * t), 0.0, 0.0), t_rx_mono=100.0 + t)
        buf.add_gps(GpsSample(t, 3, 0.9, 14))
    est = buf.state_at(100.0 + 5.1)
    assert est is not None
    assert est.position_gap_s == pytest.approx(0.25) and est.attitude_gap_s == pytest.approx(0.25)
    assert est.position_age_s == pytest.approx(0.1) and est.attitude_age_s == pytest.approx(0.1)
    assert est.attitude_rate_rps == pytest.approx((math.radians(15.0), 0.0, 0.0))
    # the velocity turns by 0.25 rad/s * 0.25 s between samples: a chord of 10 * 2 sin(0.03125) per 0.25 s
    assert est.accel_mps2 == pytest.approx(10 * 2 * math.sin(0.03125) / 0.25, rel=1e-6)
    _, _, _, ve, vn = _truth_circle(5.1)
    assert est.velocity_enu is not None and math.hypot(*est.velocity_enu) == pytest.approx(10.0, abs=0.05)
    assert est.velocity_enu[0] == pytest.approx(ve, abs=0.05) and est.velocity_enu[1] == pytest.approx(vn, abs=0.05)
    assert est.clock_sigma_s == pytest.approx(buf.clock.uncertainty_s) and est.clock_sigma_s > 0
    # past the newest sample: no bracketing pair, the last pair's rates, the age says how far
    late = buf.state_at(100.0 + 10.4)
    assert late is not None and late.extrapolated
    assert late.position_gap_s is None and late.attitude_gap_s is None
    assert late.attitude_age_s == pytest.approx(0.4) and late.attitude_rate_rps[0] == pytest.approx(math.radians(15))
