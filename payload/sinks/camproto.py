"""The payload as a MAVLink camera: QGroundControl draws its findings on the fly-view map.

QGroundControl adds a point to its map for every CAMERA_IMAGE_CAPTURED with capture_result 1 that comes
from a camera component (ids 100-105, announced by a HEARTBEAT of type MAV_TYPE_CAMERA), and asks such a
component for CAMERA_INFORMATION with MAV_CMD_REQUEST_MESSAGE (docs/GCS.md). So this sink makes the payload
one more component of the vehicle on the telemetry link (payload/vehicle/component.py, through the link's
`ComponentHost`), and sends CAMERA_IMAGE_CAPTURED:
- for every newly confirmed zone (at the zone's centroid), never rate-limited: zones are few and are what
  the operator acts on; one the link could not take waits in a small queue;
- for trusted detections, at most one per `detection_min_interval_s` (a diseased field would otherwise
  flood the radio with points).
The point is the sighting on the ground, not the camera's position: that is where the map should show it.
`file_url` points at the saved crop. STATUSTEXT alerts (sinks/alerts.py) stay: Mission Planner shows those.

`image_index` counts up by one per message that left, so a client that sees a gap (MAVSDK) can ask for
the missing one (MAV_CMD_REQUEST_MESSAGE 263 with the index): the last `HISTORY` are kept to answer it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field

from payload.configio import StrictModel
from payload.settings.view import ConfigView
from payload.sinks.base import SinkBase, SinkContext, register_sink
from payload.types import CommandAnswer, ComponentHost, ComponentLink, FrameResult

log = logging.getLogger(__name__)

MAV_TYPE_CAMERA = 30
MAV_COMP_ID_CAMERA = 100
MAV_CMD_REQUEST_MESSAGE = 512
MAV_CMD_REQUEST_CAMERA_INFORMATION = 521
MAV_CMD_REQUEST_CAMERA_SETTINGS = 522
MAV_CMD_REQUEST_CAMERA_CAPTURE_STATUS = 527
MSG_CAMERA_INFORMATION = 259
MSG_CAMERA_SETTINGS = 260
MSG_CAMERA_CAPTURE_STATUS = 262
MSG_CAMERA_IMAGE_CAPTURED = 263
MAV_RESULT_ACCEPTED = 0
MAV_RESULT_FAILED = 4
CAMERA_MODE_IMAGE = 0
FILE_URL_MAX = 205  # CAMERA_IMAGE_CAPTURED.file_url: char[205]
NAME_MAX = 32  # CAMERA_INFORMATION.vendor_name / model_name: uint8_t[32]
HISTORY = 256  # captured messages kept to answer a client's request for a missed one
PENDING_ZONES = 64


class CameraProtocolSection(StrictModel):
    """The payload as a MAVLink camera component: its findings as points on QGroundControl's map."""

    enabled: bool = Field(default=True, description="announce the camera and send CAMERA_IMAGE_CAPTURED (needs "
                                                    "telemetry.connection; the link then speaks MAVLink 2)")
    component_id: int = Field(
        default=MAV_COMP_ID_CAMERA, ge=100, le=105,
        description="MAVLink component id of the camera: 100-105 (MAV_COMP_ID_CAMERA..CAMERA6), the only ids "
        "QGroundControl treats as cameras; pick one no other camera on the vehicle uses")
    vendor_name: str = Field(default="CropScout", min_length=1, max_length=NAME_MAX,
                             description="CAMERA_INFORMATION.vendor_name (ASCII)")
    product: str = Field(default="CropScout", min_length=1, max_length=20,
                         description="CAMERA_INFORMATION.model_name is this and the bundle's hash prefix")
    detections: bool = Field(default=True, description="also send trusted detections (rate-limited), not only zones")
    detection_min_interval_s: float = Field(
        default=2.0, ge=0.0, description="at most one detection point per this many seconds (zones are never held)")
    file_url_base: str | None = Field(
        default=None, max_length=120,
        description="prefix of file_url before the crop's path in the flight folder (e.g. http://10.0.0.5:8080/ "
        "if the folder is served); null = a file:// URL of the crop on the companion computer")


def quaternion(roll: float, pitch: float, yaw: float) -> list[float]:
    """[w, x, y, z] of the Z-Y-X (yaw, pitch, roll) attitude in radians, as MAVLink's `q` fields hold it."""
    cr, sr = math.cos(roll / 2), math.sin(roll / 2)
    cp, sp = math.cos(pitch / 2), math.sin(pitch / 2)
    cy, sy = math.cos(yaw / 2), math.sin(yaw / 2)
    return [cr * cp * cy + sr * sp * sy, sr * cp * cy - cr * sp * sy,
            cr * sp * cy + sr * cp * sy, cr * cp * sy - sr * sp * cy]


def fixed_bytes(text: str, size: int) -> list[int]:
    """An ASCII string as MAVLink's uint8_t[size] (zero-padded, cut to fit)."""
    raw = text.encode("ascii", "replace")[:size]
    return list(raw) + [0] * (size - len(raw))


def model_name(product: str, model_sha256: str) -> str:
    """CAMERA_INFORMATION.model_name: the product and the bundle (its model's hash prefix), in 32 bytes."""
    sha = model_sha256[:8] if model_sha256 else "nobundle"
    return f"{product} {sha}"[:NAME_MAX]


def _finite(v: Any) -> float | None:
    return float(v) if v is not None and math.isfinite(float(v)) else None


def _pose_fields(pose: dict[str, Any] | None, height_agl_m: float | None) -> dict[str, Any]:
    """Time, altitudes and attitude of a captured message from a record's pose (zeros where unknown)."""
    pose = pose or {}
    alt, t_boot = _finite(pose.get("alt_m")), _finite(pose.get("t_boot_s"))
    rpy = [a for a in (_finite(pose.get(k)) for k in ("roll_deg", "pitch_deg", "yaw_deg")) if a is not None]
    q = quaternion(*(math.radians(a) for a in rpy)) if len(rpy) == 3 else [1.0, 0.0, 0.0, 0.0]  # unknown: level
    agl = _finite(height_agl_m)
    return {"time_boot_ms": 0 if t_boot is None else int(t_boot * 1000) & 0xFFFFFFFF,
            "alt": 0 if alt is None else int(round(alt * 1000)),
            "relative_alt": 0 if agl is None else int(round(agl * 1000)), "q": q}


@register_sink(45, key="camera_protocol", settings=CameraProtocolSection)
class CameraProtocolSink(SinkBase):
    """CAMERA_IMAGE_CAPTURED for new zones and (rate-limited) detections; answers the camera's requests."""

    name = "camproto"

    def __init__(self, s: CameraProtocolSection, out_dir: Path, model_sha256: str = "",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.s = s
        self.out_dir = Path(out_dir)
        self.model_sha256 = model_sha256
        self._clock = clock
        self._lock = threading.Lock()
        self.link: ComponentLink | None = None
        self._index = 0
        self._history: deque[tuple[int, dict[str, Any]]] = deque(maxlen=HISTORY)
        self._pending: deque[dict[str, Any]] = deque(maxlen=PENDING_ZONES)
        self._last_detection: float | None = None
        self._last_det: dict[str, Any] | None = None  # the newest trusted detection: a zone's pose and crop
        self._crop_by_label: dict[str, str] = {}
        self.counts = {"zones": 0, "detections": 0, "zones_without_position": 0, "not_sent": 0}

    @classmethod
    def from_context(cls, ctx: SinkContext) -> CameraProtocolSink | None:
        s = ctx.settings(CameraProtocolSection)
        if not s.enabled or not isinstance(ctx.status, ComponentHost):
            return None
        sink = cls(s, ctx.out_dir, ctx.model_sha256, ctx.clock)
        sink.link = ctx.status.open_component(s.component_id, MAV_TYPE_CAMERA, sink.on_command)
        log.info("camera protocol: component %d, model_name %r", s.component_id,
                 model_name(s.product, ctx.model_sha256))
        return sink

    # ------------------------------------------------------------ what the camera saw
    def on_look(self, look: dict[str, Any], result: FrameResult) -> None:
        if not self.model_sha256 and look.get("model_sha256"):
            self.model_sha256 = str(look["model_sha256"])

    def on_record(self, det: dict[str, Any], result: FrameResult) -> None:
        if not det.get("trusted") or det.get("lat") is None or det.get("lon") is None:
            return
        self._last_det = det
        if det.get("crop"):
            self._crop_by_label[str(det.get("label"))] = str(det["crop"])
        if not self.s.detections:
            return
        now = self._clock()
        if self._last_detection is not None and now - self._last_detection < self.s.detection_min_interval_s:
            return
        fields = self._captured(det["lat"], det["lon"], det.get("pose"), det.get("height_agl_m"),
                                (det.get("frame") or {}).get("t_wall"), det.get("crop"))
        if self._send_captured(fields):
            self._last_detection = now
            self.counts["detections"] += 1

    def on_zone(self, zone: dict[str, Any]) -> None:
        p = zone["properties"]
        if p.get("lat") is None or p.get("lon") is None:  # a rack face without a site origin: no map point
            self.counts["zones_without_position"] += 1
            return
        det = self._last_det or {}
        crop = self._crop_by_label.get(str(p.get("label")))
        self._pending.append(self._captured(p["lat"], p["lon"], det.get("pose"), det.get("height_agl_m"),
                                            time.time(), crop))
        self._flush()

    def on_snapshot(self) -> None:
        self._flush()

    def on_close(self) -> None:
        self._flush()
        self.counts["not_sent"] += len(self._pending)
        log.info("camera protocol: %d CAMERA_IMAGE_CAPTURED sent (%d zones, %d detections), %d zones not sent",
                 self._index, self.counts["zones"], self.counts["detections"], self.counts["not_sent"])
        if self.link is not None:
            self.link.close()

    # ------------------------------------------------------------ messages
    def _flush(self) -> None:
        while self._pending:
            if not self._send_captured(self._pending[0]):
                return
            self._pending.popleft()
            self.counts["zones"] += 1

    def _file_url(self, crop: str | None) -> bytes:
        if not crop:
            return b""
        if self.s.file_url_base is not None:
            url = self.s.file_url_base + crop
        else:
            url = (self.out_dir / crop).resolve().as_uri()
            if len(url) > FILE_URL_MAX:
                url = crop  # still names the crop, relative to the flight folder
        return url.encode("utf-8")[:FILE_URL_MAX]

    def _captured(self, lat: float, lon: float, pose: dict[str, Any] | None, height_agl_m: float | None,
                  t_wall: float | None, crop: str | None) -> dict[str, Any]:
        return {**_pose_fields(pose, height_agl_m),
                "time_utc": int((t_wall if t_wall is not None else time.time()) * 1e6),
                "camera_id": 0,  # deprecated: the component id tells cameras apart
                "lat": int(round(float(lat) * 1e7)), "lon": int(round(float(lon) * 1e7)),
                "capture_result": 1, "file_url": self._file_url(crop)}

    def _send_captured(self, fields: dict[str, Any]) -> bool:
        """Send with the next image_index; the index moves on only when the link took the message."""
        if self.link is None:
            return False
        with self._lock:
            msg = {**fields, "image_index": self._index}
            if not self.link.send("CAMERA_IMAGE_CAPTURED", msg):
                return False
            self._history.append((self._index, msg))
            self._index += 1
        return True

    def camera_information(self) -> dict[str, Any]:
        """CAMERA_INFORMATION: who we are (the product and the bundle), and that we take no commands."""
        return {"time_boot_ms": 0, "vendor_name": fixed_bytes(self.s.vendor_name, NAME_MAX),
                "model_name": fixed_bytes(model_name(self.s.product, self.model_sha256), NAME_MAX),
                "firmware_version": 0, "focal_length": 0.0, "sensor_size_h": 0.0, "sensor_size_v": 0.0,
                "resolution_h": 0, "resolution_v": 0, "lens_id": 0,
                "flags": 0,  # no capture on command: the payload decides what to report
                "cam_definition_version": 0, "cam_definition_uri": b""}

    def on_command(self, command: int, params: list[float]) -> CommandAnswer | None:
        """A ground station's request to the camera (called on the link's receive thread)."""
        wanted = {MAV_CMD_REQUEST_CAMERA_INFORMATION: MSG_CAMERA_INFORMATION,
                  MAV_CMD_REQUEST_CAMERA_SETTINGS: MSG_CAMERA_SETTINGS,
                  MAV_CMD_REQUEST_CAMERA_CAPTURE_STATUS: MSG_CAMERA_CAPTURE_STATUS}.get(command)
        if command == MAV_CMD_REQUEST_MESSAGE:
            wanted = int(params[0])
        if wanted == MSG_CAMERA_INFORMATION:
            return MAV_RESULT_ACCEPTED, [("CAMERA_INFORMATION", self.camera_information())]
        if wanted == MSG_CAMERA_SETTINGS:
            return MAV_RESULT_ACCEPTED, [("CAMERA_SETTINGS", {"time_boot_ms": 0, "mode_id": CAMERA_MODE_IMAGE})]
        if wanted == MSG_CAMERA_CAPTURE_STATUS:
            return MAV_RESULT_ACCEPTED, [("CAMERA_CAPTURE_STATUS", {
                "time_boot_ms": 0, "image_status": 0, "video_status": 0, "image_interval": 0.0,
                "recording_time_ms": 0, "available_capacity": 0.0, "image_count": self._index})]
        if wanted == MSG_CAMERA_IMAGE_CAPTURED and command == MAV_CMD_REQUEST_MESSAGE:
            with self._lock:
                kept = dict(self._history)
            msg = kept.get(int(params[1]))
            if msg is None:
                return MAV_RESULT_FAILED, []
            return MAV_RESULT_ACCEPTED, [("CAMERA_IMAGE_CAPTURED", msg)]
        return None


def wants_mavlink2(cfg: ConfigView) -> bool:
    """Whether the telemetry link must parse MAVLink 2 from its first packet (the camera protocol is MAVLink 2)."""
    return cfg.section(CameraProtocolSection).enabled

