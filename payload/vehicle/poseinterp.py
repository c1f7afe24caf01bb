"""Vehicle state at an arbitrary instant, from time-stamped telemetry samples.

Pure code (no sockets, no clocks): the telemetry link feeds samples in, the geotagger asks for the
state at a frame's capture time. Kept apart from I/O so that the interpolation can be tested
against a known trajectory (the approach of tridge/cuav's mav_position, written afresh).

Time base: every sample is keyed on the autopilot's `time_boot_ms` (seconds here). The companion
computer's `time.monotonic()` is mapped onto it by `ClockSync`, which keeps the smallest observed
(receive time - boot time): the message that arrived fastest bounds the offset best. A MAVLink
TIMESYNC round trip, when the autopilot answers one, gives an estimate with a known error bound
(half the round trip) and is preferred when that bound is tighter.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections import deque
from dataclasses import dataclass

import numpy as np

from payload.geo.frames import enu_to_geodetic, geodetic_to_enu
from payload.types import EstimatorHealth, Pose, PoseEstimate

FrameMode = str  # "global" | "local" | "auto" (payload/config.py TelemetrySection.frame)


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


def wrap_pi(a: float) -> float:
    """An angle in [-pi, pi)."""
    return (a + math.pi) % (2.0 * math.pi) - math.pi


def interp_angle(a0: float, a1: float, s: float) -> float:
    """Interpolate from a0 to a1 along the shorter way round (so 179 deg -> -179 deg passes 180)."""
    return wrap_pi(a0 + s * wrap_pi(a1 - a0))


def _hermite(p0: np.ndarray, v0: np.ndarray, p1: np.ndarray, v1: np.ndarray, dt: float, s: float) -> np.ndarray:
    s2, s3 = s * s, s * s * s
    h00 = 2 * s3 - 3 * s2 + 1
    h10 = s3 - 2 * s2 + s
    h01 = -2 * s3 + 3 * s2
    h11 = s3 - s2
    return h00 * p0 + h10 * dt * v0 + h01 * p1 + h11 * dt * v1


def interpolate_position(
    samples: list[PositionSample], t: float, gps_lag_s: float = 0.0
) -> tuple[PositionSample, float, bool]:
    """Position at boot time `t` from time-sorted samples.

    Each sample is taken to describe the vehicle `gps_lag_s` before its stamp. Between two samples
    a cubic Hermite curve through both positions with both velocities (exact for constant velocity
    and smooth through turns); outside them, dead reckoning from the nearest sample's velocity.
    Returns (sample at t, distance in time to the nearest sample, extrapolated?).
    """
    if not samples:
        raise ValueError("no position samples")
    times = [s.t_boot_s - gps_lag_s for s in samples]
    i = bisect.bisect_right(times, t)
    if 0 < i < len(samples):
        a, b = samples[i - 1], samples[i]
        ta, tb = times[i - 1], times[i]
        dt = tb - ta
        s = 0.0 if dt <= 0 else (t - ta) / dt
        e1, n1, u1 = geodetic_to_enu(b.lat_deg, b.lon_deg, b.alt_m, a.lat_deg, a.lon_deg, a.alt_m)
        p0 = np.zeros(3)
        p1 = np.array([e1, n1, u1], dtype=float)
        v0 = np.array([a.ve, a.vn, -a.vd])
        v1 = np.array([b.ve, b.vn, -b.vd])
        p = _hermite(p0, v0, p1, v1, dt, s)
        lat, lon, alt = enu_to_geodetic(p[0], p[1], p[2], a.lat_deg, a.lon_deg, a.alt_m)
        rel = a.relative_alt_m + (p[2] - 0.0)
        v = v0 + s * (v1 - v0)
        out = PositionSample(t, float(lat), float(lon), float(alt), float(rel), float(v[1]), float(v[0]), float(-v[2]))
        return out, min(t - ta, tb - t), False
    ref_i = 0 if i == 0 else len(samples) - 1
    ref, tr = samples[ref_i], times[ref_i]
    dt = t - tr
    lat, lon, alt = enu_to_geodetic(ref.ve * dt, ref.vn * dt, -ref.vd * dt, ref.lat_deg, ref.lon_deg, ref.alt_m)
    out = PositionSample(
        t, float(lat), float(lon), float(alt), ref.relative_alt_m - ref.vd * dt, ref.vn, ref.ve, ref.vd
    )
    return out, abs(dt), abs(dt) > 1e-9


def interpolate_local(
    samples: list[LocalPositionSample], t: float
) -> tuple[np.ndarray, np.ndarray, float, bool]:
    """East, north, up position and velocity at boot time `t` from time-sorted local samples.

    The same rule as `interpolate_position` (Hermite between samples with both velocities, dead
    reckoning outside), in the EKF's flat local frame where no geodetic conversion is needed.
    Returns (enu position, enu velocity, distance in time to the nearest sample, extrapolated?).
    """
    if not samples:
        raise ValueError("no local position samples")
    times = [s.t_boot_s for s in samples]
    i = bisect.bisect_right(times, t)

    def enu(s: LocalPositionSample) -> tuple[np.ndarray, np.ndarray]:
        return np.array([s.y_e, s.x_n, -s.z_d]), np.array([s.ve, s.vn, -s.vd])

    if 0 < i < len(samples):
        a, b = samples[i - 1], samples[i]
        dt = b.t_boot_s - a.t_boot_s
        s = 0.0 if dt <= 0 else (t - a.t_boot_s) / dt
        (p0, v0), (p1, v1) = enu(a), enu(b)
        return _hermite(p0, v0, p1, v1, dt, s), v0 + s * (v1 - v0), min(t - a.t_boot_s, b.t_boot_s - t), False
    ref = samples[0] if i == 0 else samples[-1]
    p, v = enu(ref)
    dt = t - ref.t_boot_s
    return p + v * dt, v, abs(dt), abs(dt) > 1e-9


def interpolate_attitude(samples: list[AttitudeSample], t: float) -> tuple[AttitudeSample, float]:
    """Attitude at boot time `t`: per-angle interpolation the short way round, held beyond the ends.

    Returns (attitude, distance in time to the nearest sample). Holding rather than extrapolating
    with body rates: rates integrate badly over a gap, and the age tells the reader to distrust it.
    """
    if not samples:
        raise ValueError("no attitude samples")
    times = [s.t_boot_s for s in samples]
    i = bisect.bisect_right(times, t)
    if 0 < i < len(samples):
        a, b = samples[i - 1], samples[i]
        dt = b.t_boot_s - a.t_boot_s
        s = 0.0 if dt <= 0 else (t - a.t_boot_s) / dt
        att = AttitudeSample(
            t, interp_angle(a.roll, b.roll, s), interp_angle(a.pitch, b.pitch, s), interp_angle(a.yaw, b.yaw, s)
        )
        return att, min(t - a.t_boot_s, b.t_boot_s - t)
    ref = samples[0] if i == 0 else samples[-1]
    return AttitudeSample(t, ref.roll, ref.pitch, ref.yaw), abs(t - ref.t_boot_s)


class ClockSync:
    """Maps the companion's monotonic clock onto the autopilot's boot clock.

    offset = t_mono - t_boot. A one-way message received at t_rx gives offset <= t_rx - t_boot
    (latency is never negative), so the minimum over recent messages is the best one-way estimate.
    """

    def __init__(self, window_s: float = 120.0) -> None:
        self._window_s = window_s
        self._oneway: deque[tuple[float, float]] = deque()  # (t_rx, t_rx - t_boot)
        self._roundtrip: tuple[float, float, float] | None = None  # (t_rx, offset, half_rtt)

    def reset(self) -> None:
        """Forget everything (the autopilot rebooted: its boot clock restarted)."""
        self._oneway.clear()
        self._roundtrip = None

    def observe(self, t_boot_s: float, t_rx_mono: float) -> None:
        """A message stamped `t_boot_s` by the autopilot arrived at `t_rx_mono`."""
        cand = t_rx_mono - t_boot_s
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

    def to_boot(self, t_mono: float) -> float:
        return t_mono - self.offset_s

    def to_mono(self, t_boot_s: float) -> float:
        return t_boot_s + self.offset_s


class StateBuffer:
    """Thread-safe ring buffers of telemetry samples keyed on boot time, and `state_at`.

    The link's receive thread appends; the writer thread queries. Samples arriving out of order or
    duplicated are dropped; a boot time that jumps backwards by more than `reboot_jump_s` means
    the autopilot rebooted and everything is forgotten.
    """

    def __init__(
        self,
        horizon_s: float = 60.0,
        gps_lag_s: float = 0.0,
        reboot_jump_s: float = 2.0,
        frame: FrameMode = "global",
        frame_name: str = "local",
        origin: tuple[float, float, float] | None = None,
    ) -> None:
        """`frame` chooses where positions come from: GLOBAL_POSITION_INT (global), LOCAL_POSITION_NED
        (local), or local whenever local samples exist and no GPS fix of 3D or better does (auto).
        `origin` is a configured EKF origin (lat, lon, alt MSL); GPS_GLOBAL_ORIGIN from the autopilot
        replaces it (the autopilot's own origin is the one its local positions are relative to)."""
        self.frame = frame
        self.frame_name = frame_name
        self.horizon_s = horizon_s
        self.gps_lag_s = gps_lag_s
        self.reboot_jump_s = reboot_jump_s
        self.clock = ClockSync()
        self._lock = threading.Lock()
        self._pos: deque[PositionSample] = deque()
        self._att: deque[AttitudeSample] = deque()
        self._gps: deque[GpsSample] = deque()
        self._gimbal: deque[GimbalSample] = deque()
        self._local: deque[LocalPositionSample] = deque()
        self._estimator: deque[EstimatorSample] = deque()
        self._configured_origin = origin
        self._told_origin: tuple[float, float, float] | None = None
        self._home_alt_m: float | None = None
        self._home_latlon: tuple[float, float] | None = None
        self._latest_boot_s: float | None = None
        self.reboots = 0

    # ------------------------------------------------------------ feeding
    def _check_reboot(self, t_boot_s: float) -> None:
        if self._latest_boot_s is not None and t_boot_s < self._latest_boot_s - self.reboot_jump_s:
            self._pos.clear()
            self._att.clear()
            self._gps.clear()
            self._gimbal.clear()
            self._local.clear()
            self._estimator.clear()
            self.clock.reset()
            self._latest_boot_s = None
            self.reboots += 1
        if self._latest_boot_s is None or t_boot_s > self._latest_boot_s:
            self._latest_boot_s = t_boot_s

    def _append(self, q: deque, sample) -> None:  # noqa: ANN001 - any sample dataclass
        if q and sample.t_boot_s <= q[-1].t_boot_s:
            return
        q.append(sample)
        while q and q[0].t_boot_s < sample.t_boot_s - self.horizon_s:
            q.popleft()

    def add_position(self, s: PositionSample, t_rx_mono: float | None = None) -> None:
        with self._lock:
            self._check_reboot(s.t_boot_s)
            if t_rx_mono is not None:
                self.clock.observe(s.t_boot_s, t_rx_mono)
            self._append(self._pos, s)

    def add_attitude(self, s: AttitudeSample, t_rx_mono: float | None = None) -> None:
        with self._lock:
            self._check_reboot(s.t_boot_s)
            if t_rx_mono is not None:
                self.clock.observe(s.t_boot_s, t_rx_mono)
            self._append(self._att, s)

    def add_local_position(self, s: LocalPositionSample, t_rx_mono: float | None = None) -> None:
        """LOCAL_POSITION_NED carries time_boot_ms: a clock source like GLOBAL_POSITION_INT."""
        with self._lock:
            self._check_reboot(s.t_boot_s)
            if t_rx_mono is not None:
                self.clock.observe(s.t_boot_s, t_rx_mono)
            self._append(self._local, s)

    def add_estimator(self, s: EstimatorSample) -> None:
        with self._lock:
            self._append(self._estimator, s)

    def set_origin(self, lat_deg: float, lon_deg: float, alt_m: float) -> None:
        """GPS_GLOBAL_ORIGIN: the EKF origin the local positions are measured from."""
        with self._lock:
            self._told_origin = (lat_deg, lon_deg, alt_m)

    @property
    def origin(self) -> tuple[float, float, float] | None:
        """The EKF origin: the autopilot's when it told it, else the configured one, else None."""
        with self._lock:
            return self._told_origin or self._configured_origin

    def add_gps(self, s: GpsSample, t_rx_mono: float | None = None) -> None:
        """GPS_RAW_INT carries time_usec that may be UTC or boot time, so it is not a clock source."""
        with self._lock:
            self._append(self._gps, s)

    def add_gimbal(self, s: GimbalSample) -> None:
        with self._lock:
            self._append(self._gimbal, s)

    def observe_clock(self, t_boot_s: float, t_rx_mono: float) -> None:
        """A clock-only observation (SYSTEM_TIME, HEARTBEAT-free messages with time_boot_ms)."""
        with self._lock:
            self._check_reboot(t_boot_s)
            self.clock.observe(t_boot_s, t_rx_mono)

    def observe_timesync(self, t_send_mono: float, t_remote_boot_s: float, t_recv_mono: float) -> None:
        with self._lock:
            self.clock.observe_roundtrip(t_send_mono, t_remote_boot_s, t_recv_mono)

    def set_home(self, lat_deg: float, lon_deg: float, alt_m: float) -> None:
        with self._lock:
            self._home_latlon = (lat_deg, lon_deg)
            self._home_alt_m = alt_m

    # ------------------------------------------------------------ reading
    @property
    def home(self) -> tuple[float, float, float] | None:
        with self._lock:
            if self._home_latlon is None or self._home_alt_m is None:
                return None
            return (*self._home_latlon, self._home_alt_m)

    def now_boot(self, t_mono: float) -> float | None:
        with self._lock:
            return self.clock.to_boot(t_mono) if self.clock.known else None

    def latest_boot_s(self) -> float | None:
        with self._lock:
            return self._latest_boot_s

    def latest_gps(self) -> GpsSample | None:
        with self._lock:
            return self._gps[-1] if self._gps else None

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {"position": len(self._pos), "attitude": len(self._att), "gps": len(self._gps),
                    "local_position": len(self._local), "estimator": len(self._estimator)}

    def latest_estimator(self) -> EstimatorHealth | None:
        with self._lock:
            return self._estimator[-1].health if self._estimator else None

    def uses_local(self, t_boot_s: float | None = None) -> bool:
        """Whether poses come from the local frame now (frame local, or auto without a 3D fix)."""
        with self._lock:
            if self.frame == "local":
                return True
            if self.frame == "global" or not self._local:
                return False
            gps = list(self._gps)
            has_global = bool(self._pos)
        fix = _latest_at(gps, t_boot_s if t_boot_s is not None else float("inf"))
        return not has_global or fix is None or fix.fix_type < 3

    def state_at_boot(self, t_boot_s: float) -> PoseEstimate | None:
        """The state at autopilot boot time `t_boot_s`, or None before any position and attitude."""
        if self.uses_local(t_boot_s):
            return self._local_state_at_boot(t_boot_s)
        with self._lock:
            pos = list(self._pos)
            att = list(self._att)
            gps = list(self._gps)
            gimbal = list(self._gimbal)
            home_alt = self._home_alt_m
        if not pos or not att:
            return None
        p, p_age, extrapolated = interpolate_position(pos, t_boot_s, self.gps_lag_s)
        a, a_age = interpolate_attitude(att, t_boot_s)
        fix = _latest_at(gps, t_boot_s)
        g = _latest_at(gimbal, t_boot_s)
        # the ground under the vehicle: home altitude when the autopilot told us, else what
        # GLOBAL_POSITION_INT implies (alt MSL - height above home)
        ground = home_alt if home_alt is not None else p.alt_m - p.relative_alt_m
        return PoseEstimate(
            pose=Pose(p.lat_deg, p.lon_deg, p.alt_m, a.roll, a.pitch, a.yaw),
            t_boot_s=t_boot_s,
            age_s=max(p_age, a_age),
            position_age_s=p_age,
            attitude_age_s=a_age,
            extrapolated=extrapolated or t_boot_s > att[-1].t_boot_s,
            relative_alt_m=p.relative_alt_m,
            home_alt_m=ground,
            fix_type=None if fix is None else fix.fix_type,
            hdop=None if fix is None else fix.hdop,
            satellites=None if fix is None else fix.satellites,
            gimbal_rpy_deg=None if g is None else (g.roll_deg, g.pitch_deg, g.yaw_deg),
        )

    def _local_state_at_boot(self, t_boot_s: float) -> PoseEstimate | None:
        """The state from LOCAL_POSITION_NED and ATTITUDE: metres in the local frame, lat/lon only with an origin.

        The ground is the EKF origin's height (where the vehicle was when its estimator started:
        the floor for an indoor take-off), so `relative_alt_m` is the height above it.
        """
        with self._lock:
            loc = list(self._local)
            att = list(self._att)
            gps = list(self._gps)
            gimbal = list(self._gimbal)
            est = list(self._estimator)
            origin = self._told_origin or self._configured_origin
        if not loc or not att:
            return None
        p, _v, p_age, extrapolated = interpolate_local(loc, t_boot_s)
        a, a_age = interpolate_attitude(att, t_boot_s)
        fix = _latest_at(gps, t_boot_s)
        g = _latest_at(gimbal, t_boot_s)
        h = _latest_at(est, t_boot_s)
        e, n, u = (float(x) for x in p)
        if origin is not None:
            lat, lon, alt = (float(x) for x in enu_to_geodetic(e, n, u, *origin))
            home_alt = origin[2]
        else:
            lat = lon = alt = math.nan
            home_alt = math.nan
        return PoseEstimate(
            pose=Pose(lat, lon, alt, a.roll, a.pitch, a.yaw),
            t_boot_s=t_boot_s,
            age_s=max(p_age, a_age),
            position_age_s=p_age,
            attitude_age_s=a_age,
            extrapolated=extrapolated or t_boot_s > att[-1].t_boot_s,
            relative_alt_m=u,
            home_alt_m=home_alt,
            fix_type=None if fix is None else fix.fix_type,
            hdop=None if fix is None else fix.hdop,
            satellites=None if fix is None else fix.satellites,
            gimbal_rpy_deg=None if g is None else (g.roll_deg, g.pitch_deg, g.yaw_deg),
            frame=self.frame_name,
            enu_m=(e, n, u),
            origin=origin,
            estimator=None if h is None else h.health,
        )

    def state_at(self, t_mono: float) -> PoseEstimate | None:
        """The state at companion time `t_mono` (time.monotonic), or None before any telemetry."""
        t_boot = self.now_boot(t_mono)
        if t_boot is None:
            return None
        return self.state_at_boot(t_boot)


def _latest_at(samples: list, t: float):  # noqa: ANN202 - returns the sample type it is given
    """The newest sample stamped at or before t (or the oldest one if all are later)."""
    if not samples:
        return None
    i = bisect.bisect_right([s.t_boot_s for s in samples], t)
    return samples[max(i - 1, 0)]
