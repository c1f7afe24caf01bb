"""dronekit (unchanged) connects to the simulated vehicle and reads exactly what the source says."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dronekit
import numpy as np
import pytest
from pymavlink import mavutil

from flight_sim.errors import EndpointError
from flight_sim.timeline import Timeline
from flight_sim.tlog import read_tlog
from flight_sim.vehicle import VehicleEndpoint, parse_address
from tests.flight_sim.conftest import TlogBuilder, free_tcp_port, free_udp_port
from tests.flight_sim.test_tlog import _mixed_link

# dronekit's wait_ready handshake took ~0.3-1.5 s here; the limit only catches a hang (the connect
# timeout is 10 s), never a slow, loaded machine
CONNECT_LIMIT_S = 8.0


@contextmanager
def connected(ep: VehicleEndpoint, conn: str) -> Iterator[tuple[dronekit.Vehicle, float]]:
    """Start the endpoint, connect dronekit with wait_ready=True, yield (vehicle, seconds it took)."""
    with ep:
        t0 = time.monotonic()
        v = dronekit.connect(conn, wait_ready=True, timeout=10, heartbeat_timeout=10)
        took = time.monotonic() - t0
        try:
            yield v, took
        finally:
            v.close()


def _wait_hold(ep: VehicleEndpoint, v: dronekit.Vehicle) -> None:
    """Wait until the window has been sent and the held state re-sent (bounded)."""
    assert ep.wait_done(0) is False
    deadline = time.monotonic() + 10
    while not ep.clock.finished() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ep.clock.finished()
    time.sleep(1.3)  # one more hold period: the client has the final state


def _assert_reads_source(v: dronekit.Vehicle, tl: Timeline, t: float) -> None:
    st = tl.state_at(t)
    g, a = st["GLOBAL_POSITION_INT"].fields, st["ATTITUDE"].fields
    loc = v.location.global_frame
    assert abs(loc.lat - g["lat"] / 1e7) <= 1e-7 and abs(loc.lon - g["lon"] / 1e7) <= 1e-7
    assert loc.alt == pytest.approx(g["alt"] / 1e3, abs=1e-3)
    assert v.location.global_relative_frame.alt == pytest.approx(g["relative_alt"] / 1e3, abs=1e-3)
    assert (v.attitude.roll, v.attitude.pitch, v.attitude.yaw) == (a["roll"], a["pitch"], a["yaw"])
    assert v.heading == st["VFR_HUD"].fields["heading"]
    hb = st["HEARTBEAT"].fields
    assert v.mode.name == mavutil.mode_mapping_bynumber(hb["type"])[hb["custom_mode"]]
    assert v.armed == bool(hb["base_mode"] & 128)
    home = st["HOME_POSITION"].fields
    assert v.home_location is not None
    assert abs(v.home_location.lat - home["latitude"] / 1e7) <= 1e-7
    assert len(v.parameters) == len(tl.params)


def test_dronekit_connects_to_replayed_flight_over_udp_and_reads_the_source(copter: Timeline) -> None:
    port = free_udp_port()
    ep = VehicleEndpoint(copter, f"udp:127.0.0.1:{port}", speed=10, start_s=600, end_s=606, at_end="hold")
    with connected(ep, f"udp:127.0.0.1:{port}") as (v, took):
        assert took < CONNECT_LIMIT_S
        _wait_hold(ep, v)
        _assert_reads_source(v, copter, 606)
        assert v.parameters["SYSID_THISMAV"] == 1
        g = copter.state_at(606)["MOUNT_STATUS"].fields
        assert v.gimbal.pitch == pytest.approx(g["pointing_a"] / 100)
        # what the payload tells the ground station is recorded for the tests
        v.message_factory.statustext_send(4, b"cropscout: rust hotspot 12 m NE")
        deadline = time.monotonic() + 3
        while not ep.statustexts() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ep.statustexts() == [(4, "cropscout: rust hotspot 12 m NE")]
        assert ep.received("PARAM_REQUEST_LIST")
        assert ep.sent_counts["AUTOPILOT_VERSION"] >= 1


def test_dronekit_connects_to_scripted_survey_over_tcp_and_reads_it(survey: Timeline) -> None:
    port = free_tcp_port()
    ep = VehicleEndpoint(survey, f"tcp:127.0.0.1:{port}", speed=10, start_s=60, end_s=65, at_end="hold")
    with connected(ep, f"tcp:127.0.0.1:{port}") as (v, took):
        assert took < CONNECT_LIMIT_S
        _wait_hold(ep, v)
        _assert_reads_source(v, survey, 65)
        assert v.mode.name == "AUTO" and v.armed


def test_dronekit_connects_from_the_start_of_a_replay_within_2s(copter: Timeline) -> None:
    port = free_udp_port()
    ep = VehicleEndpoint(copter, f"udp:127.0.0.1:{port}", speed=1)
    # the recording opens with 2.7 s of bare heartbeats; the replay starts where telemetry begins
    assert ep.clock.start_s == copter.ready_s == copter.of("ATTITUDE")[0].t
    with connected(ep, f"udp:127.0.0.1:{port}") as (_v, took):
        assert took < CONNECT_LIMIT_S


def test_plane_on_a_mixed_link_reads_plane_modes(tlog_builder: TlogBuilder, tmp_path: Path) -> None:
    _mixed_link(tlog_builder)
    tl = read_tlog(tlog_builder.write(tmp_path / "mixed.tlog"))
    port = free_tcp_port()
    ep = VehicleEndpoint(tl, f"tcp:127.0.0.1:{port}", speed=10, start_s=20, end_s=25, at_end="hold")
    with connected(ep, f"tcp:127.0.0.1:{port}") as (v, took):
        assert took < CONNECT_LIMIT_S
        _wait_hold(ep, v)
        assert v.mode.name == "AUTO"  # plane custom_mode 10, not a copter mode
        assert v.parameters["TRIM_ARSPD_CM"] == 1500


SPEED_TOLERANCE = 0.2


def _slope(xs: list[float], ys: list[float]) -> float:
    return float(np.polyfit(np.asarray(xs), np.asarray(ys), 1)[0])


@pytest.mark.parametrize("speed", [10.0, 50.0])
def test_speed_factor_holds(copter: Timeline, speed: float) -> None:
    """Flight seconds per wall second, measured by a raw pymavlink client over a bounded window."""
    t_of_boot = {e.fields["time_boot_ms"]: e.t for e in copter.of("ATTITUDE")}
    port = free_udp_port()
    client = mavutil.mavlink_connection(f"udpin:127.0.0.1:{port}")
    ep = VehicleEndpoint(copter, f"udp:127.0.0.1:{port}", speed=speed, start_s=300)
    walls: list[float] = []
    flight: list[float] = []
    try:
        ep.start()
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            m = client.recv_match(type="ATTITUDE", blocking=True, timeout=0.5)
            if m is not None and m.time_boot_ms in t_of_boot:
                walls.append(time.monotonic())
                flight.append(t_of_boot[m.time_boot_ms])
    finally:
        ep.stop()
        client.close()
    assert len(walls) > 20
    measured = _slope(walls, flight)
    # a loaded machine only delays sends (never advances them): over 3 s that bends the slope by a few
    # percent at most; 20 % still tells 10x from 8x or 12x, and 50x from 40x
    assert measured / speed == pytest.approx(1.0, abs=SPEED_TOLERANCE), measured
    # the endpoint's own log agrees (what it sent, when)
    log = [(w, t) for w, t, n in ep.send_log if n == "ATTITUDE"][5:]
    assert _slope([w for w, _ in log], [t for _, t in log]) / speed == pytest.approx(1.0, abs=SPEED_TOLERANCE)


def test_loop_wraps_and_hold_repeats(survey: Timeline) -> None:
    ep = VehicleEndpoint(survey, f"udp:127.0.0.1:{free_udp_port()}", speed=50, start_s=10, end_s=20, at_end="loop")
    with ep:
        deadline = time.monotonic() + 3
        while ep.clock.lap() < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ep.clock.lap() >= 2 and not ep.done.is_set()
        laps = ep.sent_counts["ATTITUDE"]
    assert laps >= 2 * 100  # 10 s of 10 Hz attitude per lap


def test_stop_at_end_sets_done(survey: Timeline) -> None:
    ep = VehicleEndpoint(survey, f"udp:127.0.0.1:{free_udp_port()}", speed=50, start_s=100, end_s=105)
    with ep:
        assert ep.wait_done(3.0)
    assert ep.error is None
    assert ep.sent_counts["GLOBAL_POSITION_INT"] == len([e for e in survey.of("GLOBAL_POSITION_INT")
                                                         if 100 <= e.t <= 105])  # fmt: skip


def test_wait_for_client_holds_the_clock(survey: Timeline) -> None:
    port = free_tcp_port()
    ep = VehicleEndpoint(survey, f"tcp:127.0.0.1:{port}", speed=10, wait_for_client=True)
    with ep:
        time.sleep(0.3)
        assert not ep.clock.started and ep.clock.now() == 0.0
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            assert ep.clock.wait_started(2.0)


def test_port_in_use_is_a_clear_error(survey: Timeline) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        ep = VehicleEndpoint(survey, f"tcp:127.0.0.1:{port}")
        with pytest.raises(EndpointError, match=f"port {port} is already in use"):
            ep.start()


@pytest.mark.parametrize("addr", ["127.0.0.1:5760", "serial:/dev/ttyS0:57600", "tcp:127.0.0.1:99999", "udp::14550"])
def test_bad_address_is_a_clear_error(addr: str) -> None:
    with pytest.raises(EndpointError, match="use udp:HOST:PORT"):
        parse_address(addr)


@pytest.mark.parametrize(("kw", "fragment"), [({"speed": 80}, "speed 80"), ({"start_s": 5000}, "start 5000")])
def test_bad_speed_or_start_is_a_clear_error(survey: Timeline, kw: dict, fragment: str) -> None:
    with pytest.raises(EndpointError, match=fragment):
        VehicleEndpoint(survey, "udp:127.0.0.1:14550", **kw)


def test_restamped_clock_fields_tick_with_the_wall_clock(copter: Timeline) -> None:
    """At 10x the recorded time_boot_ms runs 10x too fast; restamped it runs at 1 ms per wall ms."""
    port = free_udp_port()
    client = mavutil.mavlink_connection(f"udpin:127.0.0.1:{port}")
    ep = VehicleEndpoint(copter, f"udp:127.0.0.1:{port}", speed=10, start_s=300, restamp_time=True)
    walls: list[float] = []
    boots: list[float] = []
    try:
        ep.start()
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            m = client.recv_match(type="ATTITUDE", blocking=True, timeout=0.5)
            if m is not None:
                walls.append(time.monotonic())
                boots.append(m.time_boot_ms / 1000)
    finally:
        ep.stop()
        client.close()
    assert len(walls) > 10
    assert _slope(walls, boots) == pytest.approx(1.0, abs=SPEED_TOLERANCE)


@pytest.mark.parametrize("restamp", [False, True])
def test_timesync_is_answered_with_the_boot_clock(copter: Timeline, restamp: bool) -> None:
    port = free_udp_port()
    client = mavutil.mavlink_connection(f"udpin:127.0.0.1:{port}", source_system=255)
    ep = VehicleEndpoint(copter, f"udp:127.0.0.1:{port}", speed=1, start_s=300, restamp_time=restamp)
    try:
        ep.start()
        assert client.recv_match(type="HEARTBEAT", blocking=True, timeout=3) is not None
        client.mav.timesync_send(0, 424242)
        reply = None
        deadline = time.monotonic() + 3
        while reply is None and time.monotonic() < deadline:
            m = client.recv_match(type="TIMESYNC", blocking=True, timeout=0.5)
            if m is not None and m.ts1 == 424242:
                reply = m
        latest = client.recv_match(type="ATTITUDE", blocking=True, timeout=3)
    finally:
        ep.stop()
        client.close()
    assert reply is not None and latest is not None
    # the reply's boot time agrees with the time_boot_ms the vehicle is streaming (same clock)
    assert reply.tc1 / 1e9 == pytest.approx(latest.time_boot_ms / 1000, abs=1.0)


def test_parameter_read_by_index_and_name_and_set(copter: Timeline) -> None:
    port = free_udp_port()
    client = mavutil.mavlink_connection(f"udpin:127.0.0.1:{port}", source_system=255)
    ep = VehicleEndpoint(copter, f"udp:127.0.0.1:{port}", speed=1, start_s=300)

    def reply(want: str) -> dict:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            m = client.recv_match(type="PARAM_VALUE", blocking=True, timeout=0.5)
            if m is not None and m.param_id == want:
                return m.to_dict()
        raise AssertionError(f"no PARAM_VALUE {want}")

    try:
        ep.start()
        assert client.recv_match(type="HEARTBEAT", blocking=True, timeout=3) is not None
        p5 = copter.params[5]
        client.mav.param_request_read_send(1, 1, b"", 5)
        got = reply(p5.name)
        assert (got["param_index"], got["param_count"]) == (5, 491)
        assert got["param_value"] == pytest.approx(p5.value)
        client.mav.param_request_read_send(1, 1, b"SYSID_THISMAV", -1)
        assert reply("SYSID_THISMAV")["param_value"] == 1
        client.mav.param_set_send(1, 1, b"SYSID_MYGCS", 250.0, 2)
        assert reply("SYSID_MYGCS")["param_value"] == 250
        client.mav.command_long_send(1, 1, 520, 0, 1, 0, 0, 0, 0, 0, 0)
        av = client.recv_match(type="AUTOPILOT_VERSION", blocking=True, timeout=3)
        assert av is not None and av.capabilities & 2  # PARAM_FLOAT
    finally:
        ep.stop()
        client.close()
    assert [r.name for r in ep.received() if r.name.startswith("PARAM")] == [
        "PARAM_REQUEST_READ", "PARAM_REQUEST_READ", "PARAM_SET"
    ]  # fmt: skip
