"""Telemetry samples as the state buffer keeps them, each keyed on the autopilot's boot time (seconds)."""

from __future__ import annotations

from dataclasses import dataclass

from payload.types import EstimatorHealth

FrameMode = str  # "global" | "local" | "auto" (payload/settings/telemetry.py TelemetrySection.frame)


@dataclass(frozen=True)
class PositionSample:
    """GLOBAL_POSITION_INT: position (deg, m MSL), height above home, NED velocity (m/s)."""

    t_boot_s: float
    lat_deg: float
    lon_deg: float
    alt_m: float
    relative_alt_m: float
    vn: float
    ve: float
    vd: float


@dataclass(frozen=True)
class LocalPositionSample:
    """LOCAL_POSITION_NED: metres north, east, down of the EKF origin and NED velocity (m/s)."""

    t_boot_s: float
    x_n: float
    y_e: float
    z_d: float
    vn: float
    ve: float
    vd: float


@dataclass(frozen=True)
class EstimatorSample:
    """EKF_STATUS_REPORT / ESTIMATOR_STATUS, stamped on arrival (mapped to boot time)."""

    t_boot_s: float
    health: EstimatorHealth


@dataclass(frozen=True)
class AttitudeSample:
    """ATTITUDE: roll, pitch, yaw in radians."""

    t_boot_s: float
    roll: float
    pitch: float
    yaw: float


@dataclass(frozen=True)
class GpsSample:
    """GPS_RAW_INT: fix quality (HDOP None when the receiver does not know it)."""

    t_boot_s: float
    fix_type: int
    hdop: float | None
    satellites: int | None


@dataclass(frozen=True)
class GimbalSample:
    """MOUNT_STATUS / MOUNT_ORIENTATION angles in degrees, stamped on arrival (mapped to boot time)."""

    t_boot_s: float
    roll_deg: float
    pitch_deg: float
    yaw_deg: float
