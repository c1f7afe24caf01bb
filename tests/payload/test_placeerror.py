"""A look's place error (payload/geo/placeerror.py): hand-worked cases, and the derivation checked by simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from payload.geo.placeerror import (
    PlaceBook,
    PlaceMotion,
    overlap_share,
    place_sigma_m,
    position_miss_m,
    unknown_time_miss,
)
from payload.vehicle.clocksync import STAMP_SIGMA_S, ClockSync
from payload.vehicle.interp import interpolate_local
from payload.vehicle.samples import LocalPositionSample

DEG = math.pi / 180.0


def motion(**kw: float | None) -> PlaceMotion:
    base: dict = {"speed_mps": 0.0, "accel_mps2": 0.0, "position_age_s": 0.0, "position_gap_s": 0.1,
                  "tilt_rate_rps": 0.0, "yaw_rate_rps": 0.0, "attitude_age_s": 0.0, "attitude_gap_s": 0.1,
                  "clock_sigma_s": 0.0}
    base.update(kw)
    return PlaceMotion(**base)


def test_a_level_hover_is_placed_to_about_a_centimetre() -> None:
    # 30 m up, straight down, wobbling 0.5 deg/s, 10 Hz streams, the frame halfway between samples, 1 ms clock:
    # tilt miss 0.5 deg/s * sqrt(0.05 * 0.05) s = 0.025 deg = 4.363e-4 rad -> 30 m * 4.363e-4 = 0.01309 m;
    # the clock adds 30 m * 0.5 deg/s * 1 ms = 2.6e-4 m; no speed, no acceleration, no lever for the heading.
    m = motion(tilt_rate_rps=0.5 * DEG, attitude_age_s=0.05, attitude_gap_s=0.1, position_age_s=0.05,
               clock_sigma_s=0.001)
    (s,) = place_sigma_m(30.0, np.array([0.0]), m)
    assert s == pytest.approx(math.hypot(30 * 0.5 * DEG * 0.05, 30 * 0.5 * DEG * 0.001), rel=1e-9)
    assert s == pytest.approx(0.01309, abs=2e-5)
    # dead still: nothing to miss
    assert place_sigma_m(30.0, 0.0, motion())[()] == 0.0


def test_a_30_degree_bank_at_15_deg_per_s_on_a_4_hz_attitude_stream_is_metres() -> None:
    # 40 m over the ground, 20 m/s, rolling at 15 deg/s, banked 30 deg so the centre ray is 30 deg off nadir;
    # ATTITUDE and GLOBAL_POSITION_INT at 4 Hz (0.25 s gaps), the frame at the midpoint, clock 5 ms,
    # a coordinated turn's 5.66 m/s^2 (g tan 30).
    m = motion(speed_mps=20.0, accel_mps2=5.66, position_age_s=0.125, position_gap_s=0.25,
               tilt_rate_rps=15 * DEG, attitude_age_s=0.125, attitude_gap_s=0.25, clock_sigma_s=0.005)
    (s,) = place_sigma_m(40.0, np.array([30 * DEG]), m)
    # by hand: lever h / cos^2 = 40 / 0.75 = 53.333 m
    #   attitude 0.261799 rad/s * 0.125 s = 0.0327249 rad -> 1.74533 m
    #   time     20 m/s * 5 ms = 0.1 m; rotation 0.261799 * 0.005 * 53.333 = 0.069813 m
    #   position 5.66 * (0.125 * 0.125)^1.5 / (sqrt(3) * 0.25) = 0.025530 m
    assert s == pytest.approx(math.sqrt(1.74533 ** 2 + 0.1 ** 2 + 0.069813 ** 2 + 0.025530 ** 2), rel=1e-5)
    assert s == pytest.approx(1.7498, abs=1e-3)
    # the rates the payload asks for (25 Hz) take it to decimetres; a tile further out is worse
    fast = motion(speed_mps=20.0, accel_mps2=5.66, position_age_s=0.02, position_gap_s=0.04,
                  tilt_rate_rps=15 * DEG, attitude_age_s=0.02, attitude_gap_s=0.04, clock_sigma_s=0.005)
    assert place_sigma_m(40.0, 30 * DEG, fast)[()] == pytest.approx(0.30, abs=0.01)
    assert place_sigma_m(40.0, 50 * DEG, m)[()] > 3.0


def test_a_stale_pose_grows_with_its_age() -> None:
    # 30 m, level, 15 m/s; the streams stopped: attitude held 0.6 s past its last sample while it was turning
    # at 5 deg/s, position dead-reckoned 0.6 s with 2 m/s^2 unaccounted for, clock 2 ms.
    def at(age: float) -> float:
        m = motion(speed_mps=15.0, accel_mps2=2.0, position_age_s=age, position_gap_s=None, tilt_rate_rps=5 * DEG,
                   attitude_age_s=age, attitude_gap_s=None, clock_sigma_s=0.002)
        return float(place_sigma_m(30.0, 0.0, m)[()])

    # by hand at 0.6 s: attitude 0.0872665 * 0.6 = 0.0523599 rad -> 1.570796 m; position 0.5 * 2 * 0.36 = 0.36 m;
    # time 15 * 0.002 = 0.03 m; rotation 30 * 0.0872665 * 0.002 = 0.005236 m
    assert at(0.6) == pytest.approx(math.sqrt(1.570796 ** 2 + 0.36 ** 2 + 0.03 ** 2 + 0.005236 ** 2), rel=1e-5)
    ages = [0.0, 0.1, 0.3, 0.6, 1.0]
    sig = [at(a) for a in ages]
    assert all(b > a for a, b in zip(sig, sig[1:], strict=False))
    assert sig[0] == pytest.approx(math.hypot(0.03, 0.005236), rel=1e-4)  # only the clock when fresh


def test_obliquity_stretches_the_error_and_the_horizon_cannot_be_placed() -> None:
    m = motion(tilt_rate_rps=10 * DEG, attitude_age_s=0.05)
    s = place_sigma_m(30.0, np.array([0.0, 45 * DEG, 60 * DEG, 90 * DEG]), m)
    assert s[1] / s[0] == pytest.approx(2.0, rel=1e-9) and s[2] / s[0] == pytest.approx(4.0, rel=1e-9)  # 1/cos^2
    assert math.isinf(s[3])
    # a heading error swings the off-nadir ground by h tan(theta): nothing straight down
    yaw = motion(yaw_rate_rps=20 * DEG, attitude_age_s=0.05)
    s = place_sigma_m(30.0, np.array([0.0, 45 * DEG]), yaw)
    assert s[0] == 0.0 and s[1] == pytest.approx(30.0 * 20 * DEG * 0.05, rel=1e-9)


def test_the_attitude_miss_is_what_a_turn_at_an_unknown_time_does_to_a_linear_interpolation() -> None:
    rng = np.random.default_rng(1)
    T, rate = 0.25, 40 * DEG
    for age in (0.0, 0.05, 0.125):
        tau = rng.uniform(0, T, 200_000)  # the instant the whole turn rate * T happened
        true = np.where(tau < age, rate * T, 0.0)
        lin = rate * T * age / T
        assert np.sqrt(np.mean((true - lin) ** 2)) == pytest.approx(unknown_time_miss(rate, age, T), rel=0.01, abs=1e-9)
    assert unknown_time_miss(rate, 0.3, None) == pytest.approx(rate * 0.3)  # held past the end


def test_the_position_miss_is_what_a_velocity_change_at_an_unknown_time_does_to_the_hermite_curve() -> None:
    rng = np.random.default_rng(2)
    T, acc = 0.25, 6.0
    dv = acc * T
    for age in (0.03, 0.1, 0.125):
        misses = []
        for tau in rng.uniform(0, T, 4000):
            # east velocity 0 until tau, dv after; samples at 0 and T with their true positions and velocities
            a = LocalPositionSample(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
            b = LocalPositionSample(T, 0.0, dv * (T - tau), 0.0, 0.0, dv, 0.0)
            p, _v, _age, _x = interpolate_local([a, b], age)
            misses.append(dv * max(age - tau, 0.0) - p[0])
        rms = float(np.sqrt(np.mean(np.square(misses))))
        assert rms == pytest.approx(position_miss_m(acc, age, T), rel=0.03)
    assert position_miss_m(acc, 0.4, None) == pytest.approx(0.5 * acc * 0.16)


def test_overlap_share_of_a_displaced_square() -> None:
    assert overlap_share(0.0, 64.0)[()] == 1.0
    # by hand: side 8 m, sigma 1 m: (1 - 0.797885 / 8)^2 = 0.810477
    assert overlap_share(1.0, 64.0)[()] == pytest.approx(0.810477, abs=1e-6)
    rng = np.random.default_rng(3)
    d = np.abs(rng.normal(0.0, 1.0, (200_000, 2)))
    mc = float(np.mean(np.prod(np.clip(8.0 - d, 0, None), axis=1)) / 64.0)
    assert overlap_share(1.0, 64.0)[()] == pytest.approx(mc, rel=2e-3)
    assert overlap_share(np.inf, 64.0)[()] == 0.0 and overlap_share(100.0, 64.0)[()] == 0.0


def test_place_book_weights_sigma_by_evidence_per_block() -> None:
    book = PlaceBook(32.0)
    book.add(np.array([[5.0, 5.0], [6.0, 6.0], [100.0, 5.0]]), np.array([1.0, 3.0, 9.0]), np.array([3.0, 1.0, 1.0]))
    assert book.rms((0.0, 0.0, 10.0, 10.0)) == pytest.approx(math.sqrt((3 * 1 + 1 * 9) / 4))
    assert book.rms((90.0, 0.0, 110.0, 10.0)) == pytest.approx(9.0)
    assert book.rms((0.0, 500.0, 10.0, 510.0)) == 0.0  # never seen


def test_clock_sync_uncertainty_follows_the_link_jitter_and_timesync() -> None:
    c = ClockSync()
    assert c.uncertainty_s == 0.0
    for i in range(20):
        c.observe(float(i), 100.0 + i + 0.002)  # every message 2 ms late: no jitter
    assert c.uncertainty_s == pytest.approx(STAMP_SIGMA_S)
    for i in range(20, 100):
        c.observe(float(i), 100.0 + i + 0.002 + (0.02 if i % 3 else 0.0))  # two in three 20 ms later
    assert c.uncertainty_s - STAMP_SIGMA_S == pytest.approx(0.02)  # the typical message's delay over the fastest
    c.observe_roundtrip(200.0, 99.999, 200.001)  # a 1 ms round trip: within 0.5 ms, preferred (under 2 ms)
    assert c.source == "timesync" and c.uncertainty_s == pytest.approx(0.0005 + STAMP_SIGMA_S)


def test_the_issues_vtol_banked_on_its_recorded_rates_keeps_its_centre_and_loses_its_far_tiles() -> None:
    """45 m, 20 m/s, 30 deg bank rolling 15 deg/s and turning 16 deg/s, ATTITUDE 4.3 Hz, GLOBAL_POSITION_INT 3.9 Hz,
    the frame halfway, 5 ms clock: the figures docs/MAPS.md quotes for the axis and tiles 25 and 40 deg further out."""
    m = motion(speed_mps=20.0, accel_mps2=5.66, position_age_s=0.5 / 3.9, position_gap_s=1 / 3.9,
               tilt_rate_rps=15 * DEG, yaw_rate_rps=16 * DEG, attitude_age_s=0.5 / 4.3, attitude_gap_s=1 / 4.3,
               clock_sigma_s=0.005)
    s = place_sigma_m(45.0, np.array([30, 55, 70]) * DEG, m)
    assert s == pytest.approx([2.02, 4.66, 12.39], abs=0.01)
    assert overlap_share(s, 8.7 ** 2) == pytest.approx([0.66, 0.33, 0.0], abs=0.01)
