"""The payload asks the autopilot for the rates geotagging needs, falls back when refused, and measures them.

The pure parts (one request round, the meter) with hand-fed answers; then the link against the
loopback vehicle: one that honours SET_MESSAGE_INTERVAL as ArduPilot does, one that never answers
it and one that answers UNSUPPORTED (both honour REQUEST_DATA_STREAM, so the fallback is seen to
work), a reboot and a silence after which the payload asks again, the preflight line and its floor,
and the rates in the run's stats. Rates are asserted with wide margins (the test vehicle is a
Python thread on a shared machine): "well above the 4 Hz it started at", not "25.0 Hz".
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from payload.capture.sources import InProcessSource
from payload.config import PayloadConfig, PreflightSection, TelemetrySection
from payload.ops.preflight import PreflightError, check_telemetry, run_preflight
from payload.pipeline.runner import run_payload
from payload.report.data import ReportData
from payload.report.html import flown_facts
from payload.settings.geotag import GeotagSection
from payload.settings.telemetry import RatesSection
from payload.types import Frame
from payload.vehicle.rates import (
    MAV_CMD_SET_MESSAGE_INTERVAL,
    MESSAGE_IDS,
    RateMeter,
    RateRequest,
    floors,
    stream_rates,
    wanted_rates,
)
from payload.vehicle.telemetry import Telemetry
from tests.mavtestvehicle import MavTestVehicle, free_udp_port
from tests.payload import tinymodel
from tests.payload.test_telemetry_link import HOME, straight_flight
from tests.waiting import wait_for

FAST = {"attitude_hz": 25.0, "position_hz": 20.0, "measure_s": 1.5, "ack_timeout_s": 1.0}


# ---------------------------------------------------------------- one round, no link
def test_every_accepted_answer_means_set_message_interval_and_no_fallback() -> None:
    want = wanted_rates(RatesSection(), "global")
    assert set(want) == {"ATTITUDE", "GLOBAL_POSITION_INT", "GPS_RAW_INT", "SYSTEM_TIME"}
    assert 20.0 <= want["ATTITUDE"] <= 50.0 and 20.0 <= want["GLOBAL_POSITION_INT"] <= 50.0
    sent: list[tuple[int, float]] = []
    streams: list[tuple[int, int]] = []
    r = RateRequest(want, ack_timeout_s=1.0)
    r.send(lambda mid, us: sent.append((mid, us)), now=100.0)
    assert dict(sent)[MESSAGE_IDS["ATTITUDE"]] == pytest.approx(1e6 / want["ATTITUDE"])
    r.on_ack(520, 0)  # another command's answer does not count
    for _ in want:
        assert not r.poll(lambda s, hz: streams.append((s, hz)), now=100.1)
        r.on_ack(MAV_CMD_SET_MESSAGE_INTERVAL, 0)
    assert not r.poll(lambda s, hz: streams.append((s, hz)), now=100.2)
    assert r.method == "SET_MESSAGE_INTERVAL" and not r.pending and streams == []


@pytest.mark.parametrize(("acks", "reason"), [([0, 3], "refused"), ([0], "1 of 4 SET_MESSAGE_INTERVAL answered")])
def test_a_refusal_or_a_missing_answer_falls_back_to_stream_groups(acks: list[int], reason: str) -> None:
    want = wanted_rates(RatesSection(attitude_hz=30.0, position_hz=22.5, gps_hz=2.0, system_time_hz=1.0), "global")
    streams: list[tuple[int, int]] = []
    r = RateRequest(want, ack_timeout_s=1.0)
    r.send(lambda *_: None, now=0.0)
    for a in acks:
        r.on_ack(MAV_CMD_SET_MESSAGE_INTERVAL, a)
    fell_back = r.poll(lambda s, hz: streams.append((s, hz)), now=0.1 if 3 in acks else 1.01)
    assert fell_back and r.method == "REQUEST_DATA_STREAM" and reason in (r.fallback_reason or "")
    # EXTRA1 carries ATTITUDE, POSITION carries GLOBAL_POSITION_INT (rounded up to whole Hz)
    assert dict(streams) == {10: 30, 6: 23, 2: 2, 12: 1}


def test_no_answer_yet_is_waited_for() -> None:
    r = RateRequest({"ATTITUDE": 25.0}, ack_timeout_s=1.0)
    r.send(lambda *_: None, now=0.0)
    assert not r.poll(lambda *_: None, now=0.5) and r.pending


def test_stream_groups_take_the_fastest_member_and_local_frame_asks_local_position() -> None:
    want = wanted_rates(RatesSection(position_hz=40.0, estimator_hz=3.0, system_time_hz=1.5), "local")
    assert "GLOBAL_POSITION_INT" not in want and want["LOCAL_POSITION_NED"] == 40.0
    assert stream_rates(want)[12] == 3  # EXTRA3: EKF_STATUS_REPORT 3 Hz beats SYSTEM_TIME 1.5 Hz
    assert floors(RatesSection(), "local") == {"ATTITUDE": 10.0, "LOCAL_POSITION_NED": 10.0}
    assert floors(RatesSection(attitude_min_hz=0), "global") == {"GLOBAL_POSITION_INT": 10.0}


def test_meter_measures_the_window_and_keeps_the_slowest() -> None:
    m = RateMeter(window_s=2.0)
    m.reset(0.0)
    t = 0.0
    while t < 4.0:  # 20 Hz for 4 s
        m.on_message("ATTITUDE", t)
        m.sample(t)
        t += 0.05
    while t < 8.0:  # then 5 Hz
        m.on_message("ATTITUDE", t)
        m.sample(t)
        t += 0.2
    s = m.summary(8.0)["ATTITUDE"]
    assert s["hz"] == pytest.approx(5.0, abs=0.6)
    assert s["min_window_hz"] == pytest.approx(5.0, abs=0.6)
    assert s["mean_hz"] == pytest.approx((80 + 20) / 8.0, abs=1.0)
    m.on_message("HEARTBEAT", 8.0)  # not measured
    assert set(m.summary(8.0)) == {"ATTITUDE"}


def test_a_lost_link_is_not_a_slow_window() -> None:
    m = RateMeter(window_s=1.0)
    m.reset(0.0)
    t = 0.0
    while t < 10.0:
        silent = 3.0 <= t < 6.0  # the link is lost for 3 s
        if silent:
            m.skip(t)
        else:
            m.on_message("ATTITUDE", t)
            m.sample(t)
        t += 0.04
    assert m.summary(10.0)["ATTITUDE"]["min_window_hz"] > 20.0
    m.sample(10.5)  # without skip the same silence would be the slowest window
    m.sample(12.0)
    assert m.summary(12.0)["ATTITUDE"]["min_window_hz"] == 0.0


# ---------------------------------------------------------------- the link
def _tel(port: int, **rates) -> Telemetry:
    return Telemetry(TelemetrySection(connection=f"udp:127.0.0.1:{port}", connect_timeout_s=10.0,
                                      link_timeout_s=1.0, reconnect_max_s=1.0, rates={**FAST, **rates}))


def _hz(tel: Telemetry, name: str) -> float:
    return float(tel.rates_summary()["measured"].get(name, {}).get("hz", 0.0))


def _settled(tel: Telemetry) -> bool:
    r = tel.rates_summary()
    return not r["method"].startswith("waiting") and r["measured_for_s"] >= r["window_s"]


def test_an_ardupilot_vehicle_streams_at_the_requested_rates() -> None:
    port = free_udp_port()
    with MavTestVehicle(port, straight_flight, home=HOME, rate_hz=4.0, rate_requests="ardupilot") as v:
        tel = _tel(port)
        tel.start()
        try:
            assert wait_for(lambda: tel.rates_summary()["method"] == "SET_MESSAGE_INTERVAL", 5.0), tel.rates_summary()
            asked = dict(v.interval_requests)
            assert asked["ATTITUDE"] == pytest.approx(1 / 25.0) and asked["GLOBAL_POSITION_INT"] == pytest.approx(0.05)
            assert wait_for(lambda: _settled(tel), 5.0)
            # dronekit asked for everything at 4 Hz while connecting; the payload's request came after it
            assert any(s == (0, 4, 1) for s in v.stream_requests)
            assert wait_for(lambda: _hz(tel, "ATTITUDE") > 12.0 and _hz(tel, "GLOBAL_POSITION_INT") > 10.0, 5.0), \
                tel.rates_summary()
            checks = check_telemetry(tel, GeotagSection())
            rates = next(c for c in checks if c.name == "telemetry rates")
            assert rates.ok, rates.detail
            assert "ATTITUDE" in rates.detail and "via SET_MESSAGE_INTERVAL" in rates.detail
        finally:
            tel.close()


@pytest.mark.parametrize("behaviour", ["ignore", "unsupported"])
def test_a_vehicle_that_refuses_the_command_is_asked_with_request_data_stream(behaviour: str) -> None:
    port = free_udp_port()
    with MavTestVehicle(port, straight_flight, home=HOME, rate_hz=4.0, rate_requests=behaviour) as v:
        tel = _tel(port)
        tel.start()
        try:
            assert wait_for(lambda: tel.rates_summary()["method"] == "REQUEST_DATA_STREAM", 5.0), tel.rates_summary()
            why = tel.rates_summary()["fallback_reason"]
            assert ("refused" in why) if behaviour == "unsupported" else ("answered within" in why)
            assert wait_for(lambda: (10, 25, 1) in v.stream_requests and (6, 20, 1) in v.stream_requests, 3.0), \
                v.stream_requests
            assert v.interval_requests == []  # the vehicle never took an interval
            assert wait_for(lambda: _settled(tel) and _hz(tel, "ATTITUDE") > 12.0, 6.0), tel.rates_summary()
        finally:
            tel.close()


def test_a_rebooted_autopilot_is_asked_again() -> None:
    port = free_udp_port()
    tel = _tel(port)
    v = MavTestVehicle(port, straight_flight, home=HOME, rate_hz=4.0, boot_offset_s=731.0,
                       rate_requests="ardupilot").start()
    try:
        tel.start()
        assert wait_for(lambda: tel.rates_summary()["method"] == "SET_MESSAGE_INTERVAL", 5.0)
        rounds = tel.rate_requests
        v.stop()
        # back within the link timeout, but its boot clock restarted: it forgot every interval it was given
        with MavTestVehicle(port, straight_flight, home=HOME, rate_hz=4.0, boot_offset_s=5.0,
                            rate_requests="ardupilot") as again:
            assert wait_for(lambda: tel.buffer.reboots >= 1, 5.0)
            assert wait_for(lambda: again.interval_requests and tel.rate_requests > rounds, 5.0), tel.rates_summary()
            assert wait_for(lambda: _settled(tel) and _hz(tel, "ATTITUDE") > 12.0, 6.0), tel.rates_summary()
    finally:
        tel.close()


def test_a_link_that_went_silent_and_came_back_is_asked_again() -> None:
    port = free_udp_port()
    tel = _tel(port)
    v = MavTestVehicle(port, straight_flight, home=HOME, rate_hz=4.0, rate_requests="ardupilot").start()
    try:
        tel.start()
        assert wait_for(lambda: tel.rates_summary()["method"] == "SET_MESSAGE_INTERVAL", 5.0)
        rounds = tel.rate_requests
        v.stop()  # silent for longer than link_timeout_s, same boot clock when it returns
        assert wait_for(lambda: tel.link_lost_count >= 1, 4.0)
        with MavTestVehicle(port, straight_flight, home=HOME, rate_hz=4.0, rate_requests="ardupilot") as again:
            assert wait_for(lambda: tel.rate_requests > rounds and again.interval_requests, 5.0), tel.rates_summary()
    finally:
        tel.close()


# ---------------------------------------------------------------- preflight and stats
def test_a_rate_below_the_floor_warns_and_stops_a_strict_start(tmp_path: Path) -> None:
    port = free_udp_port()
    # a stack that says yes and keeps its 4 Hz (the "fixed" test vehicle): measured, not believed
    with MavTestVehicle(port, straight_flight, home=HOME, rate_hz=4.0):
        tel = _tel(port)
        tel.start()
        try:
            assert wait_for(lambda: tel.buffer.home is not None, 5.0)
            rep = run_preflight(PreflightSection(min_free_disk_mb=1), GeotagSection(), tmp_path, tel)
            failed = {c.name: c for c in rep.failed}
            assert "telemetry rates" in failed, rep.block()
            line = failed["telemetry rates"].detail
            assert "BELOW FLOOR: ATTITUDE, GLOBAL_POSITION_INT" in line and "floor 10" in line
            got = tel.rates_summary()["measured"]["ATTITUDE"]["hz"]
            assert 1.5 < got < 8.0  # about the 4 Hz it sends
            with pytest.raises(PreflightError, match="telemetry rates"):
                run_preflight(PreflightSection(min_free_disk_mb=1, strict=True), GeotagSection(), tmp_path, tel)
        finally:
            tel.close()


def test_no_request_and_no_floor_is_not_a_failure(tmp_path: Path) -> None:
    port = free_udp_port()
    with MavTestVehicle(port, straight_flight, home=HOME, rate_hz=4.0, rate_requests="ardupilot") as v:
        tel = _tel(port, request=False, attitude_min_hz=0, position_min_hz=0)
        tel.start()
        try:
            checks = check_telemetry(tel, GeotagSection())
            rates = next(c for c in checks if c.name == "telemetry rates")
            assert rates.ok and "not requested" in rates.detail
            assert v.interval_requests == []
        finally:
            tel.close()


def test_run_stats_carry_the_measured_rates(tmp_path: Path, tiny_bundle_dir: Path) -> None:
    bundle = tinymodel.copy_bundle(tiny_bundle_dir, tmp_path / "bundle")
    port = free_udp_port()
    with MavTestVehicle(port, straight_flight, home=HOME, rate_hz=4.0, rate_requests="ardupilot"):
        cfg = PayloadConfig.model_validate({
            "model": {"bundle": str(bundle), "backend": "cpu"},
            "tiling": {"rows": 1, "cols": 1, "stagger": False},
            "output": {"dir": str(tmp_path / "out")},
            "telemetry": {"connection": f"udp:127.0.0.1:{port}", "connect_timeout_s": 10, "rates": FAST},
            "preflight": {"min_free_disk_mb": 1},
            "report": {"enabled": False},
        })
        rng = np.random.default_rng(0)

        def frames():
            for i in range(3):
                time.sleep(0.5)
                yield Frame(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8), i, time.monotonic(), time.time(), "t")

        run_payload(cfg, source=InProcessSource(frames()), flight_dir=tmp_path / "out")  # this flight's folder
    d = json.loads((tmp_path / "out" / "run_stats.json").read_text())["telemetry_rates"]
    att = d["measured"]["ATTITUDE"]
    assert d["method"] == "SET_MESSAGE_INTERVAL" and d["wanted_hz"]["ATTITUDE"] == 25.0
    # the preflight waited for one measuring window at the requested rate before the frames came
    assert att["count"] > 20 and att["mean_hz"] > 10.0
    assert att["min_window_hz"] is None or att["min_window_hz"] > 8.0
    assert d["measured"]["GLOBAL_POSITION_INT"]["mean_hz"] > 8.0


def test_the_report_says_what_rates_geotagging_was_fed() -> None:
    d = ReportData(Path("."))
    d.stats = {"backend": "cpu", "telemetry_rates": {"method": "REQUEST_DATA_STREAM", "measured": {
        "ATTITUDE": {"mean_hz": 24.6, "min_window_hz": 19.5}, "GLOBAL_POSITION_INT": {"mean_hz": 3.9,
                                                                                    "min_window_hz": None}}}}
    rows = dict(flown_facts(d))
    line = rows["telemetry rates (mean / slowest window)"]
    assert "ATTITUDE 24.6 / 19.5 Hz" in line and "GLOBAL_POSITION_INT 3.9 / - Hz" in line
    assert "REQUEST_DATA_STREAM" in line
    d.stats = {"backend": "cpu"}  # a run without a link: no row
    assert "telemetry rates (mean / slowest window)" not in dict(flown_facts(d))
