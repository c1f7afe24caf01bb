"""The telemetry decoders, one MAVLink message at a time, with no link (payload/vehicle/decoders.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from payload.vehicle.decoders import DECODERS, Rx
from payload.vehicle.poseinterp import StateBuffer


def _rx(t_rx: float = 10.0, **kw) -> Rx:
    return Rx(StateBuffer(), t_rx, **kw)


def test_global_position_int_becomes_a_position_in_degrees_and_metres() -> None:
    rx = _rx()
    DECODERS["SYSTEM_TIME"](SimpleNamespace(time_boot_ms=5000), rx)
    DECODERS["GLOBAL_POSITION_INT"](SimpleNamespace(time_boot_ms=5000, lat=521234567, lon=-12345678, alt=101500,
                                                    relative_alt=30000, vx=100, vy=-50, vz=0), rx)
    DECODERS["ATTITUDE"](SimpleNamespace(time_boot_ms=5000, roll=0.0, pitch=0.0, yaw=0.5), rx)
    DECODERS["GPS_RAW_INT"](SimpleNamespace(eph=120, satellites_visible=11, fix_type=3), rx)
    est = rx.buffer.state_at_boot(5.0)
    assert est is not None
    assert est.pose.lat_deg == pytest.approx(52.1234567) and est.pose.lon_deg == pytest.approx(-1.2345678)
    assert est.relative_alt_m == pytest.approx(30.0) and est.pose.yaw_rad == pytest.approx(0.5)
    gps = rx.buffer.latest_gps()
    assert gps is not None and gps.hdop == pytest.approx(1.2) and gps.satellites == 11 and gps.fix_type == 3


def test_gps_raw_int_unknowns_stay_unknown() -> None:
    rx = _rx()
    DECODERS["GPS_RAW_INT"](SimpleNamespace(eph=65535, satellites_visible=255, fix_type=0), rx)
    gps = rx.buffer.latest_gps()
    assert gps is not None and gps.hdop is None and gps.satellites is None


def test_home_and_origin_in_degrees_and_metres() -> None:
    rx = _rx()
    DECODERS["HOME_POSITION"](SimpleNamespace(latitude=521000000, longitude=-11000000, altitude=95000), rx)
    DECODERS["GPS_GLOBAL_ORIGIN"](SimpleNamespace(latitude=10000000, longitude=20000000, altitude=1000), rx)
    assert rx.buffer.home == pytest.approx((52.1, -1.1, 95.0))
    assert rx.buffer.origin == pytest.approx((1.0, 2.0, 1.0))


def test_timesync_answers_only_our_requests() -> None:
    pending = {123: 9.5}
    rx = _rx(timesync_pending=pending)
    DECODERS["TIMESYNC"](SimpleNamespace(tc1=0, ts1=123), rx)  # the vehicle's own request: not an answer
    assert pending == {123: 9.5} and not rx.buffer.clock.known
    DECODERS["TIMESYNC"](SimpleNamespace(tc1=7_000_000_000, ts1=123), rx)
    assert pending == {} and rx.buffer.clock.known


def test_estimator_reports_of_both_autopilots() -> None:
    rx = _rx()
    DECODERS["EKF_STATUS_REPORT"](SimpleNamespace(flags=0x1FF, velocity_variance=0.1, pos_horiz_variance=0.2,
                                                  pos_vert_variance=0.3), rx)
    h = rx.buffer.latest_estimator()
    assert h is not None and h.source == "EKF_STATUS_REPORT" and h.pos_horiz_variance == pytest.approx(0.2)
    DECODERS["ESTIMATOR_STATUS"](SimpleNamespace(flags=0x1FF, vel_ratio=0.4, pos_horiz_ratio=0.5,
                                                 pos_vert_ratio=0.6), _rx2 := _rx())
    h2 = _rx2.buffer.latest_estimator()
    assert h2 is not None and h2.source == "ESTIMATOR_STATUS" and h2.pos_vert_variance == pytest.approx(0.6)
