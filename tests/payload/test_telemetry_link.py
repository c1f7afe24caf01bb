"""Integration: a pymavlink vehicle on loopback -> dronekit -> Telemetry -> GeotagHandler -> records.

Also the link's failure modes: nothing answering, a vehicle that never sends parameters, a refused
TCP connection, link loss and reconnect, and a handler that records (flagged) while no link is up.
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import pymap3d
import pytest

from payload.config import PayloadConfig, TelemetrySection
from payload.errors import TelemetryError
from payload.files.jsonl import read_jsonl
from payload.geo.camera import CameraModel, pixel_to_ground
from payload.pipeline.geotag import GeotagHandler
from payload.pipeline.runner import build_geotag_handler
from payload.sinks.jsonl import iter_detections
from payload.types import Pose
from payload.vehicle.telemetry import Telemetry
from tests.mavtestvehicle import MavTestVehicle, VehicleState, free_udp_port
from tests.payload.geotagdoubles import LABELS, frame_result
from tests.waiting import wait_for

HOME = (47.3977, 8.5456, 488.0)
SPEED, HEADING = 10.0, math.radians(45)
ROLL, PITCH, YAW = math.radians(3), math.radians(-2), math.radians(37)


def straight_flight(t_boot: float) -> VehicleState:
    """10 m/s towards the north-east, 30 m above home, crabbing with a fixed attitude."""
    vn, ve = SPEED * math.cos(HEADING), SPEED * math.sin(HEADING)
    lat, lon, alt = pymap3d.enu2geodetic(ve * t_boot, vn * t_boot, 30.0, *HOME)
    return VehicleState(float(lat), float(lon), float(alt), vn, ve, 0.0, ROLL, PITCH, YAW)


def _tel_cfg(port: int, **kw) -> TelemetrySection:
    base = {"connection": f"udp:127.0.0.1:{port}", "connect_timeout_s": 10.0, "link_timeout_s": 1.0}
    base.update(kw)
    return TelemetrySection(**base)


def _payload_cfg(tmp_path: Path, **sections) -> PayloadConfig:
    data = {"model": {"bundle": str(tmp_path / "bundle")}, "output": {"dir": str(tmp_path / "out")}}
    data["sinks"] = {"layers_interval_s": 0}
    data["alerts"] = {"min_interval_s": 0}
    data["map"] = {"prior_logodds": -0.5}  # four frames of one patch make a zone: this test is about the link
    data.update(sections)
    return PayloadConfig.model_validate(data)


@pytest.fixture()
def vehicle():
    port = free_udp_port()
    # 0.2 s gives the 0.25 s spacing of 4 Hz telemetry the requirement names, and a little margin
    v = MavTestVehicle(port, straight_flight, home=HOME, rate_hz=4.0, boot_offset_s=731.0)
    v.boot_offset = 731.0
    v.start()
    yield v
    v.stop()


@pytest.fixture()
def telemetry(vehicle):
    tel = Telemetry(_tel_cfg(vehicle.port))
    t0 = time.monotonic()
    tel.start()
    tel.measured_connect_s = time.monotonic() - t0
    assert wait_for(lambda: tel.buffer.home is not None and tel.buffer.counts()["position"] >= 6, 10.0)
    yield tel
    tel.close()


def test_vehicle_to_detections_with_correct_ground_positions(tmp_path: Path, vehicle, telemetry) -> None:
    assert telemetry.measured_connect_s < 10.0  # wait_ready took ~1 s here: this catches a hang, not a slow machine
    print(f"dronekit connect (wait_ready=True) took {telemetry.measured_connect_s:.2f} s")
    handler = GeotagHandler(_payload_cfg(tmp_path), labels=LABELS, model_sha256="cd" * 32, telemetry=telemetry)
    cam = CameraModel.from_hfov(640, 480, 62.2)
    errors = []
    boxes = [(288, 208, 64, 64), (0, 0, 64, 64), (560, 400, 80, 80)]
    for i in range(4):
        # a frame captured between telemetry samples, 60-190 ms ago
        t_frame = time.monotonic() - 0.06 - 0.043 * i
        handler.handle(frame_result(i, t_frame, boxes))
        truth = straight_flight(vehicle.boot_s(t_frame))
        pose = Pose(truth.lat, truth.lon, truth.alt, truth.roll, truth.pitch, truth.yaw)
        for det in list(iter_detections(handler.out_dir / "detections.jsonl"))[-3:]:
            assert det["trusted"], det["flags"]
            cx, cy = det["tile"]["x"] + det["tile"]["w"] / 2, det["tile"]["y"] + det["tile"]["h"] / 2
            lat, lon = pixel_to_ground(cam, cx, cy, pose, HOME[2])
            e, n, _ = pymap3d.geodetic2enu(det["lat"], det["lon"], HOME[2], lat, lon, HOME[2])
            errors.append(math.hypot(e, n))
            assert det["ground_alt_m"] == pytest.approx(HOME[2])  # from HOME_POSITION
            assert det["fix"]["type"] == 3 and det["fix"]["satellites"] == 12 and det["fix"]["hdop"] == 0.8
        time.sleep(0.11)
    print(f"ground position error vs truth: max {max(errors):.3f} m over {len(errors)} detections")
    assert max(errors) < 0.5
    handler.close()  # the last zones are cut and alerted at close
    # the new zone went out as STATUSTEXT and reached the vehicle's pymavlink listener
    assert wait_for(lambda: len(vehicle.statustexts) >= 1, 3.0)
    sev, text = vehicle.statustexts[0]
    assert sev == 4 and text.startswith("rust Z1 ") and len(text) <= 50
    summary = telemetry.summary()
    assert summary["link_ok"] and summary["clock_offset_source"] in ("timesync", "min_latency")
    assert summary["signing"] is None  # no telemetry.signing: the link is as it always was
    # the estimated clock offset matches the vehicle's boot clock
    assert abs(telemetry.buffer.clock.offset_s - vehicle.boot_start) < 0.02


def test_bad_telemetry_is_recorded_and_flagged(tmp_path: Path, vehicle, telemetry) -> None:
    handler = GeotagHandler(_payload_cfg(tmp_path), labels=LABELS, model_sha256="cd" * 32, telemetry=telemetry)
    cases = [("fix_type", 1, "no_fix"), ("zero_latlon", True, "latlon_zero"), ("nan_attitude", True, "attitude_nan")]
    seq = 0
    for attr, value, flag in cases:
        setattr(vehicle, attr, value)
        time.sleep(0.7)  # a few samples of the bad state
        seq += 1
        handler.handle(frame_result(seq, time.monotonic() - 0.05, [(0, 0, 64, 64)]))
        det = read_jsonl(handler.out_dir / "detections.jsonl").records[-1]
        assert flag in det["flags"] and not det["trusted"], (flag, det["flags"])
        setattr(vehicle, attr, type(value)(3) if attr == "fix_type" else False)
    # stale: the vehicle stops streaming; a frame taken 1.5 s later gets a dead-reckoned, flagged pose
    time.sleep(0.6)
    vehicle.paused = True
    time.sleep(1.5)
    seq += 1
    handler.handle(frame_result(seq, time.monotonic(), [(0, 0, 64, 64)]))
    det = read_jsonl(handler.out_dir / "detections.jsonl").records[-1]
    assert "pose_stale" in det["flags"] and det["pose"]["age_s"] > 1.0
    assert telemetry.link_ok  # heartbeats still arrive: the link is up, the data is stale
    handler.close()
    assert len(list(iter_detections(handler.out_dir / "detections.jsonl"))) == 4


def test_gimbal_angles_from_mount_status_steer_the_projection(tmp_path: Path, vehicle, telemetry) -> None:
    vehicle.gimbal_rpy_deg = (0.0, -60.0, 0.0)  # 30 deg forward of nadir
    assert wait_for(
        lambda: (e := telemetry.state_at(time.monotonic())) is not None and e.gimbal_rpy_deg is not None, 3.0
    )
    assert telemetry.state_at(time.monotonic()).gimbal_rpy_deg == pytest.approx((0.0, -60.0, 0.0))
    cfg = _payload_cfg(tmp_path, camera={"use_gimbal": True})
    handler = GeotagHandler(cfg, labels=LABELS, model_sha256="cd" * 32, telemetry=telemetry)
    t_frame = time.monotonic() - 0.05
    handler.handle(frame_result(1, t_frame, [(288, 208, 64, 64)]))  # the image centre
    handler.close()
    (det,) = iter_detections(handler.out_dir / "detections.jsonl")
    truth = straight_flight(vehicle.boot_s(t_frame))
    cam = CameraModel.from_hfov(640, 480, 62.2, mount_rpy_deg=(0.0, 30.0, 0.0))
    pose = Pose(truth.lat, truth.lon, truth.alt, truth.roll, truth.pitch, truth.yaw)
    lat, lon = pixel_to_ground(cam, 320, 240, pose, HOME[2])
    e, n, _ = pymap3d.geodetic2enu(det["lat"], det["lon"], HOME[2], lat, lon, HOME[2])
    assert math.hypot(e, n) < 0.5
    assert det["camera"]["mount_rpy_deg"] == [0.0, 30.0, 0.0]


def test_connect_times_out_when_nothing_answers() -> None:
    port = free_udp_port()
    tel = Telemetry(_tel_cfg(port, connect_timeout_s=1.5))
    t0 = time.monotonic()
    with pytest.raises(TelemetryError, match="no HEARTBEAT") as err:
        tel.connect()
    took = time.monotonic() - t0
    assert 1.5 * 0.9 <= took < 1.5 * 5  # it waited for the timeout, and gave up then (not a hang)
    assert f"udp:127.0.0.1:{port}" in str(err.value) and "telemetry.connect_timeout_s" in str(err.value)
    tel.close()
    # the port was released: it can be bound again at once
    tel2 = Telemetry(_tel_cfg(port, connect_timeout_s=0.5))
    with pytest.raises(TelemetryError):
        tel2.connect()


def test_connect_times_out_when_the_vehicle_never_sends_parameters() -> None:
    port = free_udp_port()
    with MavTestVehicle(port, straight_flight, home=HOME, answer_params=False):
        tel = Telemetry(_tel_cfg(port, connect_timeout_s=2.0))
        t0 = time.monotonic()
        with pytest.raises(TelemetryError, match="PARAM_REQUEST_LIST"):
            tel.connect()
        assert time.monotonic() - t0 < 2.0 * 5
    # dronekit's handshake loops have no timeout; the abandoned connect worker must still end
    assert wait_for(lambda: not any(t.name == "telemetry-connect" for t in threading.enumerate()), 5.0)


def test_refused_tcp_connection_is_a_clear_error() -> None:
    port = free_udp_port()  # nothing listens on this TCP port either
    tel = Telemetry(TelemetrySection(connection=f"tcp:127.0.0.1:{port}", connect_timeout_s=3.0))
    t0 = time.monotonic()
    with pytest.raises(TelemetryError, match="telemetry.connection|no usable MAVLink vehicle"):
        tel.connect()
    assert time.monotonic() - t0 < 3.0 * 5


def test_serial_link_names_what_is_missing() -> None:
    tel = Telemetry(TelemetrySection(connection="/dev/ttyCROPSCOUT_NONE", connect_timeout_s=2.0))
    t0 = time.monotonic()
    with pytest.raises(TelemetryError, match="/dev/ttyCROPSCOUT_NONE") as err:
        tel.connect()
    assert time.monotonic() - t0 < 2.0 * 5
    try:
        import serial  # noqa: F401
    except ModuleNotFoundError:
        assert "pyserial" in str(err.value)
    else:
        assert "cannot open" in str(err.value) or "no usable MAVLink vehicle" in str(err.value)


def test_no_link_configured_is_a_user_error() -> None:
    with pytest.raises(TelemetryError, match="set telemetry.connection"):
        Telemetry(TelemetrySection()).connect()


def test_handler_records_flagged_while_the_link_is_down(tmp_path: Path) -> None:
    port = free_udp_port()
    cfg = _payload_cfg(tmp_path, telemetry={"connection": f"udp:127.0.0.1:{port}", "connect_timeout_s": 1.0})
    handler = build_geotag_handler(cfg, labels=LABELS, model_sha256="cd" * 32)
    t0 = time.monotonic()
    handler.handle(frame_result(1, time.monotonic(), [(0, 0, 64, 64)]))
    assert time.monotonic() - t0 < 0.5  # the camera pipeline is never blocked by the link
    (det,) = iter_detections(handler.out_dir / "detections.jsonl")
    assert det["flags"] == ["no_telemetry"] and det["lat"] is None
    assert wait_for(lambda: handler.telemetry.last_error is not None, 5.0)
    assert "no HEARTBEAT" in handler.telemetry.last_error
    t0 = time.monotonic()
    handler.close()
    assert time.monotonic() - t0 < 8.0


def test_link_loss_then_reconnect(vehicle) -> None:
    tel = Telemetry(_tel_cfg(vehicle.port, reconnect_max_s=1.0))
    tel.start()
    try:
        assert wait_for(lambda: tel.link_ok, 3.0)
        vehicle.stop()  # the autopilot goes away entirely
        assert wait_for(lambda: not tel.link_ok, 3.0)
        assert wait_for(lambda: tel.link_lost_count >= 1, 2.0)
        # a short gap on UDP: the same socket hears the vehicle again, no reconnect needed
        with MavTestVehicle(vehicle.port, straight_flight, home=HOME, boot_offset_s=731.0):
            assert wait_for(lambda: tel.link_ok, 3.0)
        assert wait_for(lambda: not tel.link_ok, 3.0)
        # a long gap: the supervisor closes the link and reopens it until a vehicle answers
        assert wait_for(lambda: tel.vehicle is None, 5.0)
        # ... and it is an autopilot that rebooted 10 s ago: time_boot_ms went back by ~12 minutes
        with MavTestVehicle(vehicle.port, straight_flight, home=HOME, boot_offset_s=10.0) as again:
            assert wait_for(lambda: tel.reconnect_count >= 1 and tel.link_ok, 15.0), tel.summary()
            # the buffer noticed the reboot, dropped the old samples and follows the new boot clock
            assert wait_for(lambda: abs(tel.buffer.clock.offset_s - again.boot_start) < 0.02, 3.0)
            assert tel.buffer.reboots >= 1
            assert wait_for(lambda: (est := tel.state_at(time.monotonic())) is not None and est.age_s < 0.5, 3.0)
    finally:
        tel.close()
