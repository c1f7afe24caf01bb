"""The MAVLink link's settings (`telemetry:`), read by payload/vehicle/telemetry.py."""

from __future__ import annotations

import logging
import stat
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from payload.configio import StrictModel
from payload.keyfile import read_signing_key


class SigningSection(StrictModel):
    """MAVLink 2 message signing on the telemetry link (payload/vehicle/telemetry.py; the autopilot holds the same key).

    With it, packets that are unsigned or signed with another key are dropped before anything reads
    them, so a forged packet carrying our vehicle's system id is not believed, and every packet the
    payload sends is signed (an autopilot with signing on ignores unsigned ones).
    """

    key_format: Literal["auto", "raw", "hex", "passphrase"] = Field(
        default="auto", description="how key_file holds the key; auto: 64 hex digits, 32 raw bytes, or a passphrase"
    )
    key_file: Path = Field(
        description="file holding the secret key: 32 raw bytes, 64 hex digits, or a passphrase whose SHA-256 is "
        "the key (MAVProxy's `signing setup <passphrase>`); relative paths are from the working directory; chmod 600"
    )
    link_id: int = Field(
        default=1,
        ge=0,
        le=255,
        description="link id in our signatures; the autopilot tracks timestamps per (link_id, source_system, "
        "source_component), so no other signer (a GCS) may share all three",
    )
    allow_unsigned: bool = Field(
        default=False,
        description="also accept unsigned packets (while moving a fleet to signing): NO spoofing protection; "
        "wrongly signed packets are still dropped and our packets still signed",
    )

    @field_validator("key_file")
    @classmethod
    def _key_file_holds_a_key(cls, v: Path, info) -> Path:  # noqa: ANN001 - pydantic's ValidationInfo
        """Resolve the path and read the key now, so a bad key file is a config error, not a mid-flight one."""
        path = v.expanduser().absolute()
        read_signing_key(path, info.data.get("key_format", "auto"))
        try:
            mode = path.stat().st_mode
        except OSError:
            mode = 0
        if mode & (stat.S_IROTH | stat.S_IWOTH):
            logging.getLogger(__name__).warning(
                "telemetry.signing.key_file %s can be read or written by every user (mode %s): anyone on the "
                "companion computer can sign as the vehicle; chmod 600 %s", path, oct(stat.S_IMODE(mode)), path
            )
        return path


class OriginSection(StrictModel):
    """A site's EKF origin on Earth, for when the autopilot does not send GPS_GLOBAL_ORIGIN."""

    lat: float = Field(ge=-90.0, le=90.0, description="degrees WGS84")
    lon: float = Field(ge=-180.0, le=180.0, description="degrees WGS84")
    alt: float = Field(default=0.0, ge=-500.0, le=9000.0, description="metres above mean sea level")


class RatesSection(StrictModel):
    """The stream rates the payload asks the autopilot for, and the floors below which preflight complains.

    Why: a frame is placed from the pose interpolated at its time, and at 20 m/s 50 ms of pose is
    1 m on the ground; a ground station's 2-4 Hz streams leave 250-500 ms gaps that a banked turn
    bends. So the payload asks for ATTITUDE and GLOBAL_POSITION_INT at tens of Hz (docs/TELEMETRY.md).
    """

    request: bool = Field(
        default=True,
        description="ask the autopilot for these rates at connect, reconnect and reboot (MAV_CMD_SET_MESSAGE_"
        "INTERVAL, falling back to REQUEST_DATA_STREAM); false = take whatever it streams",
    )
    attitude_hz: float = Field(default=25.0, gt=0, le=200, description="ATTITUDE: roll/pitch/yaw at frame time")
    position_hz: float = Field(default=25.0, gt=0, le=200,
                               description="GLOBAL_POSITION_INT (and LOCAL_POSITION_NED with frame local/auto)")
    estimator_hz: float = Field(default=2.0, gt=0, le=50, description="EKF_STATUS_REPORT: estimator health")
    gps_hz: float = Field(default=2.0, gt=0, le=50, description="GPS_RAW_INT: fix type, HDOP, satellites")
    system_time_hz: float = Field(default=1.0, gt=0, le=50, description="SYSTEM_TIME: boot clock, reboots")
    attitude_min_hz: float = Field(
        default=10.0, ge=0, le=200,
        description="preflight fails (a warning, an error with preflight.strict) when ATTITUDE arrives slower; "
        "0 = no floor",
    )
    position_min_hz: float = Field(
        default=10.0, ge=0, le=200,
        description="the same floor for the position stream the frame uses (GLOBAL_POSITION_INT or LOCAL_POSITION_NED)",
    )
    ack_timeout_s: float = Field(
        default=1.5, gt=0, le=30,
        description="no COMMAND_ACK for SET_MESSAGE_INTERVAL within this = the stack does not do it: fall back to "
        "REQUEST_DATA_STREAM",
    )
    measure_s: float = Field(default=3.0, gt=0.5, le=60,
                             description="window over which received rates are measured (preflight waits for one)")


class TelemetrySection(StrictModel):
    """The MAVLink link to the flight controller (dronekit), owned by payload/vehicle/telemetry.py."""

    connection: str | None = Field(
        default=None,
        description="dronekit connection string: udp:127.0.0.1:14550 (listen), udpout:H:P, tcp:H:P, "
        "/dev/ttyAMA0 (serial, with baud); null = no link (detections are recorded and flagged)",
    )
    allow_none: bool = Field(
        default=False,
        description="with connection null, let `payload run` start anyway (bench, ground tests, a folder of "
        "frames): every record is then flagged no_telemetry and nothing is placed on the map. Without it (or "
        "`payload run --no-telemetry`) a run with no link refuses to start, so a forgotten connection does "
        "not fly a whole survey without geotags",
    )
    baud: int = Field(default=921600, ge=1200)
    connect_timeout_s: float = Field(default=30.0, gt=0, description="give up connecting after this")
    link_timeout_s: float = Field(default=3.0, gt=0, description="no message for this long = link lost")
    reconnect: bool = True
    reconnect_max_s: float = Field(default=10.0, gt=0, description="longest wait between reconnect attempts")
    gps_lag_s: float = Field(
        default=0.0,
        ge=0.0,
        le=2.0,
        description="how far GLOBAL_POSITION_INT lags the truth; ArduPilot's EKF output is already "
        "lag-compensated, raw-GPS autopilots want ~0.2",
    )
    buffer_s: float = Field(default=60.0, gt=1.0, description="seconds of telemetry kept for interpolation")
    timesync: bool = Field(default=True, description="also estimate the clock offset with MAVLink TIMESYNC")
    source_system: int = Field(default=255, ge=1, le=255)
    vehicle_sysid: int | None = Field(
        default=None,
        ge=1,
        le=255,
        description="MAVLink system id of OUR vehicle; messages from any other system (another drone on the "
        "same radio, a spoofer) are ignored. null = the system of the first HEARTBEAT heard",
    )
    source_component: int = Field(default=0, ge=0, le=255)
    frame: Literal["global", "local", "auto"] = Field(
        default="global",
        description="where positions come from: global = GLOBAL_POSITION_INT (GPS); local = LOCAL_POSITION_NED "
        "(optical flow, motion capture, visual odometry; no GPS needed); auto = local whenever the autopilot "
        "sends it and there is no 3D GPS fix",
    )
    frame_name: str = Field(
        default="local", min_length=1, max_length=40,
        description="name of the local frame written into every local record (e.g. the site's name)",
    )
    origin: OriginSection | None = Field(
        default=None,
        description="the EKF origin (lat, lon, alt) when the autopilot does not send GPS_GLOBAL_ORIGIN; with "
        "neither, local records carry metres east/north/up and no latitude/longitude",
    )
    signing: SigningSection | None = Field(
        default=None,
        description="MAVLink 2 signing (key_file, link_id, allow_unsigned); null = off: any packet carrying the "
        "vehicle's system id is believed",
    )
    rates: RatesSection = Field(
        default_factory=RatesSection,
        description="stream rates to request (attitude_hz, position_hz, ...) and the preflight floors "
        "(attitude_min_hz, position_min_hz)",
    )
