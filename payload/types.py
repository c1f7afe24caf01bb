"""Data that flows through the payload, shared with the simulator.

Plain frozen dataclasses and numpy arrays: no I/O, no clocks, cheap to pass between threads.

Conventions (the simulator renders with the same ones the payload inverts):
- Pixels are RGB uint8, shape (H, W, 3). OpenCV's BGR is converted at the frame source.
- Angles are radians; attitude is aerospace Z-Y-X (yaw, pitch, roll) of the body in the local
  North-East-Down frame, as MAVLink ATTITUDE reports it. Yaw 0 = nose north, positive clockwise.
- Altitudes are metres above mean sea level, as MAVLink GLOBAL_POSITION_INT.alt reports them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class Pose:
    """Where the vehicle is and how it is oriented at one instant."""

    lat_deg: float
    lon_deg: float
    alt_m: float
    roll_rad: float = 0.0
    pitch_rad: float = 0.0
    yaw_rad: float = 0.0


@dataclass(frozen=True)
class EstimatorHealth:
    """The autopilot's own judgement of its position estimate (EKF_STATUS_REPORT or ESTIMATOR_STATUS).

    Indoors there is no GPS fix to judge a pose by; the estimator that fuses optical flow, motion
    capture or visual odometry knows better than anything the payload could infer. `flags` is
    ArduPilot's EKF_STATUS_FLAGS bitmask (ESTIMATOR_STATUS uses the same bit meanings), variances
    are the normalised test ratios the autopilot reports (> 1 means the estimate is failing).
    """

    flags: int
    velocity_variance: float
    pos_horiz_variance: float
    pos_vert_variance: float
    source: str = "EKF_STATUS_REPORT"

    # EKF_STATUS_FLAGS bits the payload reads
    ATTITUDE = 1
    PRED_POS_HORIZ_REL = 8
    CONST_POS_MODE = 128
    UNINITIALIZED = 1024

    @property
    def rel_horiz_ok(self) -> bool:
        """The estimator claims a usable horizontal position relative to its origin."""
        bad = self.CONST_POS_MODE | self.UNINITIALIZED
        return bool(self.flags & self.PRED_POS_HORIZ_REL) and not self.flags & bad


GPS_FIX_NAMES = {0: "no_gps", 1: "no_fix", 2: "2d", 3: "3d", 4: "dgps", 5: "rtk_float", 6: "rtk_fixed"}


@dataclass(frozen=True)
class PoseEstimate:
    """The vehicle's state at one instant, with what a reader needs to judge it.

    `age_s` is the time from the requested instant to the nearest real position or attitude
    measurement (the larger of the two): 0 when both were measured right then, large when the pose
    was bridged over a gap or extrapolated past the newest sample.
    """

    pose: Pose
    t_boot_s: float
    age_s: float
    position_age_s: float
    attitude_age_s: float
    extrapolated: bool
    relative_alt_m: float
    home_alt_m: float
    fix_type: int | None
    hdop: float | None
    satellites: int | None
    gimbal_rpy_deg: tuple[float, float, float] | None = None
    # GPS-denied local frame (payload/vehicle/poseinterp.py, frame local): position in metres east,
    # north, up of the EKF origin, in the frame named `frame`; `origin` (lat, lon, alt MSL) when the
    # autopilot told it (GPS_GLOBAL_ORIGIN) or the config set it. Without an origin `pose` carries
    # NaN latitude, longitude and altitude: a local pose must never pass for a place on Earth.
    frame: str = "global"
    enu_m: tuple[float, float, float] | None = None
    origin: tuple[float, float, float] | None = None
    estimator: EstimatorHealth | None = None
    # How the pose may be wrong between its samples (payload/geo/placeerror.py): the time between the
    # two position / attitude samples it was interpolated from (None: extrapolated past the end, the
    # age says how far), the velocity then (m/s east, north, up) and its change per second over that
    # pair (m/s^2), the attitude's rates over it (roll, pitch, yaw rad/s), and the clock sync's
    # 1-sigma uncertainty (s).
    position_gap_s: float | None = None
    attitude_gap_s: float | None = None
    velocity_enu: tuple[float, float, float] | None = None
    accel_mps2: float = 0.0
    attitude_rate_rps: tuple[float, float, float] | None = None
    clock_sigma_s: float = 0.0

    @property
    def is_local(self) -> bool:
        """Whether this pose comes from the local (GPS-denied) estimate rather than a GPS position."""
        return self.enu_m is not None

    @property
    def fix_name(self) -> str:
        return "unknown" if self.fix_type is None else GPS_FIX_NAMES.get(self.fix_type, str(self.fix_type))


class PoseSource(Protocol):
    """What geotagging and preflight need from whatever knows where the vehicle is.

    The MAVLink telemetry link (payload/vehicle/telemetry.py) is one; a GPS-denied local source
    or a replayed log would be others. Geotagging asks only for the state at a frame's capture
    time; preflight reads `summary()` (keys as Telemetry.summary documents: link_ok, fix_type,
    hdop, satellites, home, clock_offset_source, connection, ...).
    """

    @property
    def link_ok(self) -> bool:
        """Whether the source is delivering fresh data now."""
        ...

    def state_at(self, t_mono: float) -> PoseEstimate | None:
        """The vehicle's state at companion-computer time `t_mono` (time.monotonic), or None if unknown."""
        ...

    def summary(self) -> dict[str, Any]:
        """The source's health for logs and the preflight block."""
        ...

    def close(self) -> None:
        """Stop the source's threads and release its link."""
        ...


@runtime_checkable
class StatusSender(Protocol):
    """A short text to the ground station (MAVLink STATUSTEXT through the autopilot link)."""

    def send_statustext(self, severity: int, text: str) -> bool:
        """Send now; False when no link took it (callers retry or queue)."""
        ...


# A command addressed to a component of ours -> (MAV_RESULT, messages to send after the COMMAND_ACK).
CommandAnswer = tuple[int, list[tuple[str, dict[str, Any]]]]
CommandHandler = Callable[[int, list[float]], CommandAnswer | None]


class ComponentLink(Protocol):
    """The payload speaking as one more MAVLink component of the vehicle (e.g. the camera, id 100)."""

    @property
    def system_id(self) -> int | None:
        """The system id this component sends with (the vehicle's), None before it is known."""
        ...

    def send(self, name: str, fields: dict[str, Any]) -> bool:
        """Encode message `name` (MAVLink 2, signed when the link signs) and queue it; False without a link."""
        ...

    def close(self) -> None:
        """Stop announcing the component (no more heartbeats, commands to it go unanswered)."""
        ...


@runtime_checkable
class ComponentHost(Protocol):
    """A link the payload can add components to: the ground station then sees a camera beside the autopilot."""

    def open_component(self, component_id: int, mav_type: int, on_command: CommandHandler) -> ComponentLink:
        """Announce a component (HEARTBEAT of `mav_type` at 1 Hz) and route the COMMAND_LONGs addressed to it to
        `on_command(command, params)`; its answer is acknowledged (COMMAND_ACK) and its messages sent. A None
        answer means the command is not ours to answer (acknowledged MAV_RESULT_UNSUPPORTED)."""
        ...


@dataclass(frozen=True)
class Frame:
    """One camera image, stamped the moment it was captured.

    `t_mono` (time.monotonic) orders frames and matches telemetry; `t_wall` (time.time) is for
    people and file names. `seq` counts frames captured by the source, so gaps show drops.
    A source that stamps a frame when it reads it moves both stamps back by the camera's delay from
    exposure to delivery (`camera.latency_s`), so they say when the ground was seen; `latency_s`
    records by how much.
    """

    pixels: np.ndarray
    seq: int
    t_mono: float
    t_wall: float
    source: str = ""
    latency_s: float = 0.0

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])


@dataclass(frozen=True)
class TileBox:
    """A tile of a frame in pixel coordinates (x, y of the top-left corner, width, height)."""

    x: int
    y: int
    w: int
    h: int
    row: int = 0
    col: int = 0

    @property
    def center(self) -> tuple[float, float]:
        return (self.x + self.w / 2.0, self.y + self.h / 2.0)


@dataclass(frozen=True)
class TileResult:
    """The classifier's verdict on one tile.

    `scores` are dequantized probabilities in 0-1, one per label. `flagged` is True when a disease
    class passed its per-class decision threshold from the model card.
    """

    box: TileBox
    scores: np.ndarray
    label: str
    confidence: float
    flagged: bool


@dataclass(frozen=True)
class FrameResult:
    """Everything the inference worker learned about one frame."""

    frame: Frame
    tiles: tuple[TileResult, ...]
    inference_ms: float
    backend: str
    t_inferred_mono: float
    extras: dict = field(default_factory=dict)


class ResultHandler(Protocol):
    """What the writer thread hands each FrameResult to (JSONL records, geotagging, sinks)."""

    def handle(self, result: FrameResult) -> None:
        """Record one frame's results; must flush what it writes before returning."""

    def close(self) -> None:
        """Flush and release everything; called once at shutdown."""
