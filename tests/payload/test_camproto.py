"""The payload as a MAVLink camera (payload/sinks/camproto.py, payload/vehicle/component.py).

Without sockets: which findings become CAMERA_IMAGE_CAPTURED (every new zone; detections at the rate
limit; untrusted ones never), what the fields hold, and how the camera answers requests.
Over loopback (LiveVehicle routing to a ground station, the way ArduPilot routes its ports; the ground
station is pymavlink, tools/mission/gcs.py): the camera heartbeat, CAMERA_INFORMATION with its COMMAND_ACK
for both ways of asking, and the captured messages, signed when the link signs.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import pytest

from payload.config import PayloadConfig, TelemetrySection
from payload.sinks.base import SinkContext
from payload.sinks.camproto import (
    MAV_CMD_REQUEST_CAMERA_INFORMATION,
    MAV_CMD_REQUEST_MESSAGE,
    CameraProtocolSection,
    CameraProtocolSink,
    model_name,
    quaternion,
)
from payload.sinks.registry import build_sinks
from payload.vehicle.telemetry import Telemetry
from tests.mavtestvehicle import MavTestVehicle, free_udp_port
from tests.payload.test_telemetry_link import HOME, straight_flight
from tests.waiting import wait_for
from tools.mission.gcs import GroundStation

pytestmark = pytest.mark.timeout(200)
SHA = "ab12cd34" + "0" * 56
KEY = hashlib.sha256(b"cropscout camera test").digest()


class FakeLink:
    """Records what the sink sends; `up` False stands for a link that is down."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.up = True
        self.closed = False

    @property
    def system_id(self) -> int | None:
        return 1

    def send(self, name: str, fields: dict[str, Any]) -> bool:
        if self.up:
            self.sent.append((name, fields))
        return self.up

    def close(self) -> None:
        self.closed = True


def _sink(tmp_path: Path, **settings: Any) -> tuple[CameraProtocolSink, FakeLink, list[float]]:
    now = [100.0]
    sink = CameraProtocolSink(CameraProtocolSection(**settings), tmp_path, SHA, clock=lambda: now[0])
    link = FakeLink()
    sink.link = link
    return sink, link, now


def _det(lat: float = 47.4, lon: float = 8.5, trusted: bool = True, crop: str | None = "crops/a.jpg") -> dict:
    return {"trusted": trusted, "lat": lat, "lon": lon, "label": "rust", "crop": crop, "height_agl_m": 30.0,
            "frame": {"t_wall": 1_700_000_000.25},
            "pose": {"alt_m": 518.0, "roll_deg": 0.0, "pitch_deg": 0.0, "yaw_deg": 90.0, "t_boot_s": 731.5}}


def _zone(lat: float | None = 47.41, lon: float | None = 8.51) -> dict:
    return {"properties": {"id": "z-3", "label": "rust", "peak_p": 0.9, "lat": lat, "lon": lon}, "polygons": []}


def _captured(link: FakeLink) -> list[dict[str, Any]]:
    return [f for n, f in link.sent if n == "CAMERA_IMAGE_CAPTURED"]


def test_zones_always_and_detections_at_the_rate_limit(tmp_path: Path) -> None:
    sink, link, now = _sink(tmp_path, detection_min_interval_s=5.0)
    sink.on_record(_det(), None)  # type: ignore[arg-type]
    sink.on_record(_det(lat=47.5), None)  # type: ignore[arg-type]  # 0 s later: held back
    sink.on_record(_det(trusted=False), None)  # type: ignore[arg-type]  # never: its place is not believed
    sink.on_zone(_zone())
    sink.on_zone(_zone(lat=47.42))
    now[0] += 5.0
    sink.on_record(_det(lat=47.6), None)  # type: ignore[arg-type]
    got = _captured(link)
    assert [f["lat"] for f in got] == [474000000, 474100000, 474200000, 476000000]
    assert [f["image_index"] for f in got] == [0, 1, 2, 3]
    assert all(f["capture_result"] == 1 for f in got)
    assert sink.counts["zones"] == 2 and sink.counts["detections"] == 2


def test_captured_fields_position_attitude_time_and_crop(tmp_path: Path) -> None:
    sink, link, _now = _sink(tmp_path)
    sink.on_record(_det(), None)  # type: ignore[arg-type]
    (f,) = _captured(link)
    assert (f["lat"], f["lon"]) == (474000000, 85000000)
    assert f["alt"] == 518000 and f["relative_alt"] == 30000
    assert f["time_boot_ms"] == 731500 and f["time_utc"] == 1_700_000_000_250_000
    w, x, y, z = f["q"]  # yaw 90 degrees about the down axis
    assert w == pytest.approx(math.cos(math.pi / 4)) and z == pytest.approx(math.sin(math.pi / 4))
    assert x == pytest.approx(0.0) and y == pytest.approx(0.0)
    assert f["file_url"] == (tmp_path / "crops/a.jpg").resolve().as_uri().encode()
    # a zone takes the newest trusted pose and the newest crop of its label
    sink.on_zone(_zone())
    z = _captured(link)[-1]
    assert z["alt"] == 518000 and z["file_url"].endswith(b"crops/a.jpg")


def test_a_zone_waits_while_the_link_is_down_and_the_index_has_no_gap(tmp_path: Path) -> None:
    sink, link, _now = _sink(tmp_path, file_url_base="http://10.0.0.5:8080/")
    link.up = False
    sink.on_zone(_zone())
    assert _captured(link) == [] and sink.counts["zones"] == 0
    link.up = True
    sink.on_snapshot()
    (f,) = _captured(link)
    assert f["image_index"] == 0
    sink.on_record(_det(), None)  # type: ignore[arg-type]
    assert _captured(link)[-1]["file_url"] == b"http://10.0.0.5:8080/crops/a.jpg"
    sink.on_zone(_zone(lat=None, lon=None))  # a rack face without an origin: no point to draw
    assert sink.counts["zones_without_position"] == 1 and len(_captured(link)) == 2
    sink.on_close()
    assert link.closed


def test_camera_answers_information_and_missed_images(tmp_path: Path) -> None:
    sink, link, _now = _sink(tmp_path, product="CropScout")
    result, msgs = sink.on_command(MAV_CMD_REQUEST_MESSAGE, [259.0, 0, 0, 0, 0, 0, 0])  # type: ignore[misc]
    assert result == 0 and msgs[0][0] == "CAMERA_INFORMATION"
    name = bytes(msgs[0][1]["model_name"]).rstrip(b"\0").decode()
    assert name == "CropScout ab12cd34" == model_name("CropScout", SHA)
    result, msgs = sink.on_command(MAV_CMD_REQUEST_CAMERA_INFORMATION, [1.0] + [0.0] * 6)  # type: ignore[misc]
    assert result == 0 and msgs[0][0] == "CAMERA_INFORMATION"
    sink.on_zone(_zone())
    result, msgs = sink.on_command(MAV_CMD_REQUEST_MESSAGE, [263.0, 0.0] + [0.0] * 5)  # type: ignore[misc]
    assert result == 0 and msgs[0][1]["image_index"] == 0
    assert sink.on_command(MAV_CMD_REQUEST_MESSAGE, [263.0, 5.0] + [0.0] * 5) == (4, [])  # never sent
    assert sink.on_command(2000, [0.0] * 7) is None  # MAV_CMD_IMAGE_START_CAPTURE: not ours to obey


def test_component_id_outside_the_camera_range_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="component_id"):
        PayloadConfig.model_validate({"model": {"bundle": "b"}, "camera_protocol": {"component_id": 1}})
    assert quaternion(0.0, 0.0, 0.0) == [1.0, 0.0, 0.0, 0.0]


# ------------------------------------------------------------------ over loopback, with a ground station
def _fields(msg: Any, name: str) -> Any:
    v = getattr(msg, name)
    return v.decode("ascii", "replace").rstrip("\0") if isinstance(v, bytes) else v


def _camera_link(tmp_path: Path, port: int, **telemetry: Any) -> tuple[Telemetry, CameraProtocolSink]:
    cfg = PayloadConfig.model_validate({"model": {"bundle": "b"}, "output": {"dir": str(tmp_path)},
                                        "telemetry": {"connection": f"udp:127.0.0.1:{port}",
                                                      "connect_timeout_s": 30.0, **telemetry}})
    tel = Telemetry(TelemetrySection.model_validate(cfg.telemetry.model_dump()), mavlink2=True)
    tel.start()
    sinks = build_sinks(SinkContext(cfg, tmp_path, lambda: [], tel, model_sha256=SHA))
    (sink,) = [s for s in sinks if isinstance(s, CameraProtocolSink)]
    return tel, sink


def test_ground_station_sees_the_camera_and_its_points(tmp_path: Path) -> None:
    port = free_udp_port()
    with GroundStation() as gcs, MavTestVehicle(port, straight_flight, home=HOME, rate_hz=4.0,
                                                 gcs_port=gcs.port) as vehicle:
        tel, sink = _camera_link(tmp_path, port)
        try:
            # the heartbeat as a camera, from the vehicle's system; the ground station then asks who it is
            assert wait_for(lambda: (1, 100) in gcs.cameras, 30.0)
            assert wait_for(lambda: gcs.received("CAMERA_INFORMATION"), 30.0)
            info = gcs.received("CAMERA_INFORMATION")[0]
            assert bytes(info.model_name).rstrip(b"\0").decode() == "CropScout ab12cd34"
            acks = [a for a in gcs.received("COMMAND_ACK") if a.command == MAV_CMD_REQUEST_MESSAGE]
            assert acks and acks[0].result == 0 and acks[0].get_srcComponent() == 100
            # the older request
            n = len(gcs.received("CAMERA_INFORMATION"))
            assert gcs.command(1, 100, MAV_CMD_REQUEST_CAMERA_INFORMATION, 1)
            assert wait_for(lambda: len(gcs.received("CAMERA_INFORMATION")) > n, 30.0)
            assert wait_for(lambda: any(a.command == MAV_CMD_REQUEST_CAMERA_INFORMATION and a.result == 0
                                        for a in gcs.received("COMMAND_ACK")), 30.0)
            # a zone and a detection become points on the map
            sink.on_zone(_zone())
            sink.on_record(_det(), None)  # type: ignore[arg-type]
            assert wait_for(lambda: len(gcs.received("CAMERA_IMAGE_CAPTURED")) >= 2, 30.0)
            first, second = gcs.received("CAMERA_IMAGE_CAPTURED")[:2]
            assert (first.lat, first.lon, first.image_index, first.capture_result) == (474100000, 85100000, 0, 1)
            assert second.image_index == 1 and _fields(second, "file_url").endswith("crops/a.jpg")
            assert first.get_srcSystem() == 1 and first.get_srcComponent() == 100
            # the vehicle's own stream reaches the ground station too
            assert gcs.counts["GLOBAL_POSITION_INT"] > 0 and gcs.counts["ATTITUDE"] > 0
            assert vehicle.forwarded_to_payload.get("COMMAND_LONG", 0) >= 2
        finally:
            sink.on_close()
            tel.close()


def test_camera_messages_are_signed_when_the_link_signs(tmp_path: Path) -> None:
    key_file = tmp_path / "signing.key"
    key_file.write_bytes(KEY)
    key_file.chmod(0o600)
    port = free_udp_port()
    with GroundStation(signing_key=KEY) as gcs, MavTestVehicle(port, straight_flight, home=HOME, rate_hz=4.0,
                                                                signing_key=KEY, gcs_port=gcs.port):
        tel, sink = _camera_link(tmp_path, port, signing={"key_file": str(key_file), "link_id": 7})
        try:
            assert wait_for(lambda: gcs.received("CAMERA_INFORMATION"), 30.0)
            sink.on_zone(_zone())
            assert wait_for(lambda: gcs.received("CAMERA_IMAGE_CAPTURED"), 30.0)
            msg = gcs.received("CAMERA_IMAGE_CAPTURED")[0]
            assert msg.get_signed() and msg.get_link_id() == 7
            assert gcs.signed["HEARTBEAT"] > 0 and gcs.signed["CAMERA_INFORMATION"] > 0
            camera_heartbeats = [m for m in gcs.received("HEARTBEAT") if m.get_srcComponent() == 100]
            assert camera_heartbeats and all(m.get_signed() for m in camera_heartbeats)
        finally:
            sink.on_close()
            tel.close()
