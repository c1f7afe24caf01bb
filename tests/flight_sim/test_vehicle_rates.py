"""The simulated vehicle honours stream-rate requests as ArduPilot does, or refuses them on purpose.

A raw pymavlink client asks the endpoint (a replayed 2 Hz copter flight, a 10 Hz scripted survey)
for other rates and counts what arrives; then the payload's own link asks, as it does in flight.
Rates are compared with wide margins (a Python endpoint on a shared machine): "several times the
recorded 2 Hz", not "exactly 20 Hz".
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from pymavlink import mavutil

from flight_sim.resample import Resampler, _blend
from flight_sim.timeline import Timeline
from flight_sim.vehicle import MAV_CMD_SET_MESSAGE_INTERVAL, VehicleEndpoint
from payload.config import TelemetrySection
from payload.vehicle.telemetry import Telemetry
from tests.flight_sim.conftest import free_tcp_port, free_udp_port
from tests.waiting import wait_for

ATTITUDE_ID = 30


def _recorded_hz(tl: Timeline, name: str, t0: float, t1: float) -> float:
    return sum(1 for e in tl.of(name) if t0 <= e.t < t1) / (t1 - t0)


@contextmanager
def _client(tl: Timeline, start_s: float = 300.0, **kw) -> Iterator[tuple[VehicleEndpoint, mavutil.mavfile]]:
    port = free_udp_port()
    client = mavutil.mavlink_connection(f"udpin:127.0.0.1:{port}", source_system=255)
    ep = VehicleEndpoint(tl, f"udp:127.0.0.1:{port}", speed=1.0, start_s=start_s, **kw)
    try:
        ep.start()
        assert client.recv_match(type="HEARTBEAT", blocking=True, timeout=5) is not None
        yield ep, client
    finally:
        ep.stop()
        client.close()


def _ack(client: mavutil.mavfile, timeout: float = 1.0) -> int | None:
    m = client.recv_match(type="COMMAND_ACK", condition=f"COMMAND_ACK.command=={MAV_CMD_SET_MESSAGE_INTERVAL}",
                          blocking=True, timeout=timeout)
    return None if m is None else int(m.result)


def _count(client: mavutil.mavfile, name: str, seconds: float) -> list:
    out = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        m = client.recv_match(type=name, blocking=True, timeout=0.2)
        if m is not None:
            out.append(m)
    return out


def test_resampling_interpolates_between_recorded_messages(survey: Timeline) -> None:
    # a scripted survey is resampled linearly (a recorded flight from its fit: test_trajectory.py)
    atts = survey.of("ATTITUDE")
    a, b = atts[500], atts[501]
    r = Resampler(survey)
    mid = r.fields_at("ATTITUDE", (a.t + b.t) / 2)
    assert mid is not None
    assert mid["time_boot_ms"] == pytest.approx((a.fields["time_boot_ms"] + b.fields["time_boot_ms"]) / 2, abs=1)
    assert mid["pitch"] == pytest.approx((a.fields["pitch"] + b.fields["pitch"]) / 2, abs=1e-6)
    assert r.fields_at("ATTITUDE", a.t) == pytest.approx(a.fields)
    assert r.fields_at("ATTITUDE", atts[0].t - 1.0) is None
    # yaw the short way round, in -pi..pi; a heading in centidegrees through north; unknown held
    assert abs(_blend(3.1, -3.1, 0.5, 2 * math.pi)) == pytest.approx(math.pi, abs=1e-9)
    assert _blend(35900, 100, 0.5, 36000.0) in (0, 36000)
    assert _blend(65535, 100, 0.5, 36000.0) == 65535


def test_set_message_interval_is_accepted_and_streams_at_the_requested_rate(copter: Timeline) -> None:
    recorded = _recorded_hz(copter, "ATTITUDE", 300.0, 320.0)
    assert recorded < 5.0  # a ground station's rate
    with _client(copter) as (ep, client):
        client.mav.command_long_send(1, 0, MAV_CMD_SET_MESSAGE_INTERVAL, 0, ATTITUDE_ID, 50_000, 0, 0, 0, 0, 0)
        assert _ack(client) == 0  # MAV_RESULT_ACCEPTED
        got = _count(client, "ATTITUDE", 2.0)
        assert ep.interval_requests == [("ATTITUDE", 0.05)]
    hz = len(got) / 2.0
    assert hz > 3 * recorded and 10.0 < hz < 26.0, hz  # ~20 Hz
    stamps = [m.time_boot_ms for m in got]
    assert all(b > a for a, b in zip(stamps, stamps[1:], strict=False)), "resampled time_boot_ms must advance"


def test_dronekits_all_streams_request_leaves_the_recorded_rates(survey: Timeline) -> None:
    recorded = _recorded_hz(survey, "ATTITUDE", 100.0, 120.0)
    with _client(survey, start_s=100.0) as (ep, client):
        client.mav.request_data_stream_send(1, 0, 0, 4, 1)  # MAV_DATA_STREAM_ALL at 4 Hz
        assert wait_for(lambda: ep.stream_requests == [(0, 4, 1)], 2.0)
        hz = len(_count(client, "ATTITUDE", 2.0)) / 2.0
    assert hz == pytest.approx(recorded, rel=0.4) and not ep.intervals


@pytest.mark.parametrize(("behaviour", "answer"), [("ignore", None), ("unsupported", 3)])
def test_a_refusing_vehicle_still_honours_request_data_stream(copter: Timeline, behaviour: str,
                                                              answer: int | None) -> None:
    recorded = _recorded_hz(copter, "ATTITUDE", 300.0, 320.0)
    with _client(copter, rate_requests=behaviour) as (ep, client):
        client.mav.command_long_send(1, 0, MAV_CMD_SET_MESSAGE_INTERVAL, 0, ATTITUDE_ID, 50_000, 0, 0, 0, 0, 0)
        assert _ack(client) == answer
        assert ep.interval_requests == [] and not ep.intervals
        client.mav.request_data_stream_send(1, 0, 10, 20, 1)  # EXTRA1 (ATTITUDE) at 20 Hz
        assert wait_for(lambda: "ATTITUDE" in ep.intervals, 2.0)
        hz = len(_count(client, "ATTITUDE", 2.0)) / 2.0
    assert hz > 3 * recorded, hz


def test_the_payload_gets_its_rates_from_the_replayed_flight(copter: Timeline) -> None:
    port = free_tcp_port()
    ep = VehicleEndpoint(copter, f"tcp:127.0.0.1:{port}", speed=1.0, start_s=300.0, restamp_time=True)
    tel = Telemetry(TelemetrySection(connection=f"tcp:127.0.0.1:{port}", connect_timeout_s=10, reconnect=False,
                                     rates={"attitude_hz": 20.0, "position_hz": 20.0, "measure_s": 1.5}))
    with ep:
        tel.start()
        try:
            assert wait_for(lambda: tel.rates_summary()["method"] == "SET_MESSAGE_INTERVAL", 5.0), tel.rates_summary()
            assert wait_for(lambda: tel.rates_summary()["measured_for_s"] >= 1.5, 5.0)
            m = tel.rates_summary()["measured"]
            assert m["ATTITUDE"]["hz"] > 10.0 and m["GLOBAL_POSITION_INT"]["hz"] > 10.0, m
            assert {"ATTITUDE", "GLOBAL_POSITION_INT", "GPS_RAW_INT", "SYSTEM_TIME"} <= set(ep.intervals)
        finally:
            tel.close()
