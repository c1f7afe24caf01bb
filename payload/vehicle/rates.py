"""Asking the autopilot for the stream rates geotagging needs, and measuring what actually arrives.

Why: a frame is placed from the pose interpolated at its time stamp. At 20 m/s, 50 ms of pose is
1 m along the track, and a banked turn at 4 Hz attitude bends between samples by several degrees
(1 degree at 45 m is about 1 m). A ground station's default streams (2-4 Hz) are not enough, and
nothing guarantees they are running on the payload's port at all.

How (as ArduPilot and PX4 understand it): MAV_CMD_SET_MESSAGE_INTERVAL (COMMAND_LONG 511, param1 the
message id, param2 the interval in microseconds) per message. COMMAND_ACK carries only the command,
not the message id, so the answers are counted: every request ACCEPTED = done; any refused, or fewer
answers than requests within `ack_timeout_s` = the stack does not do it, and the old ArduPilot
stream groups are asked with REQUEST_DATA_STREAM instead (a group's rate is the fastest wanted of
its members). dronekit itself sends REQUEST_DATA_STREAM(ALL, 4 Hz) while it connects, and ArduPilot
resets the intervals of a group's messages when that group is requested, so these requests go
after the connect, never before.

`RateRequest` is the state of one round of requests (no link: it is given the send functions);
`RateMeter` counts what arrives per message type. payload/vehicle/telemetry.py owns both.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from payload.settings.telemetry import RatesSection

MAV_CMD_SET_MESSAGE_INTERVAL = 511
MAV_RESULT_ACCEPTED = 0

MESSAGE_IDS: dict[str, int] = {
    "SYSTEM_TIME": 2,
    "GPS_RAW_INT": 24,
    "ATTITUDE": 30,
    "LOCAL_POSITION_NED": 32,
    "GLOBAL_POSITION_INT": 33,
    "EKF_STATUS_REPORT": 193,
}

# ArduPilot's stream groups (GCS_Common: the messages each SRn_ parameter covers), by MAV_DATA_STREAM id
MAV_DATA_STREAM_EXTENDED_STATUS, MAV_DATA_STREAM_POSITION = 2, 6
MAV_DATA_STREAM_EXTRA1, MAV_DATA_STREAM_EXTRA3 = 10, 12
STREAM_OF: dict[str, int] = {
    "GPS_RAW_INT": MAV_DATA_STREAM_EXTENDED_STATUS,
    "GLOBAL_POSITION_INT": MAV_DATA_STREAM_POSITION,
    "LOCAL_POSITION_NED": MAV_DATA_STREAM_POSITION,
    "ATTITUDE": MAV_DATA_STREAM_EXTRA1,
    "SYSTEM_TIME": MAV_DATA_STREAM_EXTRA3,
    "EKF_STATUS_REPORT": MAV_DATA_STREAM_EXTRA3,
}


def wanted_rates(cfg: RatesSection, frame: str) -> dict[str, float]:
    """The messages and rates (Hz) geotagging uses with this position frame."""
    want = {"ATTITUDE": cfg.attitude_hz, "SYSTEM_TIME": cfg.system_time_hz}
    if frame in ("global", "auto"):
        want["GLOBAL_POSITION_INT"] = cfg.position_hz
        want["GPS_RAW_INT"] = cfg.gps_hz
    if frame in ("local", "auto"):
        want["LOCAL_POSITION_NED"] = cfg.position_hz
        want["EKF_STATUS_REPORT"] = cfg.estimator_hz
    return want


def floors(cfg: RatesSection, frame: str) -> dict[str, float]:
    """The preflight floors (Hz) of the streams a frame's pose is interpolated from (0 = none)."""
    out = {"ATTITUDE": cfg.attitude_min_hz}
    out["LOCAL_POSITION_NED" if frame == "local" else "GLOBAL_POSITION_INT"] = cfg.position_min_hz
    return {k: v for k, v in out.items() if v > 0}


def stream_rates(want: dict[str, float]) -> dict[int, int]:
    """REQUEST_DATA_STREAM's groups for the wanted messages: each at the fastest rate of its members (whole Hz)."""
    groups: dict[int, int] = {}
    for name, hz in want.items():
        sid = STREAM_OF[name]
        groups[sid] = max(groups.get(sid, 0), max(1, math.ceil(hz)))
    return groups


@dataclass
class RateRequest:
    """One round of rate requests: SET_MESSAGE_INTERVAL, then REQUEST_DATA_STREAM if the stack refuses it."""

    want: dict[str, float]
    ack_timeout_s: float
    t_sent: float = 0.0
    method: str = "none"  # "SET_MESSAGE_INTERVAL" once accepted, "REQUEST_DATA_STREAM" after a fallback
    pending: bool = False
    acks: list[int] = field(default_factory=list)  # MAV_RESULT of every COMMAND_ACK(511) this round
    fallback_reason: str | None = None

    def send(self, set_interval: Callable[[int, float], None], now: float) -> None:
        """Ask for every wanted message (interval in microseconds) and wait for the ACKs."""
        self.acks.clear()
        self.fallback_reason = None
        self.method = "none"
        # pending before the first send: on loopback an answer can arrive before the last request is out
        self.t_sent = now
        self.pending = True
        for name, hz in self.want.items():
            set_interval(MESSAGE_IDS[name], 1e6 / hz)

    def on_ack(self, command: int, result: int) -> None:
        """A COMMAND_ACK arrived; only SET_MESSAGE_INTERVAL's count."""
        if command == MAV_CMD_SET_MESSAGE_INTERVAL and self.pending:
            self.acks.append(int(result))

    def poll(self, request_stream: Callable[[int, int], None], now: float) -> bool:
        """Decide once every answer is in or the timeout passed; True when this call fell back to streams."""
        if not self.pending:
            return False
        refused = [r for r in self.acks if r != MAV_RESULT_ACCEPTED]
        if not refused and len(self.acks) >= len(self.want):
            self.pending = False
            self.method = "SET_MESSAGE_INTERVAL"
            return False
        if not refused and now - self.t_sent < self.ack_timeout_s:
            return False
        self.pending = False
        self.fallback_reason = (f"SET_MESSAGE_INTERVAL refused (results {sorted(set(refused))})" if refused else
                                f"{len(self.acks)} of {len(self.want)} SET_MESSAGE_INTERVAL answered within "
                                f"{self.ack_timeout_s:g} s")
        for sid, hz in stream_rates(self.want).items():
            request_stream(sid, hz)
        self.method = "REQUEST_DATA_STREAM"
        return True


class RateMeter:
    """Receive times per message type: the rate over the last `window_s`, the mean and the slowest window.

    Reset at every request round, so that what is measured is what the autopilot does since it was
    asked (not the ground station's 4 Hz that came before).
    """

    def __init__(self, window_s: float = 3.0, names: tuple[str, ...] = tuple(MESSAGE_IDS)) -> None:
        self.window_s = window_s
        self.names = names
        self._t: dict[str, deque[float]] = {n: deque() for n in names}
        self._count: dict[str, int] = dict.fromkeys(names, 0)
        self._first: dict[str, float] = {}
        self._min_hz: dict[str, float] = {}
        self._since = 0.0
        self._next_sample = 0.0

    def reset(self, now: float) -> None:
        """Start measuring afresh (a new request round)."""
        for q in self._t.values():
            q.clear()
        self._count = dict.fromkeys(self.names, 0)
        self._first.clear()
        self._since = now
        self._next_sample = now + self.window_s

    def on_message(self, name: str, t: float) -> None:
        """One message of a measured type arrived at monotonic time t (others are ignored)."""
        q = self._t.get(name)
        if q is None:
            return
        q.append(t)
        while q and q[0] < t - self.window_s:
            q.popleft()
        self._count[name] += 1
        self._first.setdefault(name, t)

    def covered_s(self, now: float) -> float:
        """How long the meter has been measuring since its last reset."""
        return now - self._since

    def rate(self, name: str, now: float) -> float:
        """Messages per second over the last window (over the time since the reset while that is shorter)."""
        q = self._t[name]
        span = min(self.window_s, max(now - self._since, 1e-9))
        return sum(1 for t in q if t >= now - span) / span

    def skip(self, now: float) -> None:
        """Leave the coming window out of the slowest-window figure (the link is lost: that is counted apart)."""
        self._next_sample = max(self._next_sample, now + self.window_s)

    def sample(self, now: float) -> None:
        """Note every full window's rate, so the run's slowest window is kept (called by the supervisor)."""
        if now < self._next_sample:
            return
        self._next_sample = now + self.window_s
        for name in self.names:
            if self._count[name]:
                hz = self.rate(name, now)
                self._min_hz[name] = min(self._min_hz.get(name, hz), hz)

    def summary(self, now: float) -> dict[str, dict[str, Any]]:
        """Per message type that arrived: the current windowed rate, the mean since the reset, the slowest window."""
        out: dict[str, dict[str, Any]] = {}
        span = max(now - self._since, 1e-9)
        for name in self.names:
            n = self._count[name]
            if not n:
                continue
            out[name] = {"hz": round(self.rate(name, now), 2), "mean_hz": round(n / span, 2), "count": n,
                         "min_window_hz": None if name not in self._min_hz else round(self._min_hz[name], 2)}
        return out
