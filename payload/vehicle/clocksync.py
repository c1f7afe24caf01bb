"""The companion computer's monotonic clock mapped onto the autopilot's boot clock.

`ClockSync` keeps the smallest observed (receive time - boot time): the message that arrived fastest
bounds the offset best. A MAVLink TIMESYNC round trip, when the autopilot answers one, gives an
estimate with a known error bound (half the round trip) and is preferred when that bound is tighter.
`uncertainty_s` says how far off the mapping may be, for the place error of a look
(payload/geo/placeerror.py).
"""

from __future__ import annotations

import statistics
from collections import deque

# time_boot_ms counts whole milliseconds: a stamp is uncertain by a uniform millisecond, 1/sqrt(12) ms rms
STAMP_SIGMA_S = 0.001 / 12 ** 0.5
RECENT = 64  # one-way latencies kept for the jitter


class ClockSync:
    """Maps the companion's monotonic clock onto the autopilot's boot clock.

    offset = t_mono - t_boot. A one-way message received at t_rx gives offset <= t_rx - t_boot
    (latency is never negative), so the minimum over recent messages is the best one-way estimate.
    """

    def __init__(self, window_s: float = 120.0) -> None:
        self._window_s = window_s
        self._oneway: deque[tuple[float, float]] = deque()  # (t_rx, t_rx - t_boot)
        self._roundtrip: tuple[float, float, float] | None = None  # (t_rx, offset, half_rtt)
        self._recent: deque[float] = deque(maxlen=RECENT)  # the latest one-way candidates, for the jitter

    def reset(self) -> None:
        """Forget everything (the autopilot rebooted: its boot clock restarted)."""
        self._oneway.clear()
        self._roundtrip = None
        self._recent.clear()

    def observe(self, t_boot_s: float, t_rx_mono: float) -> None:
        """A message stamped `t_boot_s` by the autopilot arrived at `t_rx_mono`."""
        cand = t_rx_mono - t_boot_s
        self._recent.append(cand)
        q = self._oneway
        # a monotone deque of minima (oldest first): drop larger candidates behind the new one
        while q and q[-1][1] >= cand:
            q.pop()
        q.append((t_rx_mono, cand))
        while q and q[0][0] < t_rx_mono - self._window_s and len(q) > 1:
            q.popleft()

    def observe_roundtrip(self, t_send_mono: float, t_remote_boot_s: float, t_recv_mono: float) -> None:
        """A TIMESYNC answer: the autopilot read `t_remote_boot_s` between our send and receive."""
        half = max(0.0, (t_recv_mono - t_send_mono) / 2.0)
        offset = (t_send_mono + t_recv_mono) / 2.0 - t_remote_boot_s
        if self._roundtrip is None or half <= self._roundtrip[2] or t_recv_mono - self._roundtrip[0] > self._window_s:
            self._roundtrip = (t_recv_mono, offset, half)

    @property
    def known(self) -> bool:
        return bool(self._oneway) or self._roundtrip is not None

    @property
    def offset_s(self) -> float:
        """Best estimate of t_mono - t_boot (raises if nothing was observed yet)."""
        if self._roundtrip is not None and (not self._oneway or self._roundtrip[2] < 0.002):
            return self._roundtrip[1]
        if not self._oneway:
            raise LookupError("no telemetry received yet: the clock offset is unknown")
        return self._oneway[0][1]

    @property
    def source(self) -> str:
        if self._roundtrip is not None and (not self._oneway or self._roundtrip[2] < 0.002):
            return "timesync"
        return "min_latency" if self._oneway else "none"

    @property
    def uncertainty_s(self) -> float:
        """1-sigma error of `offset_s` (0 before anything was observed; the pose is then unknown anyway).

        TIMESYNC: the true offset lies within half the round trip of the estimate. One-way: the fastest
        message's own latency is unknown; the link's jitter (the median latency over the fastest, of the
        recent messages) is its scale: a link whose messages all arrive alike delivered the fastest one
        about as fast as it can. The boot clock's millisecond stamps add their rounding.
        """
        if self.source == "timesync" and self._roundtrip is not None:
            return float(self._roundtrip[2]) + STAMP_SIGMA_S
        if not self._oneway:
            return 0.0
        jitter = statistics.median(self._recent) - self._oneway[0][1] if self._recent else 0.0
        return float(max(0.0, jitter) + STAMP_SIGMA_S)

    def to_boot(self, t_mono: float) -> float:
        return t_mono - self.offset_s

    def to_mono(self, t_boot_s: float) -> float:
        return t_boot_s + self.offset_s
