"""Interpolation maths of the vehicle state between telemetry samples: positions (Hermite on the
velocities), local positions, attitudes (angles the short way round). Pure functions, no clocks."""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import Protocol, TypeVar

import numpy as np

from payload.geo.frames import enu_to_geodetic, geodetic_to_enu
from payload.vehicle.samples import AttitudeSample, LocalPositionSample, PositionSample


class _Stamped(Protocol):
    @property
    def t_boot_s(self) -> float: ...


S = TypeVar("S", bound=_Stamped)


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


def latest_at(samples: Sequence[S], t: float) -> S | None:
    """The newest sample stamped at or before t (or the oldest one if all are later)."""
    if not samples:
        return None
    i = bisect.bisect_right([s.t_boot_s for s in samples], t)
    return samples[max(i - 1, 0)]


class _Moving(_Stamped, Protocol):
    @property
    def vn(self) -> float: ...
    @property
    def ve(self) -> float: ...
    @property
    def vd(self) -> float: ...


def _pair(times: list[float], t: float) -> tuple[int, int, bool]:
    """Indices of the two samples around t (bracketed: True), or of the end pair t lies beyond (False)."""
    i = bisect.bisect_right(times, t)
    if 0 < i < len(times):
        return i - 1, i, True
    if i == 0:
        return 0, min(1, len(times) - 1), False
    return max(len(times) - 2, 0), len(times) - 1, False


def position_motion(samples: Sequence[_Moving], t: float, lag_s: float = 0.0) -> tuple[float | None, float]:
    """(gap between the samples around t, None past the ends; the velocity's change per second over that pair).

    What the position's interpolation error depends on (payload/geo/placeerror.py): a Hermite curve is
    exact at constant acceleration, so only how much the velocity changed, and over how long, matters.
    """
    if not samples:
        return None, 0.0
    i, j, inside = _pair([s.t_boot_s - lag_s for s in samples], t)
    a, b = samples[i], samples[j]
    dt = b.t_boot_s - a.t_boot_s
    acc = 0.0 if dt <= 0 else math.sqrt((b.vn - a.vn) ** 2 + (b.ve - a.ve) ** 2 + (b.vd - a.vd) ** 2) / dt
    return (dt if inside and dt > 0 else None), acc


def attitude_motion(samples: Sequence[AttitudeSample], t: float) -> tuple[float | None, tuple[float, float, float]]:
    """(gap between the attitude samples around t, None past the ends; roll, pitch, yaw rates over that pair).

    The mean rates over the gap (angles the short way round) are what a linear interpolation bridges
    without knowing when within the gap the turn happened (payload/geo/placeerror.py).
    """
    if not samples:
        return None, (0.0, 0.0, 0.0)
    i, j, inside = _pair([s.t_boot_s for s in samples], t)
    a, b = samples[i], samples[j]
    dt = b.t_boot_s - a.t_boot_s
    if dt <= 0:
        return None, (0.0, 0.0, 0.0)
    rates = (wrap_pi(b.roll - a.roll) / dt, wrap_pi(b.pitch - a.pitch) / dt, wrap_pi(b.yaw - a.yaw) / dt)
    return (dt if inside else None), rates
