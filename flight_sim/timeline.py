"""A vehicle's timeline: the messages it sends, when, its parameters, and its true pose.

The replayer and the scripted survey both produce a `Timeline`, so the MAVLink endpoint, the tlog
writer and the camera never need to know where a flight came from. Event times are seconds from
the start of the timeline on the recording's own clock; the endpoint scales them by the speed
factor. The true pose (`truth`) is kept apart from the telemetry because a scripted survey sends
noisy GPS while the camera must render from where the vehicle really is.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from payload.types import Pose

if TYPE_CHECKING:
    from flight_sim.trajectory import Trajectory

# The messages a vehicle endpoint streams (HOME_POSITION and MOUNT_STATUS when the source has them).
STREAMED = (
    "HEARTBEAT",
    "GPS_RAW_INT",
    "GLOBAL_POSITION_INT",
    "ATTITUDE",
    "VFR_HUD",
    "SYSTEM_TIME",
    "HOME_POSITION",
    "MOUNT_STATUS",
    "LOCAL_POSITION_NED",
    "EKF_STATUS_REPORT",
)


# What dronekit's wait_ready needs before it returns (GLOBAL_POSITION_INT for the location).
READY_NEEDS = ("HEARTBEAT", "GPS_RAW_INT", "GLOBAL_POSITION_INT", "ATTITUDE")


@dataclass(frozen=True)
class Event:
    """One message the vehicle sends at time `t` (seconds from the timeline start)."""

    t: float
    name: str
    fields: dict[str, Any]


@dataclass(frozen=True)
class Param:
    """One autopilot parameter as PARAM_VALUE carries it (MAV_PARAM_TYPE in `type`)."""

    name: str
    value: float
    type: int = 9  # MAV_PARAM_TYPE_REAL32


@dataclass(frozen=True)
class PoseTrack:
    """Sampled true pose; `pose_at` interpolates (angle-wrap aware) between the samples either side.

    Arrays are all of the same length, `t` strictly increasing, angles in radians, alt metres AMSL.
    """

    t: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    alt: np.ndarray
    roll: np.ndarray
    pitch: np.ndarray
    yaw: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.t)
        for name in ("lat", "lon", "alt", "roll", "pitch", "yaw"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"PoseTrack.{name} has {len(getattr(self, name))} samples, t has {n}")
        if n == 0:
            raise ValueError("PoseTrack needs at least one sample")

    def pose_at(self, t: float) -> Pose:
        """The pose at time t; clamped to the first/last sample outside the track."""
        ts = self.t
        if t <= ts[0]:
            i, f = 0, 0.0
        elif t >= ts[-1]:
            i, f = len(ts) - 1, 0.0
        else:
            i = int(np.searchsorted(ts, t, side="right")) - 1
            f = float((t - ts[i]) / (ts[i + 1] - ts[i]))

        def lin(a: np.ndarray) -> float:
            return float(a[i]) if f == 0.0 else float(a[i] + (a[i + 1] - a[i]) * f)

        def ang(a: np.ndarray) -> float:
            if f == 0.0:
                return float(a[i])
            d = (float(a[i + 1]) - float(a[i]) + math.pi) % (2 * math.pi) - math.pi
            return _wrap_pi(float(a[i]) + d * f)

        return Pose(lin(self.lat), lin(self.lon), lin(self.alt), ang(self.roll), ang(self.pitch), ang(self.yaw))

    @property
    def duration(self) -> float:
        return float(self.t[-1] - self.t[0])


def _wrap_pi(a: float) -> float:
    return (a + math.pi) % (2 * math.pi) - math.pi


@dataclass
class Timeline:
    """Everything a vehicle endpoint needs to impersonate one system of a flight."""

    events: list[Event]
    params: list[Param]
    sysid: int
    compid: int
    vehicle_type: int
    autopilot: int
    truth: PoseTrack
    source: str = ""
    t0_unix: float = 0.0
    bad_crc: int = 0
    bad_crc_by_msgid: dict[int, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    autopilot_version: dict[str, Any] | None = None
    # A recorded flight's fitted trajectory (flight_sim/trajectory.py): the camera renders from it and
    # the vehicle resamples GLOBAL_POSITION_INT and ATTITUDE from it. None for a scripted flight,
    # whose `truth` is already smooth and finely sampled.
    fit: Trajectory | None = None

    def __post_init__(self) -> None:
        self._times = [e.t for e in self.events]
        self._by_name: dict[str, tuple[list[float], list[Event]]] = {}
        for e in self.events:
            ts, es = self._by_name.setdefault(e.name, ([], []))
            ts.append(e.t)
            es.append(e)

    @property
    def duration(self) -> float:
        """Seconds from the first to the last event."""
        return self.events[-1].t if self.events else 0.0

    @property
    def ready_s(self) -> float:
        """When the vehicle's state is first complete (heartbeat, GPS, position, attitude all heard).

        Recordings often open with seconds of bare heartbeats before the ground station asks for
        telemetry streams; a replay starts here by default so a client is ready at once.
        """
        firsts = [self._by_name[n][0][0] for n in READY_NEEDS if n in self._by_name]
        return max(firsts) if firsts else 0.0

    def names(self) -> list[str]:
        """Message types present, in the order of STREAMED."""
        return [n for n in STREAMED if n in self._by_name]

    def of(self, name: str) -> list[Event]:
        """All events of one message type, in time order."""
        return list(self._by_name.get(name, ([], []))[1])

    def latest(self, name: str, t: float) -> Event | None:
        """The last event of `name` at or before t: what a client has most recently heard."""
        ts, es = self._by_name.get(name, ([], []))
        i = bisect.bisect_right(ts, t) - 1
        return es[i] if i >= 0 else None

    def state_at(self, t: float, names: Iterable[str] | None = None) -> dict[str, Event]:
        """The latest event of every streamed type at time t (the vehicle's state as told)."""
        out: dict[str, Event] = {}
        for n in names if names is not None else self.names():
            e = self.latest(n, t)
            if e is not None:
                out[n] = e
        return out

    def index_at(self, t: float) -> int:
        """Index of the first event strictly after t."""
        return bisect.bisect_right(self._times, t)

    def pose_at(self, t: float) -> Pose:
        """The vehicle's true pose at time t (what the simulated camera renders from)."""
        if self.fit is not None:
            return self.fit.pose_at(t)
        return self.truth.pose_at(t)

