"""An indoor vertical farm: racks of shelves from a site file, diseased plants at known places, and a GPS-denied flight.

The scenario names the payload's own site file (payload/sitefile.py), so the simulator's farm and
the payload's idea of it are one file. Each plant-bearing rack face shows the same procedural
plants as the outdoor world (flight_sim/world), seen at 1-2 m: the face's (along, up) metres are
the world's (east, north), the diseased plant groups are its patches, and thin shelf boards cross
it. Nothing is painted up front; every frame shades only the points its pixels see, with each
pixel's footprint (distance / focal length, widened by the incidence angle). The camera renders
through the payload's camera model and its rack-face geometry (payload/geo/site.py), from the
TRUE pose, then through the same camera effects as outdoors (flight_sim/camerafx.py).

The vehicle takes off from the floor, flies along each aisle at 1-2 m/s with the camera mounted
sideways (looking right) at a fixed stand-off from one face, and lands. Its telemetry is what an
ArduCopter flying on optical flow or motion capture sends: LOCAL_POSITION_NED (with a small
wandering estimator error), ATTITUDE, EKF_STATUS_REPORT, and GPS_RAW_INT with fix type 0 throughout;
no GLOBAL_POSITION_INT, no HOME_POSITION and no GPS_GLOBAL_ORIGIN (the origin is not known).
The truth track is kept in lat/lon around an internal origin only because `PoseTrack` is; nothing
the payload receives carries it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import ConfigDict, Field

from flight_sim import mav
from flight_sim.camerafx import CameraEffects
from flight_sim.scenario import CameraSection
from flight_sim.survey import BOOT_MS, COPTER, GUIDED, LAND, T0_UNIX, TRUTH_HZ, G, _gauss_markov, _smooth, _timed_path
from flight_sim.timeline import Event, Param, PoseTrack, Timeline
from flight_sim.tlog import default_params
from flight_sim.world.config import CropSection, LightSection, Stage
from flight_sim.world.world import World
from payload.configio import StrictModel, load_config, read_yaml
from payload.errors import ConfigError
from payload.geo.camera import pixels_to_rays_cam, rot_zyx
from payload.geo.frames import enu_to_geodetic, geodetic_to_enu
from payload.geo.site import FLOOR, MISS, RackFace, face_by_id, intersect_faces, site_faces
from payload.sitefile import SiteLayout, load_site
from payload.types import Pose

ALTHOLD = 2  # ArduCopter mode flown indoors on flow (any valid copter mode keeps dronekit's `mode` set)
LOITER = 5
BOARD_M = 0.03  # shelf board thickness seen on the face
WALL_RGB = (150.0, 150.0, 145.0)  # what a ray meets beyond the racks (the hall's far walls)
BOARD_RGB = (185.0, 180.0, 170.0)  # shelf boards and the rack's frame below the first shelf
FLOOR_RGB = (128.0, 126.0, 122.0)  # a concrete floor
# EKF_STATUS_REPORT flags of a healthy optical-flow EKF: attitude, velocities, relative horizontal and
# vertical position, height above ground, predicted relative position; no absolute horizontal position
EKF_HEALTHY_LOCAL = 1 | 2 | 4 | 8 | 32 | 64 | 256


class InternalOrigin(StrictModel):
    """Where the simulator keeps its truth on Earth (never sent: the vehicle has no GPS)."""

    lat: float = Field(default=52.0, ge=-85.0, le=85.0)
    lon: float = Field(default=5.0, ge=-180.0, le=180.0)
    alt: float = Field(default=0.0, ge=-500.0, le=9000.0)


class PlantGroup(StrictModel):
    """A group of diseased plants on a shelf: the ground truth a mission is scored against."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    cls: Literal["rust", "powdery_mildew"] = Field(alias="class")
    rack: str
    face: Literal["left", "right"]
    bay: int = Field(ge=1)
    shelf: int = Field(ge=1)
    along_m: float = Field(description="centre of the group, metres from the rack's start")
    width_m: float = Field(default=0.45, gt=0.05, le=5.0)
    height_m: float = Field(default=0.4, gt=0.05, le=3.0, description="from just above the shelf board up")
    stage: Stage = Field(default="moderate", description="disease stage at the group's centre")


class Pass(StrictModel):
    """One leg along a rack face (the camera looks right at it)."""

    rack: str
    face: Literal["left", "right"]


class IndoorFlight(StrictModel):
    """The aisle flight."""

    speed_mps: float = Field(default=1.5, ge=0.2, le=3.0)
    standoff_m: float = Field(default=2.0, ge=0.5, le=5.0, description="camera to face, metres")
    height_m: float = Field(default=1.15, gt=0.3, le=20.0, description="camera height above the floor")
    overshoot_m: float = Field(default=1.5, ge=0.0, le=10.0, description="legs run this far past the rack ends")
    accel_mps2: float = Field(default=0.8, gt=0.05, le=5.0)
    climb_rate_mps: float = Field(default=0.7, gt=0.1, le=5.0)
    start_m: tuple[float, float] = Field(description="take-off point, east, north metres of the local frame")
    passes: list[Pass] = Field(min_length=1)
    telemetry_rate_hz: float = Field(default=10.0, gt=0.5, le=50.0)
    position_error_m: float = Field(default=0.03, ge=0.0, le=2.0,
                                    description="wandering LOCAL_POSITION_NED error (flow/mocap EKF), 1 sigma")


class IndoorCamera(CameraSection):
    """The payload's camera (mounted sideways, by preset or intrinsics) and how the payload tiles its frames."""

    width: int = Field(default=320, ge=16, le=4096)
    height: int = Field(default=240, ge=16, le=4096)
    mount_rpy_deg: tuple[float, float, float] = Field(
        default=(0.0, 90.0, 90.0), description="(0, 90, 90): looking out of the vehicle's right side, image upright")


class IndoorScenario(StrictModel):
    """A whole vertical-farm scenario file (`kind: vertical_farm`)."""

    kind: Literal["vertical_farm"]
    site: Path = Field(description="the payload's site file, relative to this scenario file")
    internal_origin: InternalOrigin = InternalOrigin()
    plants: list[PlantGroup] = Field(default_factory=list)
    flight: IndoorFlight
    camera: IndoorCamera = IndoorCamera()
    crop: CropSection = CropSection(kind="soybean")
    light: LightSection = LightSection(sun_elevation_deg=80.0, colour_temp_k=4500.0)
    seed: int = Field(default=0, ge=0)

    # filled by load_indoor_scenario: the parsed site file
    model_config = ConfigDict(extra="forbid", frozen=False)
    layout: SiteLayout | None = None


def is_indoor(path: str | Path) -> bool:
    """Whether a scenario file is a vertical farm (`kind: vertical_farm`) rather than a field survey."""
    data = read_yaml(path)
    return isinstance(data, dict) and data.get("kind") == "vertical_farm"


def load_indoor_scenario(path: str | Path) -> IndoorScenario:
    """Load a vertical-farm scenario and its site file; ConfigError naming the file, field and value."""
    s = load_config(path, IndoorScenario)
    site_path = (Path(path).parent / s.site).resolve()
    s.site = site_path
    s.layout = load_site(site_path)
    problems = []
    names = {r.name for r in s.layout.racks}
    for i, g in enumerate(s.plants):
        if g.rack not in names:
            problems.append(f"field 'plants[{i}].rack': value {g.rack!r} is not a rack of {site_path} "
                            f"({', '.join(sorted(names))})")
            continue
        r = s.layout.rack(g.rack)
        if g.face not in r.faces:
            problems.append(f"field 'plants[{i}].face': value {g.face!r}: rack {r.name} carries plants on {r.faces}")
        if g.shelf > len(r.shelf_heights_m):
            problems.append(f"field 'plants[{i}].shelf': value {g.shelf}: rack {r.name} has "
                            f"{len(r.shelf_heights_m)} shelves")
        lo, hi = (g.bay - 1) * r.bay_width_m, min(g.bay * r.bay_width_m, r.length_m)
        if g.bay > r.bays or not (lo <= g.along_m - g.width_m / 2 and g.along_m + g.width_m / 2 <= hi):
            problems.append(f"field 'plants[{i}].along_m': value {g.along_m} (width {g.width_m}) does not lie in "
                            f"bay {g.bay} of rack {r.name} (along {lo:g}..{hi:g} m)")
    for i, p in enumerate(s.flight.passes):
        if p.rack not in names or p.face not in s.layout.rack(p.rack).faces:
            problems.append(f"field 'flight.passes[{i}]': value {p.rack}:{p.face} is not a plant face of {site_path}")
    if problems:
        raise ConfigError(f"{path}: invalid scenario\n" + "\n".join(f"  - {m}" for m in problems))
    return s


def group_centre(s: IndoorScenario, g: PlantGroup) -> tuple[float, float]:
    """(along, up) of a plant group's centre on its face."""
    assert s.layout is not None
    r = s.layout.rack(g.rack)
    base = r.shelf_heights_m[g.shelf - 1] + BOARD_M
    return g.along_m, base + g.height_m / 2.0


@dataclass(frozen=True)
class _Group:
    """A plant group as the world's patch: a disk in face (along, up) metres."""

    cls: str
    east_m: float
    north_m: float
    radius_m: float
    stage: str


def face_world(s: IndoorScenario, f: RackFace) -> World:
    """The plants on one rack face: the world's canopy in (along, up) metres with this face's groups."""
    groups = []
    for g in s.plants:
        if g.rack == f.rack.name and g.face == f.side:
            a, u = group_centre(s, g)
            groups.append(_Group(g.cls, a, u, 0.5 * max(g.width_m, g.height_m), g.stage))
    seed = s.seed * 1009 + sum(ord(c) for c in f.id)
    return World(s.crop, s.light, groups, f.rack.length_m, f.rack.height_m, seed)


def board_mask(f: RackFace, up: np.ndarray) -> np.ndarray:
    """Where a face shows a shelf board or the rack's frame below the first shelf (no plants)."""
    r = f.rack
    out = up < r.shelf_heights_m[0]
    for hs in r.shelf_heights_m:
        out |= (up >= hs) & (up < hs + BOARD_M)
    return out


class SiteRenderer:
    """Renders the farm through the payload's camera model: rack faces, the floor, the far walls."""

    def __init__(self, s: IndoorScenario) -> None:
        assert s.layout is not None
        c = s.camera
        self.cam = c.model(c.mount_rpy_deg)
        self.origin = (s.internal_origin.lat, s.internal_origin.lon, s.internal_origin.alt)
        self.faces = site_faces(s.layout)
        self.worlds = {f.id: face_world(s, f) for f in self.faces if f.has_plants}
        self.fx = CameraEffects((c.height, c.width), c.noise_sigma, s.seed, c.auto_exposure,
                                wb_temp_k=c.white_balance_k)
        self.fpx = float(self.cam.K[0, 0])
        u = np.arange(c.width, dtype=np.float64) + 0.5
        v = np.arange(c.height, dtype=np.float64) + 0.5
        uu, vv = np.meshgrid(u, v)
        self._rays_cam = pixels_to_rays_cam(self.cam, np.stack([uu.ravel(), vv.ravel()], axis=1))

    def camera_enu(self, pose: Pose) -> np.ndarray:
        e, n, u = geodetic_to_enu(pose.lat_deg, pose.lon_deg, pose.alt_m, *self.origin)
        return np.array([float(e), float(n), float(u)])

    def scene(self, pose: Pose, t_s: float = 0.0) -> np.ndarray:
        """The scene radiance (H, W, 3) float32 at the true `pose` (before the camera's effects)."""
        c = self.cam
        o = self.camera_enu(pose)
        ned = self._rays_cam @ (rot_zyx(pose.roll_rad, pose.pitch_rad, pose.yaw_rad) @ c.body_from_cam()).T
        d = np.stack([ned[:, 1], ned[:, 0], -ned[:, 2]], axis=1)
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        hits = intersect_faces(self.faces, o, d)
        out = np.empty((c.height * c.width, 3), np.float32)
        out[:] = WALL_RGB  # rays that meet nothing (MISS) see the hall's walls
        for i, f in enumerate(self.faces):
            sel = np.nonzero(hits.face == i)[0]
            if not len(sel):
                continue
            up = hits.up[sel]
            board = board_mask(f, up)
            out[sel[board]] = BOARD_RGB
            w = self.worlds.get(f.id)
            plants = sel[~board]
            if w is None or not len(plants):
                out[sel] = BOARD_RGB
                continue
            cos = np.abs(d[plants] @ f.normal).clip(0.2, 1.0)
            fp = (hits.t[plants] / self.fpx / np.sqrt(cos)).astype(np.float32)
            out[plants] = np.clip(w.shade(hits.along[plants], hits.up[plants], fp, t_s).rgb, 0, 255)
        out[hits.face == FLOOR] = FLOOR_RGB
        _ = MISS
        return out.reshape(c.height, c.width, 3)

    def render(self, pose: Pose, t_s: float = 0.0) -> np.ndarray:
        """The camera's RGB frame (H, W, 3) uint8 at the true `pose` (no motion blur)."""
        return self.fx.apply(self.scene(pose, t_s), t_s)

    def render_at(self, pose_at: Callable[[float], Pose], t_s: float) -> np.ndarray:
        """The frame at timeline time t_s (no motion blur: 1-2 m/s at 2 m and 1 ms smear well under a pixel)."""
        return self.render(pose_at(t_s), t_s)


def _pass_geometry(s: IndoorScenario, p: Pass) -> tuple[np.ndarray, np.ndarray, float]:
    """A pass's start and end (east, north) and the heading (rad) that puts the face on the vehicle's right."""
    assert s.layout is not None
    f = face_by_id(site_faces(s.layout), f"{p.rack}:{p.face}")
    fl = s.flight
    nrm = f.normal[:2]
    heading = math.atan2(nrm[1], -nrm[0])  # right of heading h is (cos h, -sin h) = -normal
    fwd = np.array([math.sin(heading), math.cos(heading)])
    a0, a1 = -fl.overshoot_m, f.length_m + fl.overshoot_m
    if float(fwd @ f.along[:2]) < 0:
        a0, a1 = a1, a0
    lane = f.p0[:2] + nrm * fl.standoff_m
    return lane + a0 * f.along[:2], lane + a1 * f.along[:2], heading


def _line(a: np.ndarray, b: np.ndarray, step: float = 0.05) -> np.ndarray:
    n = max(2, int(np.ceil(np.linalg.norm(b - a) / step)) + 1)
    return a + (b - a) * np.linspace(0, 1, n)[:, None]


def indoor_timeline(s: IndoorScenario) -> Timeline:
    """The whole aisle flight as a Timeline (deterministic for the seed)."""
    rng = np.random.default_rng(s.seed)
    fl = s.flight
    o = s.internal_origin
    dt = 1.0 / TRUTH_HZ
    start = np.array(fl.start_m, dtype=float)
    hover = int(2.0 * TRUTH_HZ)
    en_parts: list[np.ndarray] = []
    yaw_parts: list[np.ndarray] = []
    passes = [_pass_geometry(s, p) for p in fl.passes]
    here, yaw_here = start, passes[0][2]
    for a, b, hdg in passes:
        for seg, y in ((_line(here, a), hdg), (_line(a, b), hdg)):
            en_parts.append(np.repeat(here[None, :], hover, axis=0))  # stop and turn to the next heading
            yaw_parts.append(np.full(hover, y))
            timed = _timed_path(seg, fl.speed_mps, fl.accel_mps2, dt)
            en_parts.append(timed)
            yaw_parts.append(np.full(len(timed), y))
            here = seg[-1]
        yaw_here = hdg
    timed = _timed_path(_line(here, start), fl.speed_mps, fl.accel_mps2, dt)
    en_parts += [np.repeat(here[None, :], hover, axis=0), timed]
    yaw_parts += [np.full(hover, yaw_here), np.full(len(timed), yaw_here)]
    horiz, yaw_h = np.concatenate(en_parts), np.unwrap(np.concatenate(yaw_parts))
    n_ground = int(2.0 * TRUTH_HZ)
    n_climb = int(math.ceil(fl.height_m / fl.climb_rate_mps * TRUTH_HZ)) + 1
    climb = np.linspace(0.0, fl.height_m, n_climb)
    settle = int(1.5 * TRUTH_HZ)
    up = np.concatenate([np.zeros(n_ground), climb, np.full(settle + len(horiz) + settle, fl.height_m),
                         climb[::-1], np.zeros(n_ground)])
    pre, post = n_ground + n_climb + settle, settle + n_climb + n_ground
    en = np.concatenate([np.repeat(start[None, :], pre, axis=0), horiz, np.repeat(horiz[-1:], post, axis=0)])
    yaw = np.concatenate([np.full(pre, yaw_h[0]), yaw_h, np.full(post, yaw_h[-1])])
    n = len(up)
    t = np.arange(n) * dt
    sig = 0.5 * TRUTH_HZ
    en = _smooth(en, sig)
    up = np.maximum(_smooth(up, sig), 0.0)
    yaw = _smooth(yaw, sig)
    vel = np.gradient(en, dt, axis=0)
    acc = np.gradient(vel, dt, axis=0)
    vup = np.gradient(up, dt)
    fwd = np.stack([np.sin(yaw), np.cos(yaw)], axis=1)
    right = np.stack([np.cos(yaw), -np.sin(yaw)], axis=1)
    push = acc + 0.1 * vel
    airborne = up > 0.05
    wobble = np.radians(0.3)
    pitch = -np.arctan2((push * fwd).sum(1), G) + airborne * _gauss_markov(n, dt, wobble, 1.0, rng)
    roll = np.arctan2((push * right).sum(1), G) * np.cos(pitch) + airborne * _gauss_markov(n, dt, wobble, 1.0, rng)
    yaw = (yaw + airborne * _gauss_markov(n, dt, wobble / 2, 2.0, rng) + np.pi) % (2 * np.pi) - np.pi
    lat, lon, alt = enu_to_geodetic(en[:, 0], en[:, 1], up, o.lat, o.lon, o.alt)
    truth = PoseTrack(t, np.asarray(lat), np.asarray(lon), np.asarray(alt), roll, pitch, yaw)
    t_arm = 1.0
    t_fly = (n_ground + n_climb) * dt
    t_land = (pre + len(horiz) + settle) * dt
    t_disarm = t_land + n_climb * dt + 0.5

    events: list[tuple[float, int, str, dict[str, Any]]] = []

    def add(ts: float, order: int, name: str, fields: dict[str, Any]) -> None:
        events.append((round(float(ts), 6), order, name, mav.roundtrip(name, fields)))

    end = float(t[-1])
    tt = np.arange(0.0, end + 1e-9, 1.0 / fl.telemetry_rate_hz)
    err = [_gauss_markov(len(tt), 1 / fl.telemetry_rate_hz, fl.position_error_m, 10.0, rng) for _ in range(3)]

    def at(x: np.ndarray) -> np.ndarray:
        return np.interp(tt, t, x)

    e_t, n_t, u_t = at(en[:, 0]) + err[0], at(en[:, 1]) + err[1], at(up) + err[2]
    ve, vn, vu = at(vel[:, 0]), at(vel[:, 1]), at(vup)
    r_t, p_t = at(np.unwrap(roll)), at(np.unwrap(pitch))
    y_t = (at(np.unwrap(yaw)) + np.pi) % (2 * np.pi) - np.pi
    for k, ts in enumerate(tt):
        boot = BOOT_MS + int(round(ts * 1000))
        add(ts, 2, "ATTITUDE", {"time_boot_ms": boot, "roll": r_t[k], "pitch": p_t[k], "yaw": y_t[k]})
        add(ts, 3, "LOCAL_POSITION_NED", {"time_boot_ms": boot, "x": n_t[k], "y": e_t[k], "z": -u_t[k],
                                          "vx": vn[k], "vy": ve[k], "vz": -vu[k]})
    for ts in np.arange(0.0, end + 1e-9, 0.2):  # no GPS: fix type 0, no satellites, unknown accuracy
        add(ts, 1, "GPS_RAW_INT", {"time_usec": int(round((T0_UNIX + ts) * 1e6)), "fix_type": 0, "lat": 0,
                                   "lon": 0, "alt": 0, "eph": 65535, "epv": 65535, "vel": 0, "cog": 0,
                                   "satellites_visible": 0})
    for ts in np.arange(0.0, end + 1e-9, 0.5):
        add(ts, 4, "EKF_STATUS_REPORT", {"flags": EKF_HEALTHY_LOCAL, "velocity_variance": 0.05,
                                         "pos_horiz_variance": 0.04, "pos_vert_variance": 0.03,
                                         "compass_variance": 0.02, "terrain_alt_variance": 0.0})
    for ts in np.arange(0.0, end + 1e-9, 1.0):
        armed = t_arm <= ts < t_disarm
        mode = ALTHOLD if ts < t_fly else LOITER if ts < t_land else LAND
        add(ts, 0, "HEARTBEAT", {"type": COPTER, "autopilot": 3, "base_mode": 81 | (128 if armed else 0),
                                 "custom_mode": mode if armed else GUIDED, "system_status": 4 if armed else 3,
                                 "mavlink_version": 3})
        add(ts, 5, "SYSTEM_TIME", {"time_unix_usec": int(round((T0_UNIX + ts) * 1e6)),
                                   "time_boot_ms": BOOT_MS + int(round(ts * 1000))})
    events.sort(key=lambda x: (x[0], x[1]))
    params = [Param(p.name, float(np.float32(p.value)), p.type) for p in default_params(1, COPTER)]
    params.append(Param("EK3_SRC1_POSXY", 0.0, 2))  # optical flow / external nav: no GPS position source
    return Timeline(
        events=[Event(ts, name, f) for ts, _, name, f in events], params=params, sysid=1, compid=1,
        vehicle_type=COPTER, autopilot=3, truth=truth, source=f"vertical farm (seed {s.seed})", t0_unix=T0_UNIX,
        notes=[f"aisle flight: {len(fl.passes)} passes at {fl.speed_mps} m/s, {fl.standoff_m} m from the face, "
               f"camera {fl.height_m} m above the floor; airborne {t_arm:.0f}-{t_disarm:.0f} s; no GPS"],
    )
