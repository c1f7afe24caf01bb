"""One frame as the geo code sees it: pose, camera, surface and frame of reference, built once.

A look record and each detection record of a frame are asked of the same `FrameView`: it judges the
pose once (`flags`, `placeable`), builds the camera once (with the gimbal's mount when the config
takes it), finds the ground under the vehicle once, and then answers where tiles land: footprints
for the look, a sighting's point and footprint for a detection, each with the flags of the rays
that missed. `frame_view` is the one place that chooses how a frame is placed:
- `GroundView`: a global pose over flat ground or a terrain surface (latitude, longitude, altitude);
- `FloorView`: a local pose (GPS-denied) without a site: sightings on the floor, up = 0;
- `FaceView`: a local pose in an indoor site: rays cut with the rack faces (face, along, up);
- `NoPoseView`: no pose at all, so nothing is placed (the records say no_telemetry).
The record builders (payload/geo/looks.py, detections.py) never ask which one they hold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from payload.geo.camera import (
    CameraModel,
    Ground,
    box_corners,
    camera_enu,
    footprint,
    gimbal_mount_rpy_deg,
    ground_sample_distance,
    hits_to_latlon_alt,
    pixel_to_ground,
    pixels_to_ground_offsets,
    pixels_to_latlon,
    pixels_to_rays_enu,
    pixels_to_surface,
)
from payload.geo.camerapresets import PRESETS, camera_from_intrinsics
from payload.geo.frames import enu_to_geodetic
from payload.geo.placeerror import PlaceMotion, place_sigma_m
from payload.geo.site import RackFace, address, place_pixels
from payload.geo.surface import HIT, OUTSIDE, GroundSurface
from payload.settings.camera import CameraSection
from payload.settings.geotag import GeotagSection
from payload.types import Frame, PoseEstimate, TileResult

# Reasons a pose is not trusted; each is a string in a record's `flags`.
FLAG_NO_TELEMETRY = "no_telemetry"
FLAG_NO_FIX = "no_fix"
FLAG_HDOP_HIGH = "hdop_high"
FLAG_LATLON_ZERO = "latlon_zero"
FLAG_POSITION_NAN = "position_nan"
FLAG_ATTITUDE_NAN = "attitude_nan"
FLAG_POSE_STALE = "pose_stale"
FLAG_NOT_ABOVE_GROUND = "not_above_ground"
FLAG_MISSES_GROUND = "ray_misses_ground"
FLAG_TOO_LOW = "below_min_height"  # take-off, landing: the ground is seen at a scale the model never learnt
# local frame (GPS-denied): the estimator's own health replaces the GPS fix as the reason to distrust
FLAG_ESTIMATOR_UNHEALTHY = "estimator_unhealthy"
FLAG_NO_ESTIMATOR_REPORT = "no_estimator_report"
FLAG_NOT_ON_PLANTS = "not_on_plants"  # site: the ray meets the floor, a rack's back or nothing
# terrain (geotag.ground: dem): the vehicle, or a ray of the sighting, left the DEM; the ground there is unknown
FLAG_OUTSIDE_DEM = "outside_dem"
# how sure the look is of its place (payload/geo/placeerror.py, geotag.max_*): placed, but kept out of the map
FLAG_TILT_HIGH = "tilt_high"
FLAG_RATE_HIGH = "rate_high"
FLAG_PLACE_UNCERTAIN = "place_uncertain"

# A receiver without a fix reports 0, 0; interpolation and dead reckoning move that by metres, so
# anything within ~1 km of "Null Island" (open sea in the Gulf of Guinea, no crops) is that case.
NULL_ISLAND_DEG = 0.01


def _finite(*xs: float | None) -> bool:
    return all(x is not None and math.isfinite(x) for x in xs)


def _r(x: float | None, nd: int) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), nd)


@dataclass(frozen=True)
class DetectionContext:
    """What is the same for every frame of a run."""

    labels: Sequence[str]
    model_sha256: str
    run_id: str
    camera: CameraSection
    geotag: GeotagSection
    faces: Sequence[RackFace] = ()  # the site's rack faces (payload/geo/site.py); empty: no site
    surface: GroundSurface | None = None  # the terrain (geotag.ground: dem, payload/geo/terrain.py); None: flat


def camera_for(section: CameraSection, width: int, height: int) -> CameraModel:
    """The camera model for frames of this size (a calibration made at another size is scaled)."""
    if section.preset is not None:
        return PRESETS[section.preset].camera(width, height, section.mount_rpy_deg)
    if section.focal_length_mm is not None:
        assert section.sensor_width_mm is not None and section.sensor_height_mm is not None
        return camera_from_intrinsics(width, height, section.sensor_width_mm, section.sensor_height_mm,
                                      section.focal_length_mm, section.mount_rpy_deg)
    if section.K is None:
        return CameraModel.from_hfov(width, height, section.hfov_deg, section.mount_rpy_deg)
    cw = section.width or width
    ch = section.height or height
    k = np.array(section.K, dtype=float)
    if (cw, ch) != (width, height):
        # OpenCV's pixel-centre principal point scales about -0.5; do it in corner coordinates
        sx, sy = width / cw, height / ch
        k = k.copy()
        k[0, 0] *= sx
        k[1, 1] *= sy
        k[0, 1] *= sx
        k[0, 2] = (k[0, 2] + 0.5) * sx - 0.5
        k[1, 2] = (k[1, 2] + 0.5) * sy - 0.5
    return CameraModel.from_calibration(width, height, k, section.dist, section.mount_rpy_deg)


def _global_pose_flags(est: PoseEstimate, geotag: GeotagSection) -> list[str]:
    flags: list[str] = []
    p = est.pose
    if est.fix_type is None or est.fix_type < geotag.min_fix_type:
        flags.append(FLAG_NO_FIX)
    if est.hdop is not None and est.hdop > geotag.max_hdop:
        flags.append(FLAG_HDOP_HIGH)
    if not _finite(p.lat_deg, p.lon_deg, p.alt_m):
        flags.append(FLAG_POSITION_NAN)
    elif abs(p.lat_deg) < NULL_ISLAND_DEG and abs(p.lon_deg) < NULL_ISLAND_DEG:
        flags.append(FLAG_LATLON_ZERO)
    if not _finite(p.roll_rad, p.pitch_rad, p.yaw_rad):
        flags.append(FLAG_ATTITUDE_NAN)
    if not _finite(est.age_s) or est.age_s > geotag.max_pose_age_s:
        flags.append(FLAG_POSE_STALE)
    return flags


def _local_pose_flags(est: PoseEstimate, geotag: GeotagSection) -> list[str]:
    """A local-frame pose: no GPS fix is expected, the estimator judges itself."""
    flags: list[str] = []
    p = est.pose
    if est.enu_m is None or not _finite(*est.enu_m):
        flags.append(FLAG_POSITION_NAN)
    if not _finite(p.roll_rad, p.pitch_rad, p.yaw_rad):
        flags.append(FLAG_ATTITUDE_NAN)
    if not _finite(est.age_s) or est.age_s > geotag.max_pose_age_s:
        flags.append(FLAG_POSE_STALE)
    h = est.estimator
    if h is None:
        if geotag.require_estimator_report:
            flags.append(FLAG_NO_ESTIMATOR_REPORT)
    elif not h.rel_horiz_ok or max(h.velocity_variance, h.pos_horiz_variance,
                                   h.pos_vert_variance) > geotag.max_estimator_variance:
        flags.append(FLAG_ESTIMATOR_UNHEALTHY)
    return flags


def pose_flags(est: PoseEstimate | None, geotag: GeotagSection) -> list[str]:
    """Why this pose should not be trusted (empty when it can be)."""
    if est is None:
        return [FLAG_NO_TELEMETRY]
    return (_local_pose_flags if est.is_local else _global_pose_flags)(est, geotag)


def local_record(enu: Sequence[float] | np.ndarray, frame: str) -> dict[str, Any]:
    """A point of the local frame as a record block (metres east, north, up of the EKF origin)."""
    return {"frame": frame, "east_m": _r(float(enu[0]), 3), "north_m": _r(float(enu[1]), 3),
            "up_m": _r(float(enu[2]), 3)}


def geodetic_of(enu: Sequence[float] | np.ndarray, origin: tuple[float, float, float] | None) -> tuple[
        float | None, float | None]:
    """Latitude, longitude of a local point when the frame's origin is known, else (None, None)."""
    if origin is None or not all(math.isfinite(float(x)) for x in enu):
        return None, None
    lat, lon, _ = enu_to_geodetic(float(enu[0]), float(enu[1]), float(enu[2]), *origin)
    return float(lat), float(lon)


def ground_altitude(est: PoseEstimate, geotag: GeotagSection) -> float:
    """Altitude (m MSL) of the flat ground the rays are cut with."""
    if geotag.ground == "agl" and geotag.height_agl_m is not None:
        return est.pose.alt_m - geotag.height_agl_m
    return est.home_alt_m


def ground_under(surface: GroundSurface | None, est: PoseEstimate, geotag: GeotagSection) -> tuple[Ground, float]:
    """What the rays are cut with, and the ground's altitude (m MSL) under the vehicle (NaN: off the DEM).

    Without a terrain surface both are the flat ground's altitude (`ground_altitude`).
    """
    if surface is None:
        g = ground_altitude(est, geotag)
        return g, g
    p = est.pose
    if not _finite(p.lat_deg, p.lon_deg, p.alt_m):
        return surface, math.nan
    c = camera_enu(p, surface)
    h = float(np.asarray(surface.height_at(c[0], c[1])).reshape(-1)[0])
    return surface, float(p.alt_m) - (float(c[2]) - h)


def place_on_surface(cam: CameraModel, uv: np.ndarray, est: PoseEstimate, surface: GroundSurface) -> tuple[
        np.ndarray, np.ndarray]:
    """(N, 3) lat, lon, alt where pixels' rays meet the terrain (NaN where not), and their SurfaceHits status."""
    hits = pixels_to_surface(cam, uv, est.pose, surface)
    return hits_to_latlon_alt(hits, surface), hits.status


def _tile_points(tile: TileResult) -> np.ndarray:
    """The tile's centre and its four corners (pixels): a sighting's point and footprint."""
    box = tile.box
    return np.concatenate([np.array([box.center]), box_corners(box.x, box.y, box.w, box.h)])


def _corners(tiles: Sequence[TileResult]) -> np.ndarray:
    return np.concatenate([box_corners(t.box.x, t.box.y, t.box.w, t.box.h) for t in tiles])


def _fix_record(est: PoseEstimate | None) -> dict[str, Any]:
    if est is None:
        return {"type": None, "name": "unknown", "hdop": None, "satellites": None}
    return {"type": est.fix_type, "name": est.fix_name, "hdop": est.hdop, "satellites": est.satellites}


def place_motion(est: PoseEstimate) -> PlaceMotion:
    """What the pose says about how it may be wrong, for payload/geo/placeerror.py (zeros where it says nothing)."""
    v = est.velocity_enu or (0.0, 0.0, 0.0)
    r, p, y = est.attitude_rate_rps or (0.0, 0.0, 0.0)
    return PlaceMotion(speed_mps=math.hypot(*v), accel_mps2=est.accel_mps2, position_age_s=est.position_age_s,
                       position_gap_s=est.position_gap_s, tilt_rate_rps=math.hypot(r, p), yaw_rate_rps=abs(y),
                       attitude_age_s=est.attitude_age_s, attitude_gap_s=est.attitude_gap_s,
                       clock_sigma_s=est.clock_sigma_s)


def _off_nadir(rays_enu: np.ndarray) -> np.ndarray:
    """Angles of unit ENU rays from straight down (radians; beyond pi/2 looks up)."""
    return np.arccos(np.clip(-rays_enu[:, 2], -1.0, 1.0))


class FrameView:
    """What every kind of frame answers; the kinds below differ only in how they place.

    `flags` are the frame's own (the pose and the height over what is below); each record copies them
    and adds the flags of its own rays. `look_fields` is the look's vehicle block (and frame of
    reference), `tile_fields` each tile's place in the look, `sighting_fields` a detection's place.
    """

    def __init__(self, ctx: DetectionContext, frame: Frame, est: PoseEstimate | None, flags: list[str]) -> None:
        self.ctx, self.frame, self.est = ctx, frame, est
        self.flags = flags
        self.camera = camera_for(ctx.camera, frame.width, frame.height)
        if est is not None and ctx.camera.use_gimbal and est.gimbal_rpy_deg is not None:
            self.camera = self.camera.with_mount(gimbal_mount_rpy_deg(*est.gimbal_rpy_deg))
        # a position and an attitude to cast rays from; the height checks may still take it back
        self.placeable = FLAG_POSITION_NAN not in flags and FLAG_ATTITUDE_NAN not in flags

    def _check_height(self, height: float, off_surface: bool = False) -> None:
        if not self.placeable:
            return
        if off_surface:
            self.flags.append(FLAG_OUTSIDE_DEM)  # the vehicle flies off the DEM: no ground known under it
            self.placeable = False
        elif not (_finite(height) and height > 0):
            self.flags.append(FLAG_NOT_ABOVE_GROUND)
            self.placeable = False
        elif height < self.ctx.geotag.min_height_agl_m:
            self.flags.append(FLAG_TOO_LOW)  # still placed, but kept out of the map (no grid update)

    def look_fields(self) -> dict[str, Any]:
        raise NotImplementedError

    def tile_fields(self, tiles: Sequence[TileResult]) -> tuple[list[dict[str, Any]], list[str]]:
        """Each tile's place in the look record, and the flags its rays add."""
        raise NotImplementedError

    def sighting_fields(self, tile: TileResult) -> tuple[dict[str, Any], list[str]]:
        """A detection's place (lat, lon ... footprint, in record order), and the flags its rays add."""
        raise NotImplementedError

    def pose_record(self) -> dict[str, Any] | None:
        raise NotImplementedError

    def fix_record(self) -> dict[str, Any]:
        return _fix_record(self.est)


class NoPoseView(FrameView):
    """No pose at all: nothing is placed, the records carry the ground fields empty."""

    def __init__(self, ctx: DetectionContext, frame: Frame) -> None:
        super().__init__(ctx, frame, None, [FLAG_NO_TELEMETRY])

    def look_fields(self) -> dict[str, Any]:
        return {"vehicle": None, "hdop": None}

    def tile_fields(self, tiles: Sequence[TileResult]) -> tuple[list[dict[str, Any]], list[str]]:
        return [{"footprint": None} for _ in tiles], []

    def sighting_fields(self, tile: TileResult) -> tuple[dict[str, Any], list[str]]:
        return {"lat": None, "lon": None, "ground_alt_m": None, "height_agl_m": None, "gsd_m": None,
                "footprint": None}, []

    def pose_record(self) -> dict[str, Any] | None:
        return None


class GroundView(FrameView):
    """A global pose over flat ground (home altitude or a fixed height) or the terrain surface."""

    def __init__(self, ctx: DetectionContext, frame: Frame, est: PoseEstimate) -> None:
        super().__init__(ctx, frame, est, _global_pose_flags(est, ctx.geotag))
        self.pose_est = est
        p = est.pose
        self.ground, self.ground_alt = ground_under(ctx.surface, est, ctx.geotag)
        self.height_agl = p.alt_m - self.ground_alt
        self.vehicle = None
        if self.placeable:
            self.vehicle = {"lat": round(p.lat_deg, 8), "lon": round(p.lon_deg, 8), "alt_m": round(p.alt_m, 3),
                            "height_agl_m": round(self.height_agl, 3) if math.isfinite(self.height_agl) else None}
        self._check_height(self.height_agl, off_surface=ctx.surface is not None and not _finite(self.height_agl))
        self.place: dict[str, Any] | None = None
        self._sigmas: dict[Any, float] = {}  # tile box -> sigma, so a frame's sightings reuse the look's
        if self.placeable:
            self._judge_motion()

    def _judge_motion(self) -> None:
        """The camera axis's tilt, the attitude's rate and the axis's place error against the limits.

        The look's place is its camera axis's: a banked frame's far tiles are always placed worse, and the
        map already weighs each tile by its own sigma (payload/geo/diseasemap.py); a look whose very centre
        cannot be placed is kept out (place_uncertain), as are frames too tilted or turning too fast.
        """
        p, g = self.pose_est.pose, self.ctx.geotag
        axis = pixels_to_rays_enu(self.camera, np.array([[self.frame.width / 2.0, self.frame.height / 2.0]]),
                                  p.roll_rad, p.pitch_rad, p.yaw_rad)
        off = _off_nadir(axis)
        tilt = math.degrees(float(off[0]))
        rate = math.degrees(math.hypot(*(self.pose_est.attitude_rate_rps or (0.0, 0.0, 0.0))))
        sigma = float(place_sigma_m(self.height_agl, off, place_motion(self.pose_est))[0])
        if tilt > g.max_tilt_deg:
            self.flags.append(FLAG_TILT_HIGH)
        if not (rate <= g.max_rate_dps):  # NaN rates too
            self.flags.append(FLAG_RATE_HIGH)
        if not (sigma <= g.max_place_sigma_m):
            self.flags.append(FLAG_PLACE_UNCERTAIN)
        self.place = {"tilt_deg": _r(tilt, 2), "rate_dps": _r(rate, 2),
                      "clock_sigma_ms": _r(1000.0 * self.pose_est.clock_sigma_s, 3), "sigma_m": _r(sigma, 3)}

    def tile_sigmas(self, tiles: Sequence[TileResult]) -> np.ndarray:
        """Each tile centre's 1-sigma ground-position error (m; inf where its ray cannot reach the ground)."""
        if not self.placeable or not tiles:
            return np.full(len(tiles), np.inf)
        p = self.pose_est.pose
        rays = pixels_to_rays_enu(self.camera, np.array([t.box.center for t in tiles], dtype=float),
                                  p.roll_rad, p.pitch_rad, p.yaw_rad)
        sig = place_sigma_m(self.height_agl, _off_nadir(rays), place_motion(self.pose_est))
        sig = np.where(np.isfinite(sig), sig, np.inf)
        self._sigmas.update(zip((t.box for t in tiles), sig.tolist(), strict=True))
        return sig

    def look_fields(self) -> dict[str, Any]:
        return {"vehicle": self.vehicle, "hdop": self.pose_est.hdop, "place": self.place}

    def tile_fields(self, tiles: Sequence[TileResult]) -> tuple[list[dict[str, Any]], list[str]]:
        footprints: list[list[list[float]] | None] = [None] * len(tiles)
        flags: list[str] = []
        if self.placeable and tiles:
            corners = _corners(tiles)
            if self.ctx.surface is not None:
                lla, status = place_on_surface(self.camera, corners, self.pose_est, self.ctx.surface)
                ll = np.where((status == HIT)[:, None], lla[:, :2], np.nan).reshape(len(tiles), 4, 2)
                if np.any(status == OUTSIDE):
                    flags.append(FLAG_OUTSIDE_DEM)
            else:
                ll = pixels_to_latlon(self.camera, corners, self.pose_est.pose, self.ground).reshape(len(tiles), 4, 2)
            for i, q in enumerate(ll):
                if np.all(np.isfinite(q)):
                    footprints[i] = [[round(float(a), 8), round(float(b), 8)] for a, b in q]
            if any(f is None for f in footprints) and FLAG_OUTSIDE_DEM not in flags:
                flags.append(FLAG_MISSES_GROUND)
        sig = self.tile_sigmas(tiles)
        sigmas = [None if fp is None or not math.isfinite(x) else round(float(x), 3)
                  for fp, x in zip(footprints, sig.tolist(), strict=True)]
        return [{"footprint": fp, "sigma_m": x} for fp, x in zip(footprints, sigmas, strict=True)], flags

    def sighting_fields(self, tile: TileResult) -> tuple[dict[str, Any], list[str]]:
        p = self.pose_est.pose
        cam = self.camera
        flags: list[str] = []
        lat = lon = gsd = None
        ground_alt = self.ground_alt
        poly = None
        if self.placeable and self.ctx.surface is not None:
            lla, status = place_on_surface(cam, _tile_points(tile), self.pose_est, self.ctx.surface)
            if np.any(status == OUTSIDE):
                flags.append(FLAG_OUTSIDE_DEM)
            elif np.any(status != HIT):
                flags.append(FLAG_MISSES_GROUND)
            if status[0] == HIT:
                lat, lon, ground_alt = float(lla[0, 0]), float(lla[0, 1]), float(lla[0, 2])
                gsd = ground_sample_distance(cam, p.alt_m - ground_alt)
            if np.all(status[1:] == HIT):
                poly = [[round(float(a), 8), round(float(b), 8)] for a, b in lla[1:, :2]]
        elif self.placeable:
            cu, cv = tile.box.center
            ll = pixel_to_ground(cam, cu, cv, p, self.ground)
            if ll is None:
                flags.append(FLAG_MISSES_GROUND)
            else:
                lat, lon = ll
            fp = footprint(cam, p, self.ground, (tile.box.x, tile.box.y, tile.box.w, tile.box.h))
            poly = None if fp is None else [[round(a, 8), round(b, 8)] for a, b in fp]
            gsd = ground_sample_distance(cam, self.height_agl)
        sigma = self._sigmas.get(tile.box)
        if sigma is None:
            sigma = float(self.tile_sigmas([tile])[0])
        if math.isfinite(sigma) and sigma > self.ctx.geotag.max_place_sigma_m and \
                FLAG_PLACE_UNCERTAIN not in self.flags:
            flags.append(FLAG_PLACE_UNCERTAIN)  # this sighting's own tile, in a look whose centre was placed
        return {"lat": _r(lat, 8), "lon": _r(lon, 8), "ground_alt_m": _r(ground_alt, 3),
                "height_agl_m": _r(self.height_agl, 3), "gsd_m": _r(gsd, 5), "footprint": poly}, flags

    def pose_record(self) -> dict[str, Any] | None:
        est = self.pose_est
        p = est.pose
        return {
            "lat": _r(p.lat_deg, 8), "lon": _r(p.lon_deg, 8), "alt_m": _r(p.alt_m, 3),
            "roll_deg": _r(math.degrees(p.roll_rad), 3), "pitch_deg": _r(math.degrees(p.pitch_rad), 3),
            "yaw_deg": _r(math.degrees(p.yaw_rad), 3), "t_boot_s": _r(est.t_boot_s, 4), "age_s": _r(est.age_s, 4),
            "position_age_s": _r(est.position_age_s, 4), "attitude_age_s": _r(est.attitude_age_s, 4),
            "extrapolated": bool(est.extrapolated),
            "gimbal_rpy_deg": None if est.gimbal_rpy_deg is None else list(est.gimbal_rpy_deg),
        }


class FloorView(FrameView):
    """A local pose (GPS-denied) without a site: sightings on the floor (up = 0); latitude and longitude
    only when the frame's origin is known. The look places no tiles: the floor has no map."""

    def __init__(self, ctx: DetectionContext, frame: Frame, est: PoseEstimate) -> None:
        super().__init__(ctx, frame, est, _local_pose_flags(est, ctx.geotag))
        self.pose_est = est
        self.enu = est.enu_m if est.enu_m is not None else (math.nan, math.nan, math.nan)
        self.height = float(self.enu[2])
        self.vehicle = None
        if self.placeable:
            lat, lon = geodetic_of(self.enu, est.origin)
            self.vehicle = {**local_record(self.enu, est.frame), "lat": None if lat is None else round(lat, 8),
                            "lon": None if lon is None else round(lon, 8), "height_agl_m": round(self.height, 3)}
        self._check_height(self.height)

    def look_fields(self) -> dict[str, Any]:
        return {"frame_of_reference": self.pose_est.frame, "vehicle": self.vehicle, "hdop": self.pose_est.hdop}

    def _faces_of(self, tiles: Sequence[TileResult]) -> list[tuple[str, list[list[float]]] | None]:
        return [None] * len(tiles)

    def tile_fields(self, tiles: Sequence[TileResult]) -> tuple[list[dict[str, Any]], list[str]]:
        faces = self._faces_of(tiles)
        return [{"footprint": None, "face": None if fq is None else fq[0], "face_quad": None if fq is None else fq[1]}
                for fq in faces], []

    def _hit(self, tile: TileResult, flags: list[str]) -> tuple[np.ndarray, dict[str, Any] | None, Any]:
        """Where the tile's centre ray lands (local ENU), its site block and its face footprint."""
        p = self.pose_est.pose
        uv = _tile_points(tile)
        off = pixels_to_ground_offsets(self.camera, uv[:1], p.roll_rad, p.pitch_rad, p.yaw_rad, self.height)[0]
        if not np.all(np.isfinite(off)):
            flags.append(FLAG_MISSES_GROUND)
        return np.array([self.enu[0] + off[0], self.enu[1] + off[1], 0.0]), None, None

    def sighting_fields(self, tile: TileResult) -> tuple[dict[str, Any], list[str]]:
        flags: list[str] = []
        local = site = face_fp = None
        lat = lon = None
        if self.placeable:
            hit, site, face_fp = self._hit(tile, flags)
            if np.all(np.isfinite(hit)):
                local = local_record(hit, self.pose_est.frame)
                lat, lon = geodetic_of(hit, self.pose_est.origin)
        return {"lat": _r(lat, 8), "lon": _r(lon, 8), "frame_of_reference": self.pose_est.frame, "local": local,
                "site": site, "face_footprint": face_fp, "ground_alt_m": None, "height_agl_m": _r(self.height, 3),
                "gsd_m": None, "footprint": None}, flags

    def pose_record(self) -> dict[str, Any] | None:
        est = self.pose_est
        p = est.pose
        vlat, vlon = geodetic_of(self.enu, est.origin)
        h = est.estimator
        return {
            **local_record(self.enu, est.frame),
            "lat": _r(vlat, 8), "lon": _r(vlon, 8),
            "roll_deg": _r(math.degrees(p.roll_rad), 3), "pitch_deg": _r(math.degrees(p.pitch_rad), 3),
            "yaw_deg": _r(math.degrees(p.yaw_rad), 3), "t_boot_s": _r(est.t_boot_s, 4), "age_s": _r(est.age_s, 4),
            "position_age_s": _r(est.position_age_s, 4), "attitude_age_s": _r(est.attitude_age_s, 4),
            "extrapolated": bool(est.extrapolated),
            "estimator": None if h is None else {
                "flags": h.flags, "velocity_variance": h.velocity_variance, "pos_horiz_variance": h.pos_horiz_variance,
                "pos_vert_variance": h.pos_vert_variance, "source": h.source},
        }


class FaceView(FloorView):
    """A local pose in an indoor site: rays cut with the rack faces; a tile whose four corners land on one
    plant face gets its face and (along, up) quad (what the per-face grids read, payload/geo/facemap.py)."""

    def _faces_of(self, tiles: Sequence[TileResult]) -> list[tuple[str, list[list[float]]] | None]:
        faces: list[tuple[str, list[list[float]]] | None] = [None] * len(tiles)
        if not (self.placeable and tiles):
            return faces
        p = self.pose_est.pose
        pl = place_pixels(self.ctx.faces, self.camera, _corners(tiles), self.enu, p.roll_rad, p.pitch_rad, p.yaw_rad)
        for i in range(len(tiles)):
            k = slice(4 * i, 4 * i + 4)
            f = pl.face[k]
            if pl.on_plants[k].all() and np.all(f == f[0]):
                faces[i] = (self.ctx.faces[int(f[0])].id,
                            [[round(float(a), 4), round(float(u), 4)] for a, u in zip(pl.along[k], pl.up[k],
                                                                                      strict=True)])
        return faces

    def _hit(self, tile: TileResult, flags: list[str]) -> tuple[np.ndarray, dict[str, Any] | None, Any]:
        p = self.pose_est.pose
        pl = place_pixels(self.ctx.faces, self.camera, _tile_points(tile), self.enu, p.roll_rad, p.pitch_rad,
                          p.yaw_rad)
        site = face_fp = None
        if not pl.on_plants[0]:
            flags.append(FLAG_NOT_ON_PLANTS)
        else:
            f = self.ctx.faces[int(pl.face[0])]
            a = address(f.rack, f.side, float(pl.along[0]), float(pl.up[0]))
            site = {"face_id": f.id, **a.as_dict(), "text": a.text()}
            if np.all(pl.face[1:] == pl.face[0]):
                face_fp = [[round(float(x), 3), round(float(y), 3)] for x, y in zip(pl.along[1:], pl.up[1:],
                                                                                   strict=True)]
        return pl.enu[0], site, face_fp


def frame_view(ctx: DetectionContext, frame: Frame, est: PoseEstimate | None) -> FrameView:
    """The frame's view, chosen once by the pose's frame of reference and the site (the one place that asks)."""
    if est is None:
        return NoPoseView(ctx, frame)
    if not est.is_local:
        return GroundView(ctx, frame, est)
    return FaceView(ctx, frame, est) if ctx.faces else FloorView(ctx, frame, est)
