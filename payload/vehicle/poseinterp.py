"""Vehicle state at an arbitrary instant, from time-stamped telemetry samples.

Pure code (no sockets, no clocks): the telemetry link feeds samples in, the geotagger asks for the
state at a frame's capture time. Kept apart from I/O so that the interpolation can be tested
against a known trajectory (the approach of tridge/cuav's mav_position, written afresh).

Time base: every sample (payload/vehicle/samples.py) is keyed on the autopilot's `time_boot_ms`
(seconds here); the companion computer's `time.monotonic()` is mapped onto it by `ClockSync`
(payload/vehicle/clocksync.py). The interpolation maths is payload/vehicle/interp.py.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from typing import Any

from payload.geo.frames import enu_to_geodetic
from payload.types import EstimatorHealth, Pose, PoseEstimate
from payload.vehicle.clocksync import ClockSync
from payload.vehicle.interp import (
    attitude_motion,
    interpolate_attitude,
    interpolate_local,
    interpolate_position,
    latest_at,
    position_motion,
)
from payload.vehicle.samples import (
    AttitudeSample,
    EstimatorSample,
    FrameMode,
    GimbalSample,
    GpsSample,
    LocalPositionSample,
    PositionSample,
)


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
    def boot_mono(self) -> float | None:
        """When the autopilot booted, on the companion's monotonic clock (None before its clock is heard):
        the same moment for every run of one flight, which is how a restart finds its flight's folder."""
        with self._lock:
            return self.clock.offset_s if self.clock.known else None

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
        fix = latest_at(gps, t_boot_s if t_boot_s is not None else float("inf"))
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
            clock_sigma = self.clock.uncertainty_s
        if not pos or not att:
            return None
        p, p_age, extrapolated = interpolate_position(pos, t_boot_s, self.gps_lag_s)
        gap, acc = position_motion(pos, t_boot_s, self.gps_lag_s)
        # the ground under the vehicle: home altitude when the autopilot told us, else what
        # GLOBAL_POSITION_INT implies (alt MSL - height above home)
        ground = home_alt if home_alt is not None else p.alt_m - p.relative_alt_m
        return _estimate(t_boot_s, (p.lat_deg, p.lon_deg, p.alt_m), p_age, extrapolated, att, gps, gimbal,
                         p.relative_alt_m, ground, position_gap_s=gap, accel_mps2=acc, clock_sigma_s=clock_sigma,
                         velocity_enu=(p.ve, p.vn, -p.vd))

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
            clock_sigma = self.clock.uncertainty_s
        if not loc or not att:
            return None
        p, v, p_age, extrapolated = interpolate_local(loc, t_boot_s)
        gap, acc = position_motion(loc, t_boot_s)
        h = latest_at(est, t_boot_s)
        e, n, u = (float(x) for x in p)
        if origin is not None:
            lat, lon, alt = (float(x) for x in enu_to_geodetic(e, n, u, *origin))
            home_alt = origin[2]
        else:
            lat = lon = alt = math.nan
            home_alt = math.nan
        return _estimate(t_boot_s, (lat, lon, alt), p_age, extrapolated, att, gps, gimbal, u, home_alt,
                         frame=self.frame_name, enu_m=(e, n, u), origin=origin,
                         estimator=None if h is None else h.health, position_gap_s=gap, accel_mps2=acc,
                         clock_sigma_s=clock_sigma, velocity_enu=(float(v[0]), float(v[1]), float(v[2])))

    def state_at(self, t_mono: float) -> PoseEstimate | None:
        """The state at companion time `t_mono` (time.monotonic), or None before any telemetry."""
        t_boot = self.now_boot(t_mono)
        if t_boot is None:
            return None
        return self.state_at_boot(t_boot)


def _estimate(t_boot_s: float, lla: tuple[float, float, float], p_age: float, extrapolated: bool,
              att: list[AttitudeSample], gps: list[GpsSample], gimbal: list[GimbalSample], relative_alt_m: float,
              home_alt_m: float, **local: Any) -> PoseEstimate:
    """A PoseEstimate from an interpolated position (global or local) and the attitude, fix and gimbal then;
    `local` also carries how the position may be wrong (its samples' gap, acceleration, velocity, clock)."""
    a, a_age = interpolate_attitude(att, t_boot_s)
    a_gap, rates = attitude_motion(att, t_boot_s)
    fix = latest_at(gps, t_boot_s)
    g = latest_at(gimbal, t_boot_s)
    return PoseEstimate(
        pose=Pose(*lla, a.roll, a.pitch, a.yaw),
        t_boot_s=t_boot_s,
        age_s=max(p_age, a_age),
        position_age_s=p_age,
        attitude_age_s=a_age,
        extrapolated=extrapolated or t_boot_s > att[-1].t_boot_s,
        relative_alt_m=relative_alt_m,
        home_alt_m=home_alt_m,
        fix_type=None if fix is None else fix.fix_type,
        hdop=None if fix is None else fix.hdop,
        satellites=None if fix is None else fix.satellites,
        gimbal_rpy_deg=None if g is None else (g.roll_deg, g.pitch_deg, g.yaw_deg),
        attitude_gap_s=a_gap,
        attitude_rate_rps=rates,
        **local,
    )
