"""A recorded flight's trajectory: cubic Hermite curves through every recorded sample, with its rates.

A tlog holds the vehicle's position and attitude at a ground station's stream rates, often 2-4 Hz.
Between two samples the vehicle did not move in a straight line at a constant rate: in a banked
turn at 165 deg/s a linear interpolation of a 4.3 Hz ATTITUDE misses by up to 15 deg (issue 29).
Each sample also says how fast it was changing (GLOBAL_POSITION_INT's vx/vy/vz, ATTITUDE's body
rates), so a cubic Hermite curve per axis, which matches both the value and the derivative at
every sample, follows the manoeuvre with an error that falls with the fourth power of the gap
instead of the second.

Choices (docs/TELEMETRY.md, "The replay's trajectory"):
- Position: lat, lon (degrees) and alt (metres AMSL) are each one Hermite curve. Their
  derivatives are the recorded NED velocity turned into degrees per second on the WGS84
  ellipsoid (meridian and prime-vertical radii at the sample's latitude and height).
- Attitude: Hermite on the Euler angles (roll, pitch, yaw), unwrapped so a yaw through +-180 deg
  is a short continuous turn, not a spin. ATTITUDE's rollspeed/pitchspeed/yawspeed are body rates
  (p, q, r), not Euler-angle rates; in a level 45 deg bank the gyros see 29 % less than the yaw rate, so they are turned
  into Euler rates with the kinematic equations before the fit, and the fit's Euler rates are
  turned back into body rates when the vehicle serves them. Quaternion squad would avoid the
  pitch +-90 deg singularity, which a fixed wing or copter survey never reaches; Euler Hermite
  is the simplest curve that matches the recorded angles and rates exactly.
- A gap longer than `MAX_HERMITE_GAP_S` (a dropped stream) is bridged linearly: rates seconds old
  say nothing of the middle, and a cubic driven by them over a long gap swings far off.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

import numpy as np

from flight_sim.timeline import Event, PoseTrack
from payload.types import Pose

# Longer gaps between recorded samples are bridged linearly (see the module's docstring).
MAX_HERMITE_GAP_S = 2.0
# WGS84: the ellipsoid GLOBAL_POSITION_INT's lat/lon are on
WGS84_A = 6378137.0
WGS84_E2 = 6.69437999014e-3
# the ATTITUDE fields the fit reads, in the order it reads them
ATTITUDE_KEYS = ("roll", "pitch", "yaw", "rollspeed", "pitchspeed", "yawspeed")
# cos(pitch) is kept at least this far from 0 in the Euler-rate equations (pitch within 0.06 deg of +-90)
MIN_COS_PITCH = 1e-3


class HermiteCurve:
    """y(t) through knots (t_i, y_i) with y'(t_i) = d_i, one cubic per interval; clamped outside the knots.

    Vectorised over query times. Outside [t_0, t_n] the curve holds its end value with a zero
    derivative, as `PoseTrack.pose_at` holds its end samples.
    """

    def __init__(self, t: np.ndarray, y: np.ndarray, d: np.ndarray, max_gap_s: float = MAX_HERMITE_GAP_S) -> None:
        t = np.asarray(t, dtype=float)
        if len(t) == 0 or len(y) != len(t) or len(d) != len(t):
            raise ValueError(f"HermiteCurve needs as many values ({len(y)}) and slopes ({len(d)}) as knots ({len(t)})")
        if np.any(np.diff(t) <= 0):
            raise ValueError("HermiteCurve's knot times must be strictly increasing")
        self.t = t
        self.y = np.asarray(y, dtype=float)
        d = np.asarray(d, dtype=float).copy()
        self.d0 = d.copy()  # the slopes as given: what the curve's derivative is at each knot
        self.d1 = d.copy()  # the slope used at the start of the next interval (differs only after a long gap)
        if len(t) > 1:
            h = np.diff(t)
            secant = np.diff(self.y) / h
            long_gap = h > max_gap_s
            # a long gap is a straight line: both ends of that interval take the secant as their slope
            self.d0[:-1][long_gap] = secant[long_gap]
            self.d1[1:][long_gap] = secant[long_gap]

        # plain lists for `at`: a single time is asked 25-50 times a second per type, and numpy's
        # per-call overhead on one-element arrays is 20-50 times the arithmetic
        self._tl, self._yl = self.t.tolist(), self.y.tolist()
        self._d0l, self._d1l = self.d0.tolist(), self.d1.tolist()

    def at(self, t: float) -> tuple[float, float]:
        """(y, dy/dt) at one time: the same curve as `value`/`derivative`, without numpy."""
        ts = self._tl
        if len(ts) == 1 or t < ts[0] or t > ts[-1]:
            end = 0 if len(ts) == 1 or t < ts[0] else -1
            return self._yl[end], 0.0
        i = min(bisect.bisect_right(ts, t) - 1, len(ts) - 2)
        h = ts[i + 1] - ts[i]
        s = (t - ts[i]) / h
        y0, y1, d0, d1 = self._yl[i], self._yl[i + 1], self._d0l[i], self._d1l[i + 1]
        s2 = s * s
        s3 = s2 * s
        y = (2 * s3 - 3 * s2 + 1) * y0 + (s3 - 2 * s2 + s) * h * d0 + (3 * s2 - 2 * s3) * y1 + (s3 - s2) * h * d1
        dy = (6 * s2 - 6 * s) * (y0 - y1) / h + (3 * s2 - 4 * s + 1) * d0 + (3 * s2 - 2 * s) * d1
        return y, dy

    def _locate(self, tq: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Interval index, normalised position s in it, its length, and whether tq was inside the knots."""
        t = self.t
        inside = (tq >= t[0]) & (tq <= t[-1])
        if len(t) == 1:
            zero = np.zeros_like(tq)
            return zero.astype(int), zero, np.ones_like(tq), np.zeros_like(tq, dtype=bool)
        tc = np.clip(tq, t[0], t[-1])
        i = np.clip(np.searchsorted(t, tc, side="right") - 1, 0, len(t) - 2)
        h = t[i + 1] - t[i]
        return i, (tc - t[i]) / h, h, inside

    def value(self, tq: np.ndarray | float) -> np.ndarray:
        """y at each query time."""
        tq = np.atleast_1d(np.asarray(tq, dtype=float))
        if len(self.t) == 1:
            return np.full_like(tq, self.y[0])
        i, s, h, _ = self._locate(tq)
        s2, s3 = s * s, s * s * s
        h00 = 2 * s3 - 3 * s2 + 1
        h10 = s3 - 2 * s2 + s
        h01 = -2 * s3 + 3 * s2
        h11 = s3 - s2
        # the outgoing slope of knot i is d0[i]; the incoming slope of knot i+1 is d1[i+1]
        return h00 * self.y[i] + h10 * h * self.d0[i] + h01 * self.y[i + 1] + h11 * h * self.d1[i + 1]

    def derivative(self, tq: np.ndarray | float) -> np.ndarray:
        """dy/dt at each query time (0 outside the knots, where the curve is held)."""
        tq = np.atleast_1d(np.asarray(tq, dtype=float))
        if len(self.t) == 1:
            return np.zeros_like(tq)
        i, s, h, inside = self._locate(tq)
        s2 = s * s
        g00 = (6 * s2 - 6 * s) / h
        g10 = 3 * s2 - 4 * s + 1
        g01 = (-6 * s2 + 6 * s) / h
        g11 = 3 * s2 - 2 * s
        out = g00 * self.y[i] + g10 * self.d0[i] + g01 * self.y[i + 1] + g11 * self.d1[i + 1]
        return np.where(inside, out, 0.0)


def body_to_euler_rates(roll: np.ndarray, pitch: np.ndarray, p: np.ndarray, q: np.ndarray,
                        r: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Body rates (p, q, r) -> Euler-angle rates (roll', pitch', yaw'), ZYX (aerospace) order."""
    sr, cr = np.sin(roll), np.cos(roll)
    cp = np.cos(pitch)
    cp = np.where(np.abs(cp) < MIN_COS_PITCH, np.copysign(MIN_COS_PITCH, cp), cp)
    tp = np.sin(pitch) / cp
    return p + (q * sr + r * cr) * tp, q * cr - r * sr, (q * sr + r * cr) / cp


def euler_to_body_rates(roll: np.ndarray, pitch: np.ndarray, droll: np.ndarray, dpitch: np.ndarray,
                        dyaw: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Euler-angle rates -> body rates (p, q, r): what ATTITUDE's rollspeed/pitchspeed/yawspeed carry."""
    sr, cr = np.sin(roll), np.cos(roll)
    sp, cp = np.sin(pitch), np.cos(pitch)
    return droll - dyaw * sp, dpitch * cr + dyaw * sr * cp, -dpitch * sr + dyaw * cr * cp


def unwrap_with_rates(t: np.ndarray, a: np.ndarray, rate: np.ndarray) -> np.ndarray:
    """Angles made continuous, each step's whole turns chosen so it agrees with the rates either side.

    np.unwrap takes the short way, which is wrong when the vehicle turned more than half a turn
    between two samples; the mean of the recorded rates says how far it went.
    """
    if len(a) < 2:
        return np.asarray(a, dtype=float)
    step = np.diff(a)
    expected = 0.5 * (rate[:-1] + rate[1:]) * np.diff(t)
    step = step + 2 * math.pi * np.round((expected - step) / (2 * math.pi))
    return np.concatenate([[a[0]], a[0] + np.cumsum(step)])


def _wrap(a: np.ndarray) -> np.ndarray:
    return (a + math.pi) % (2 * math.pi) - math.pi


def _wrap_one(a: float) -> float:
    return (a + math.pi) % (2 * math.pi) - math.pi


def _unique_times(events: Sequence[Event]) -> tuple[np.ndarray, list[Event]]:
    """Strictly increasing times; of messages received in the same instant, the first is kept."""
    t, idx = np.unique(np.array([e.t for e in events], dtype=float), return_index=True)
    return t, [events[i] for i in idx]


class Trajectory:
    """Position and attitude of a recorded flight at any time, and their rates (see the module's docstring)."""

    def __init__(self, position: Sequence[Event], attitude: Sequence[Event]) -> None:
        # what the fit had to make up, for the timeline's notes (a log without velocities or rates)
        self.notes: list[str] = []
        self._fit_position(position)
        att = [e for e in attitude if all(math.isfinite(e.fields[k]) for k in ATTITUDE_KEYS)]
        if len(att) < len(attitude):
            self.notes.append(f"{len(attitude) - len(att)} ATTITUDE messages with a NaN or infinite field "
                              "left out of the replay's trajectory")
        self.has_attitude = bool(att)
        if att:
            self._fit_attitude(att)
        else:
            self.t_att = self.t_pos[:1]
            zero = np.zeros(1)
            self.roll = self.pitch = self.yaw = HermiteCurve(self.t_att, zero, zero)

    def _fit_position(self, position: Sequence[Event]) -> None:
        pos = [e for e in position if e.fields["lat"] != 0 or e.fields["lon"] != 0]
        if not pos:
            raise ValueError("no GLOBAL_POSITION_INT with a position fix")
        self.t_pos, pos = _unique_times(pos)
        lat = np.array([e.fields["lat"] for e in pos], dtype=float) / 1e7
        lon = np.array([e.fields["lon"] for e in pos], dtype=float) / 1e7
        alt = np.array([e.fields["alt"] for e in pos], dtype=float) / 1e3
        v = np.array([[e.fields[k] for k in ("vx", "vy", "vz")] for e in pos], dtype=float).T / 100.0
        m_per_deg_lat, m_per_deg_lon = metres_per_degree(lat, alt)
        slopes = [v[0] / m_per_deg_lat, v[1] / m_per_deg_lon, -v[2]]
        if not np.any(v) and len(self.t_pos) > 1 and (np.ptp(lat) > 0 or np.ptp(lon) > 0 or np.ptp(alt) > 0):
            # a stack that sends GLOBAL_POSITION_INT without velocities: a vehicle that moves has
            # none of zero, and slopes of zero would stop it at every sample
            slopes = [np.gradient(y, self.t_pos) for y in (lat, lon, alt)]
            self.notes.append("GLOBAL_POSITION_INT carries no velocity (vx/vy/vz all 0) while the vehicle moves: "
                              "the replay's trajectory takes its slopes from the positions")
        self.lat = HermiteCurve(self.t_pos, lat, slopes[0])
        self.lon = HermiteCurve(self.t_pos, lon, slopes[1])
        self.alt = HermiteCurve(self.t_pos, alt, slopes[2])

    def _fit_attitude(self, att: list[Event]) -> None:
        self.t_att, att = _unique_times(att)
        roll, pitch, yaw, p, q, r = (np.array([e.fields[k] for e in att], dtype=float) for k in ATTITUDE_KEYS)
        droll, dpitch, dyaw = body_to_euler_rates(roll, pitch, p, q, r)
        angles = [unwrap_with_rates(self.t_att, a, d) for a, d in ((roll, droll), (pitch, dpitch), (yaw, dyaw))]
        rates = [droll, dpitch, dyaw]
        if not (np.any(p) or np.any(q) or np.any(r)) and len(self.t_att) > 1 and any(np.ptp(a) > 0 for a in angles):
            # ATTITUDE without rates (all 0) while the angles change: slopes from the angles, the short way
            angles = [np.unwrap(a) for a in (roll, pitch, yaw)]
            rates = [np.gradient(a, self.t_att) for a in angles]
            self.notes.append("ATTITUDE carries no rates (rollspeed/pitchspeed/yawspeed all 0) while the angles "
                              "change: the replay's trajectory takes its slopes from the angles")
        self.roll, self.pitch, self.yaw = (HermiteCurve(self.t_att, a, d) for a, d in zip(angles, rates, strict=True))

    @classmethod
    def from_events(cls, events: Sequence[Event]) -> Trajectory:
        """The trajectory through a timeline's GLOBAL_POSITION_INT and ATTITUDE messages."""
        return cls([e for e in events if e.name == "GLOBAL_POSITION_INT"],
                   [e for e in events if e.name == "ATTITUDE"])

    def position_at(self, t: np.ndarray | float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """lat, lon (degrees), alt (metres AMSL)."""
        return self.lat.value(t), self.lon.value(t), self.alt.value(t)

    def velocity_at(self, t: np.ndarray | float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """North, east, down velocity (m/s): the position curves' derivative."""
        lat, alt = self.lat.value(t), self.alt.value(t)
        m_per_deg_lat, m_per_deg_lon = metres_per_degree(lat, alt)
        return self.lat.derivative(t) * m_per_deg_lat, self.lon.derivative(t) * m_per_deg_lon, -self.alt.derivative(t)

    def attitude_at(self, t: np.ndarray | float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """roll, pitch, yaw (radians, -pi..pi)."""
        return _wrap(self.roll.value(t)), _wrap(self.pitch.value(t)), _wrap(self.yaw.value(t))

    def body_rates_at(self, t: np.ndarray | float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """p, q, r (rad/s): the attitude curves' derivative as ATTITUDE carries it."""
        roll, pitch = self.roll.value(t), self.pitch.value(t)
        return euler_to_body_rates(roll, pitch, self.roll.derivative(t), self.pitch.derivative(t),
                                   self.yaw.derivative(t))

    def position_velocity(self, t: float) -> tuple[float, float, float, float, float, float]:
        """lat, lon (degrees), alt (m AMSL), v_N, v_E, v_D (m/s) at one time (`position_at`/`velocity_at`)."""
        lat, dlat = self.lat.at(t)
        lon, dlon = self.lon.at(t)
        alt, dalt = self.alt.at(t)
        phi = math.radians(lat)
        w = 1.0 - WGS84_E2 * math.sin(phi) ** 2
        m_lat = math.radians(WGS84_A * (1.0 - WGS84_E2) / w**1.5 + alt)
        m_lon = math.radians((WGS84_A / math.sqrt(w) + alt) * math.cos(phi))
        return lat, lon, alt, dlat * m_lat, dlon * m_lon, -dalt

    def attitude_rates(self, t: float) -> tuple[float, float, float, float, float, float]:
        """roll, pitch, yaw (rad, -pi..pi), p, q, r (rad/s) at one time (`attitude_at`/`body_rates_at`)."""
        roll, droll = self.roll.at(t)
        pitch, dpitch = self.pitch.at(t)
        yaw, dyaw = self.yaw.at(t)
        sr, cr, sp, cp = math.sin(roll), math.cos(roll), math.sin(pitch), math.cos(pitch)
        p = droll - dyaw * sp
        q = dpitch * cr + dyaw * sr * cp
        r = -dpitch * sr + dyaw * cr * cp
        return _wrap_one(roll), _wrap_one(pitch), _wrap_one(yaw), p, q, r

    def pose_at(self, t: float) -> Pose:
        """The vehicle's pose at time t, what the simulated camera renders from."""
        lat, lon, alt = self.lat.at(t)[0], self.lon.at(t)[0], self.alt.at(t)[0]
        roll, pitch, yaw = self.roll.at(t)[0], self.pitch.at(t)[0], self.yaw.at(t)[0]
        return Pose(lat, lon, alt, _wrap_one(roll), _wrap_one(pitch), _wrap_one(yaw))

    def track(self) -> PoseTrack:
        """The fit sampled at the recorded positions' times (the timeline's `truth` samples)."""
        t = self.t_pos
        return PoseTrack(t, *self.position_at(t), *self.attitude_at(t))


def metres_per_degree(lat_deg: np.ndarray, alt_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Metres per degree of latitude and of longitude at a latitude and height on WGS84."""
    phi = np.radians(lat_deg)
    w = 1.0 - WGS84_E2 * np.sin(phi) ** 2
    meridian = WGS84_A * (1.0 - WGS84_E2) / w**1.5
    normal = WGS84_A / np.sqrt(w)
    return np.radians(meridian + alt_m), np.radians((normal + alt_m) * np.cos(phi))
