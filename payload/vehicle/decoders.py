"""MAVLink messages -> samples in the state buffer: one small decoder per message type, in a table.

Each decoder takes the message and what it may need besides (`Rx`: the buffer, the receive time,
the boot clock at that time, the TIMESYNC requests in flight) and needs no link, so each is testable
with a single message. `payload/vehicle/telemetry.py` listens to exactly the types in `DECODERS` for
the state buffer; COMMAND_ACK is not one of them: it answers the link's own rate requests and goes
to payload/vehicle/rates.py, never into the buffer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from payload.types import EstimatorHealth
from payload.vehicle.poseinterp import StateBuffer
from payload.vehicle.samples import (
    AttitudeSample,
    EstimatorSample,
    GimbalSample,
    GpsSample,
    LocalPositionSample,
    PositionSample,
)


@dataclass
class Rx:
    """One received message's context."""

    buffer: StateBuffer
    t_rx: float  # time.monotonic() at reception
    timesync_pending: dict[int, float] = field(default_factory=dict)  # ts1 (ns) -> monotonic send time

    def boot_now(self) -> float:
        """The vehicle's boot clock at reception (for messages without a time_boot_ms)."""
        t = self.buffer.now_boot(self.t_rx)
        if t is not None:
            return t
        latest = self.buffer.latest_boot_s()
        return latest if latest is not None else 0.0


def global_position_int(msg: Any, rx: Rx) -> None:
    rx.buffer.add_position(
        PositionSample(msg.time_boot_ms / 1000.0, msg.lat / 1e7, msg.lon / 1e7, msg.alt / 1000.0,
                       msg.relative_alt / 1000.0, msg.vx / 100.0, msg.vy / 100.0, msg.vz / 100.0),
        t_rx_mono=rx.t_rx)


def attitude(msg: Any, rx: Rx) -> None:
    rx.buffer.add_attitude(AttitudeSample(msg.time_boot_ms / 1000.0, msg.roll, msg.pitch, msg.yaw), t_rx_mono=rx.t_rx)


def gps_raw_int(msg: Any, rx: Rx) -> None:
    hdop = None if msg.eph in (65535, None) else msg.eph / 100.0
    sats = None if msg.satellites_visible in (255, None) else int(msg.satellites_visible)
    rx.buffer.add_gps(GpsSample(rx.boot_now(), int(msg.fix_type), hdop, sats))


def system_time(msg: Any, rx: Rx) -> None:
    rx.buffer.observe_clock(msg.time_boot_ms / 1000.0, rx.t_rx)


def timesync(msg: Any, rx: Rx) -> None:
    if msg.tc1 != 0:  # tc1 = 0 is a request (from the vehicle), not an answer to ours
        t_send = rx.timesync_pending.pop(int(msg.ts1), None)
        if t_send is not None:
            rx.buffer.observe_timesync(t_send, msg.tc1 / 1e9, rx.t_rx)


def mount_status(msg: Any, rx: Rx) -> None:
    rx.buffer.add_gimbal(GimbalSample(rx.boot_now(), msg.pointing_b / 100.0, msg.pointing_a / 100.0,
                                      msg.pointing_c / 100.0))


def mount_orientation(msg: Any, rx: Rx) -> None:
    rx.buffer.add_gimbal(GimbalSample(msg.time_boot_ms / 1000.0, msg.roll, msg.pitch, msg.yaw))


def home_position(msg: Any, rx: Rx) -> None:
    rx.buffer.set_home(msg.latitude / 1e7, msg.longitude / 1e7, msg.altitude / 1000.0)


def local_position_ned(msg: Any, rx: Rx) -> None:
    rx.buffer.add_local_position(
        LocalPositionSample(msg.time_boot_ms / 1000.0, msg.x, msg.y, msg.z, msg.vx, msg.vy, msg.vz),
        t_rx_mono=rx.t_rx)


def gps_global_origin(msg: Any, rx: Rx) -> None:
    rx.buffer.set_origin(msg.latitude / 1e7, msg.longitude / 1e7, msg.altitude / 1000.0)


def ekf_status_report(msg: Any, rx: Rx) -> None:
    rx.buffer.add_estimator(EstimatorSample(rx.boot_now(), EstimatorHealth(
        int(msg.flags), float(msg.velocity_variance), float(msg.pos_horiz_variance), float(msg.pos_vert_variance),
        "EKF_STATUS_REPORT")))


def estimator_status(msg: Any, rx: Rx) -> None:
    # PX4: the same flag bits; the test ratios are the normalised variances
    rx.buffer.add_estimator(EstimatorSample(rx.boot_now(), EstimatorHealth(
        int(msg.flags), float(msg.vel_ratio), float(msg.pos_horiz_ratio), float(msg.pos_vert_ratio),
        "ESTIMATOR_STATUS")))


DECODERS: dict[str, Callable[[Any, Rx], None]] = {
    "GLOBAL_POSITION_INT": global_position_int,
    "ATTITUDE": attitude,
    "GPS_RAW_INT": gps_raw_int,
    "SYSTEM_TIME": system_time,
    "TIMESYNC": timesync,
    "MOUNT_STATUS": mount_status,
    "MOUNT_ORIENTATION": mount_orientation,
    "HOME_POSITION": home_position,
    "LOCAL_POSITION_NED": local_position_ned,
    "GPS_GLOBAL_ORIGIN": gps_global_origin,
    "EKF_STATUS_REPORT": ekf_status_report,
    "ESTIMATOR_STATUS": estimator_status,
}
