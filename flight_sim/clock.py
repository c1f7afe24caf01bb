"""Simulation time shared by the vehicle endpoint and the camera, so both show the same instant.

Simulation time runs at `speed` times wall-clock time from `start_s`, from the moment `begin()` is
called (the endpoint calls it at once, or when the first client appears). At `end_s` it stops
(`stop`/`hold`) or wraps back to `start_s` (`loop`).
"""

from __future__ import annotations

import threading
import time
from typing import Literal

AtEnd = Literal["stop", "hold", "loop"]
MAX_SPEED = 50.0
MIN_SPEED = 0.1


class SimClock:
    """Maps time.monotonic() to timeline seconds."""

    def __init__(self, speed: float, start_s: float, end_s: float, at_end: AtEnd = "stop") -> None:
        if not MIN_SPEED <= speed <= MAX_SPEED:
            raise ValueError(f"speed {speed} outside {MIN_SPEED}..{MAX_SPEED}")
        if end_s < start_s:
            raise ValueError(f"end {end_s} s is before start {start_s} s")
        self.speed = float(speed)
        self.start_s = float(start_s)
        self.end_s = float(end_s)
        self.at_end = at_end
        self._wall0: float | None = None
        self._started = threading.Event()

    def begin(self, wall: float | None = None) -> None:
        """Start the clock (idempotent: a second call does not restart it)."""
        if self._wall0 is None:
            self._wall0 = time.monotonic() if wall is None else wall
            self._started.set()

    @property
    def started(self) -> bool:
        return self._wall0 is not None

    def wait_started(self, timeout: float | None = None) -> bool:
        return self._started.wait(timeout)

    def elapsed(self, wall: float | None = None) -> float:
        """Unwrapped timeline seconds since start_s (0 before begin())."""
        if self._wall0 is None:
            return 0.0
        now = time.monotonic() if wall is None else wall
        return max(0.0, (now - self._wall0) * self.speed)

    def lap(self, wall: float | None = None) -> int:
        """How many times a looping clock has wrapped."""
        span = self.end_s - self.start_s
        if self.at_end != "loop" or span <= 0:
            return 0
        return int(self.elapsed(wall) // span)

    def now(self, wall: float | None = None) -> float:
        """Timeline seconds at wall time `wall` (default: now)."""
        span = self.end_s - self.start_s
        e = self.elapsed(wall)
        if self.at_end == "loop" and span > 0:
            return self.start_s + (e % span)
        return min(self.start_s + e, self.end_s)

    def finished(self, wall: float | None = None) -> bool:
        """True once a non-looping clock reached end_s."""
        return self.at_end != "loop" and self.started and self.start_s + self.elapsed(wall) >= self.end_s

    def wall_at(self, t: float, lap: int = 0) -> float:
        """The monotonic wall time at which timeline time t (of lap `lap`) is reached."""
        assert self._wall0 is not None, "clock not started"
        span = self.end_s - self.start_s
        return self._wall0 + ((t - self.start_s) + lap * span) / self.speed
