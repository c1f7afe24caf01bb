"""A scripted lawnmower survey over a scenario's field, as a Timeline: no recorded flight needed.

The vehicle takes off at home (the field's south-west corner), climbs, flies north-south legs
`line_spacing_m` apart that overshoot the field by `margin_m`, turns on half circles, flies home
and lands. The path is sampled at 20 Hz and smoothed over about a second, as a multirotor's
position controller would; attitude follows from the motion: a multirotor tilts to accelerate
and to push against drag, so it pitches nose-down as it speeds up and banks into turns.
The telemetry it sends is what an ArduCopter would: an EKF position with a slowly wandering
error, a raw GPS with white noise on top at the GPS rate; the camera renders from the TRUE pose.
Every message is normalised through MAVLink packing, so writing the timeline as a tlog and
reading it back gives identical events.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from flight_sim import mav
from flight_sim.planfile import read_plan
from flight_sim.scenario import Scenario
from flight_sim.timeline import Event, Param, PoseTrack, Timeline
from flight_sim.tlog import default_params
from payload.geo.frames import enu_to_geodetic, geodetic_to_enu

G = 9.80665
TRUTH_HZ = 20.0
DRAG_PER_S = 0.1  # horizontal drag deceleration per m/s of speed: ~3 deg of pitch at 5 m/s
SMOOTH_S = 0.5  # sigma of the position smoothing (the position controller's lag)
GROUND_S = 2.0  # on the ground, disarmed, before take-off and after landing
T0_UNIX = 1_780_308_000.0  # 2026-06-01 10:00:00 UTC: a fixed epoch so a seed gives one timeline
BOOT_MS = 60_000  # the autopilot booted a minute before the timeline starts
COPTER, ARDUPILOT = 2, 3
GUIDED, AUTO, LAND = 4, 3, 9


def survey_lines(s: Scenario) -> list[tuple[float, float, float]]:
    """The legs as (east_m, north_from, north_to): alternating north- and southbound."""
    f, fl = s.field, s.flight
    n = max(1, math.ceil(f.width_m / fl.line_spacing_m))
    spacing = f.width_m / n  # never wider than asked, centred on the field
    legs = []
    for i in range(n):
        e = spacing * (i + 0.5)
        a, b = -fl.margin_m, f.height_m + fl.margin_m
        legs.append((e, a, b) if i % 2 == 0 else (e, b, a))
    return legs


def _line(a: np.ndarray, b: np.ndarray, step: float = 0.2) -> np.ndarray:
    """Points every `step` metres from a to b, both ends included."""
    n = max(2, int(np.ceil(np.linalg.norm(b - a) / step)) + 1)
    return a + (b - a) * np.linspace(0, 1, n)[:, None]


def plan_waypoints_enu(s: Scenario) -> np.ndarray:
    """The scenario's .plan waypoints as (east, north) metres from the origin, in flight order."""
    assert s.flight.plan is not None
    plan = read_plan(s.flight.plan)
    lat = np.array([w[0] for w in plan.waypoints])
    lon = np.array([w[1] for w in plan.waypoints])
    e, n, _ = geodetic_to_enu(lat, lon, np.full(len(lat), s.origin.alt), s.origin.lat, s.origin.lon, s.origin.alt)
    return np.stack([np.asarray(e, dtype=float), np.asarray(n, dtype=float)], axis=1)


def _plan_paths(s: Scenario) -> list[np.ndarray]:
    """Home, every waypoint of the .plan, home: each leg from rest to rest, as a copter in AUTO flies
    straight waypoint to waypoint and stops at each."""
    home = np.zeros(2)
    pts = [home, *plan_waypoints_enu(s), home]
    return [_line(a, b) for a, b in zip(pts, pts[1:], strict=False) if np.linalg.norm(b - a) > 1e-3]


def _paths(s: Scenario) -> list[np.ndarray]:
    """Horizontal paths flown from rest to rest: home to the first leg, the legs with their turns, home.

    A copter in AUTO stops at a sharp corner instead of cutting it, so the transits are separate.
    With `flight.plan`, the plan's waypoints instead (`_plan_paths`).
    """
    if s.flight.plan is not None:
        return _plan_paths(s)
    legs = survey_lines(s)
    step = 0.2
    line = _line

    home = np.array([0.0, 0.0])
    first = np.array([legs[0][0], legs[0][1]])
    pts: list[np.ndarray] = []
    for i, (e, n_from, n_to) in enumerate(legs):
        pts.append(line(np.array([e, n_from]), np.array([e, n_to]))[(1 if pts else 0) :])
        if i + 1 < len(legs):
            e2 = legs[i + 1][0]
            r = (e2 - e) / 2.0
            cx = e + r
            northbound = n_to > n_from
            th = np.linspace(np.pi, 0.0, max(8, int(np.pi * r / step)))[1:-1]
            ys = n_to + r * np.sin(th) * (1 if northbound else -1)
            pts.append(np.stack([cx + r * np.cos(th), ys], axis=1))
    last = np.array([legs[-1][0], legs[-1][2]])
    return [line(home, first), np.concatenate(pts), line(last, home)]


def _timed_path(path: np.ndarray, v: float, a: float, dt: float) -> np.ndarray:
    """Positions along `path` every dt seconds, from rest to rest with a trapezoidal speed profile."""
    seg = np.linalg.norm(np.diff(path, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    total = s[-1]
    vmid = np.minimum.reduce(
        [np.full(len(seg), v), np.sqrt(2 * a * (s[:-1] + s[1:]) / 2), np.sqrt(2 * a * (total - (s[:-1] + s[1:]) / 2))]
    )
    vmid = np.maximum(vmid, 0.05)
    t_of_s = np.concatenate([[0.0], np.cumsum(seg / vmid)])
    t = np.arange(0.0, t_of_s[-1] + dt, dt)
    ss = np.interp(t, t_of_s, s)
    return np.stack([np.interp(ss, s, path[:, 0]), np.interp(ss, s, path[:, 1])], axis=1)


def _smooth(x: np.ndarray, sigma_samples: float) -> np.ndarray:
    """Gaussian smoothing along axis 0 with edge padding (no scipy on the drone image)."""
    r = int(np.ceil(3 * sigma_samples))
    if r < 1:
        return x.copy()
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma_samples) ** 2)
    k /= k.sum()
    pad = np.concatenate([np.repeat(x[:1], r, axis=0), x, np.repeat(x[-1:], r, axis=0)])
    if x.ndim == 1:
        return np.convolve(pad, k, mode="valid")
    return np.stack([np.convolve(pad[:, j], k, mode="valid") for j in range(x.shape[1])], axis=1)


def _gauss_markov(n: int, dt: float, sigma: float, tau: float, rng: np.random.Generator) -> np.ndarray:
    """A first-order Gauss-Markov process: the slowly wandering error of an estimator."""
    out = np.zeros(n)
    if sigma <= 0 or n == 0:
        return out
    phi = math.exp(-dt / tau)
    q = sigma * math.sqrt(1 - phi * phi)
    w = rng.standard_normal(n)
    out[0] = sigma * w[0]
    for i in range(1, n):
        out[i] = phi * out[i - 1] + q * w[i]
    return out


@dataclass
class _Flight:
    """The true motion at TRUTH_HZ and the moments the vehicle arms, reaches altitude, starts landing, lands."""

    t: np.ndarray
    en: np.ndarray
    up: np.ndarray
    vel: np.ndarray
    vup: np.ndarray
    roll: np.ndarray
    pitch: np.ndarray
    yaw: np.ndarray
    t_arm: float
    t_auto: float
    t_land: float
    t_disarm: float

    def at(self, x: np.ndarray, ts: np.ndarray) -> np.ndarray:
        return np.interp(ts, self.t, x)


_Add = Callable[[float, int, str, dict[str, Any]], None]


def survey_timeline(s: Scenario) -> Timeline:
    """The whole survey flight of a scenario as a Timeline (deterministic for the scenario's seed)."""
    rng = np.random.default_rng(s.seed)
    fl, o = s.flight, s.origin
    f = _flight(s, rng)
    truth = PoseTrack(f.t, *(np.asarray(x) for x in enu_to_geodetic(f.en[:, 0], f.en[:, 1], f.up, o.lat, o.lon,
                                                                    o.alt)), f.roll, f.pitch, f.yaw)
    events: list[tuple[float, int, str, dict[str, Any]]] = []

    def add(ts: float, order: int, name: str, fields: dict[str, Any]) -> None:
        events.append((round(float(ts), 6), order, name, mav.roundtrip(name, fields)))

    tt, ekf = _telemetry_events(s, f, rng, add)
    _gps_events(s, f, rng, tt, ekf, add)
    _status_events(s, f, add)
    events.sort(key=lambda x: (x[0], x[1]))
    return Timeline(
        events=[Event(ts, name, fields) for ts, _, name, fields in events],
        params=_params(fl),
        sysid=1,
        compid=1,
        vehicle_type=COPTER,
        autopilot=ARDUPILOT,
        truth=truth,
        source=f"survey (seed {s.seed})",
        t0_unix=T0_UNIX,
        notes=_notes(s, f),
    )


def _flight(s: Scenario, rng: np.random.Generator) -> _Flight:
    """Take-off, the survey legs with a hover at each stop, landing; smoothed, with attitude from the motion."""
    fl = s.flight
    dt = 1.0 / TRUTH_HZ
    pause = np.zeros((int(1.5 * TRUTH_HZ), 2))  # hover at each stop while the nose swings round
    pieces: list[np.ndarray] = []
    for k, piece in enumerate(_paths(s)):
        timed = _timed_path(piece, fl.speed_mps, fl.accel_mps2, dt)
        if k:
            pieces.append(pause + pieces[-1][-1])
        pieces.append(timed)
    horiz = np.concatenate(pieces)
    n_ground = int(GROUND_S * TRUTH_HZ)
    n_climb = int(math.ceil(fl.altitude_m / fl.climb_rate_mps * TRUTH_HZ)) + 1
    climb = np.linspace(0.0, fl.altitude_m, n_climb)
    settle = int(2.0 * TRUTH_HZ)  # hover before and after the survey: longer than the smoothing reach
    up = np.concatenate([np.zeros(n_ground), climb, np.full(settle + len(horiz) + settle, fl.altitude_m),
                         climb[::-1], np.zeros(n_ground)])
    en = np.concatenate([np.zeros((n_ground + n_climb + settle, 2)), horiz,
                         np.zeros((settle + n_climb + n_ground, 2))])
    t = np.arange(len(up)) * dt
    sig = SMOOTH_S * TRUTH_HZ
    en = _smooth(en, sig)
    up = np.maximum(_smooth(up, sig), 0.0)
    vel = np.gradient(en, dt, axis=0)
    roll, pitch, yaw = _attitude(vel, up, dt, sig, rng)
    t_land = (n_ground + n_climb + settle + len(horiz) + settle) * dt
    return _Flight(t, en, up, vel, np.gradient(up, dt), roll, pitch, yaw, t_arm=GROUND_S * 0.5,
                   t_auto=(n_ground + n_climb) * dt, t_land=t_land, t_disarm=t_land + n_climb * dt + 0.5)


def _attitude(vel: np.ndarray, up: np.ndarray, dt: float, sig: float,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Roll, pitch, yaw: the course while moving (held while hovering), tilted to push against drag and to turn."""
    n = len(up)
    acc = np.gradient(vel, dt, axis=0)
    speed = np.hypot(vel[:, 0], vel[:, 1])
    course = np.arctan2(vel[:, 0], vel[:, 1])
    moving = speed > 0.3
    first_move = int(np.argmax(moving)) if moving.any() else 0
    yaw = np.empty(n)
    last = course[first_move]  # initially towards the first leg
    for i in range(n):
        if moving[i]:
            last = course[i]
        yaw[i] = last
    yaw = np.unwrap(yaw)
    yaw = _smooth(yaw, sig)
    fwd = np.stack([np.sin(yaw), np.cos(yaw)], axis=1)
    right = np.stack([np.cos(yaw), -np.sin(yaw)], axis=1)
    push = acc + DRAG_PER_S * vel  # the horizontal thrust per unit mass the vehicle must produce
    airborne = up > 0.05
    wobble = np.radians(0.4)
    pitch = -np.arctan2((push * fwd).sum(1), G) + airborne * _gauss_markov(n, dt, wobble, 1.0, rng)
    roll = np.arctan2((push * right).sum(1), G) * np.cos(pitch) + airborne * _gauss_markov(n, dt, wobble, 1.0, rng)
    yaw = (yaw + airborne * _gauss_markov(n, dt, wobble / 2, 2.0, rng) + np.pi) % (2 * np.pi) - np.pi
    return roll, pitch, yaw


def _telemetry_events(s: Scenario, f: _Flight, rng: np.random.Generator,
                      add: _Add) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """EKF position with a wandering error, attitude, HUD; returns their times and the EKF's error (e, n, u)."""
    fl, o = s.flight, s.origin
    dt = 1.0 / TRUTH_HZ
    end = float(f.t[-1])
    tt = np.arange(0.0, end + 1e-9, 1.0 / fl.telemetry_rate_hz)
    ekf_e = _gauss_markov(len(tt), 1 / fl.telemetry_rate_hz, fl.position_error_m, 20.0, rng)
    ekf_n = _gauss_markov(len(tt), 1 / fl.telemetry_rate_hz, fl.position_error_m, 20.0, rng)
    ekf_u = _gauss_markov(len(tt), 1 / fl.telemetry_rate_hz, fl.position_error_m * 1.5, 20.0, rng)
    e_t, n_t, u_t = f.at(f.en[:, 0], tt), f.at(f.en[:, 1], tt), f.at(f.up, tt)
    elat, elon, ealt = enu_to_geodetic(e_t + ekf_e, n_t + ekf_n, u_t + ekf_u, o.lat, o.lon, o.alt)
    ve, vn, vu = f.at(f.vel[:, 0], tt), f.at(f.vel[:, 1], tt), f.at(f.vup, tt)
    r_t = f.at(np.unwrap(f.roll), tt)
    p_t = f.at(np.unwrap(f.pitch), tt)
    y_t = (f.at(np.unwrap(f.yaw), tt) + np.pi) % (2 * np.pi) - np.pi
    rr, pr, yr = (f.at(np.gradient(np.unwrap(a), dt), tt) for a in (f.roll, f.pitch, f.yaw))
    for k, ts in enumerate(tt):
        boot = BOOT_MS + int(round(ts * 1000))
        hdg = math.degrees(y_t[k]) % 360.0
        add(ts, 2, "ATTITUDE", {
            "time_boot_ms": boot, "roll": r_t[k], "pitch": p_t[k], "yaw": y_t[k],
            "rollspeed": rr[k], "pitchspeed": pr[k], "yawspeed": yr[k],
        })  # fmt: skip
        add(ts, 3, "GLOBAL_POSITION_INT", {
            "time_boot_ms": boot, "lat": int(round(elat[k] * 1e7)), "lon": int(round(elon[k] * 1e7)),
            "alt": int(round(ealt[k] * 1000)), "relative_alt": int(round((ealt[k] - o.alt) * 1000)),
            "vx": int(round(vn[k] * 100)), "vy": int(round(ve[k] * 100)), "vz": int(round(-vu[k] * 100)),
            "hdg": int(round(hdg * 100)) % 36000,
        })  # fmt: skip
        gs = math.hypot(ve[k], vn[k])
        add(ts, 4, "VFR_HUD", {
            "airspeed": gs, "groundspeed": gs, "heading": int(round(hdg)) % 360,
            "throttle": int(np.clip(45 + 8 * vu[k] + 2 * gs, 0, 100)) if u_t[k] > 0.05 else 0,
            "alt": ealt[k], "climb": vu[k],
        })  # fmt: skip
    return tt, (ekf_e, ekf_n, ekf_u)


def _gps_events(s: Scenario, f: _Flight, rng: np.random.Generator, tt: np.ndarray,
                ekf: tuple[np.ndarray, np.ndarray, np.ndarray], add: _Add) -> None:
    """Raw GPS: the EKF's error plus white noise, at the GPS rate."""
    fl, o = s.flight, s.origin
    ekf_e, ekf_n, ekf_u = ekf
    tg = np.arange(0.0, float(f.t[-1]) + 1e-9, 1.0 / fl.gps_rate_hz)
    ge = np.interp(tg, tt, ekf_e) + rng.normal(0, fl.gps_noise_m, len(tg))
    gn = np.interp(tg, tt, ekf_n) + rng.normal(0, fl.gps_noise_m, len(tg))
    gu = np.interp(tg, tt, ekf_u) + rng.normal(0, fl.gps_noise_m * 1.5, len(tg))
    glat, glon, galt = enu_to_geodetic(f.at(f.en[:, 0], tg) + ge, f.at(f.en[:, 1], tg) + gn,
                                       f.at(f.up, tg) + gu, o.lat, o.lon, o.alt)
    gve, gvn = f.at(f.vel[:, 0], tg), f.at(f.vel[:, 1], tg)
    for k, ts in enumerate(tg):
        gs = math.hypot(gve[k], gvn[k])
        add(ts, 1, "GPS_RAW_INT", {
            "time_usec": int(round((T0_UNIX + ts) * 1e6)), "fix_type": 3,
            "lat": int(round(glat[k] * 1e7)), "lon": int(round(glon[k] * 1e7)), "alt": int(round(galt[k] * 1000)),
            "eph": 90, "epv": 140, "vel": int(round(gs * 100)),
            "cog": int(round(math.degrees(math.atan2(gve[k], gvn[k])) % 360 * 100)) % 36000 if gs > 0.3 else 0,
            "satellites_visible": 12,
        })  # fmt: skip


def _status_events(s: Scenario, f: _Flight, add: _Add) -> None:
    """1 Hz: heartbeat (armed, mode), system time; home every 5 s."""
    o = s.origin
    for ts in np.arange(0.0, float(f.t[-1]) + 1e-9, 1.0):
        armed = f.t_arm <= ts < f.t_disarm
        mode = GUIDED if ts < f.t_auto else AUTO if ts < f.t_land else LAND
        add(ts, 0, "HEARTBEAT", {
            "type": COPTER, "autopilot": ARDUPILOT, "base_mode": 81 | (128 if armed else 0),
            "custom_mode": mode, "system_status": 4 if armed else 3, "mavlink_version": 3,
        })  # fmt: skip
        add(ts, 5, "SYSTEM_TIME", {"time_unix_usec": int(round((T0_UNIX + ts) * 1e6)),
                                   "time_boot_ms": BOOT_MS + int(round(ts * 1000))})  # fmt: skip
        if int(round(ts)) % 5 == 0:
            add(ts, 6, "HOME_POSITION", {
                "latitude": int(round(o.lat * 1e7)), "longitude": int(round(o.lon * 1e7)),
                "altitude": int(round(o.alt * 1000)), "q": [1.0, 0.0, 0.0, 0.0],
            })  # fmt: skip


def _params(fl: Any) -> list[Param]:
    params = default_params(1, COPTER) + [
        Param("WPNAV_SPEED_UP", fl.climb_rate_mps * 100, 9),
        Param("SURVEY_ALT", fl.altitude_m, 9),
    ]
    params = [Param(p.name, fl.speed_mps * 100, p.type) if p.name == "WPNAV_SPEED" else p for p in params]
    return [Param(p.name, float(np.float32(p.value)), p.type) for p in params]


def _notes(s: Scenario, f: _Flight) -> list[str]:
    fl = s.flight
    if fl.plan is not None:
        return [f"plan {fl.plan}: {len(plan_waypoints_enu(s))} waypoints at {fl.altitude_m} m and {fl.speed_mps} m/s; "
                f"airborne {f.t_arm:.0f}-{f.t_disarm:.0f} s, survey (AUTO) {f.t_auto:.0f}-{f.t_land:.0f} s"]
    legs = survey_lines(s)
    note = (
        f"lawnmower survey: {len(legs)} legs {legs[1][0] - legs[0][0] if len(legs) > 1 else 0:.1f} m apart at "
        f"{fl.altitude_m} m and {fl.speed_mps} m/s; airborne {f.t_arm:.0f}-{f.t_disarm:.0f} s, survey (AUTO) "
        f"{f.t_auto:.0f}-{f.t_land:.0f} s"
    )
    notes = [note]
    footprint_w = 2 * fl.altitude_m * math.tan(math.radians(s.camera.hfov_deg) / 2)
    if len(legs) > 1 and legs[1][0] - legs[0][0] > footprint_w:
        notes.append(
            f"line spacing {legs[1][0] - legs[0][0]:.1f} m is wider than the camera footprint "
            f"({footprint_w:.1f} m): strips between the legs are never seen"
        )
    return notes
