"""A disease sighting as a self-contained record: what, how sure, where on the ground, and why to trust it.

A record carries everything needed to rebuild every output layer (detections.jsonl is the source
of truth), and the pose it was placed with. A sighting whose pose cannot be trusted (no
telemetry, no GPS fix, position 0/0, NaN attitude, telemetry too old, a ray that misses the
ground) is still recorded, with `flags` saying why, so that nothing is silently dropped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
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
    pixels_to_surface,
)
from payload.geo.camerapresets import PRESETS, camera_from_intrinsics
from payload.geo.frames import enu_to_geodetic
from payload.geo.site import RackFace, address, place_pixels
from payload.geo.surface import HIT, OUTSIDE, GroundSurface
from payload.settings.camera import CameraSection
from payload.settings.geotag import GeotagSection
from payload.types import GPS_FIX_NAMES, Frame, PoseEstimate, TileResult

SCHEMA = "cropscout.detection/1"

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

# A receiver without a fix reports 0, 0; interpolation and dead reckoning move that by metres, so
# anything within ~1 km of "Null Island" (open sea in the Gulf of Guinea, no crops) is that case.
NULL_ISLAND_DEG = 0.01


def _finite(*xs: float | None) -> bool:
    return all(x is not None and math.isfinite(x) for x in xs)


def utc_iso(t_wall: float) -> str:
    """An ISO-8601 UTC timestamp with milliseconds (for people and for GIS time fields)."""
    return datetime.fromtimestamp(t_wall, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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


def pose_flags(est: PoseEstimate | None, geotag: GeotagSection) -> list[str]:
    """Why this pose should not be trusted (empty when it can be)."""
    if est is None:
        return [FLAG_NO_TELEMETRY]
    if est.is_local:
        return _local_pose_flags(est, geotag)
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
    """Why a local-frame pose should not be trusted: no GPS fix is expected, the estimator judges itself."""
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

    Without a terrain surface both are the flat ground's altitude (`ground_altitude`), exactly as ever.
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


def _r(x: float | None, nd: int) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), nd)


@dataclass(frozen=True)
class DetectionContext:
    """What is the same for every detection of a run."""

    labels: Sequence[str]
    model_sha256: str
    run_id: str
    camera: CameraSection
    geotag: GeotagSection
    faces: Sequence[RackFace] = ()  # the site's rack faces (payload/geo/site.py); empty: no site
    surface: GroundSurface | None = None  # the terrain (geotag.ground: dem, payload/geo/terrain.py); None: flat


def build_detection(
    ctx: DetectionContext, frame: Frame, tile: TileResult, est: PoseEstimate | None, backend: str = ""
) -> dict[str, Any]:
    """One flagged tile -> a JSON-ready detection record (always returns one, trusted or not)."""
    if est is not None and est.is_local:
        return _local_detection(ctx, frame, tile, est, backend)
    flags = pose_flags(est, ctx.geotag)
    cam = camera_for(ctx.camera, frame.width, frame.height)
    lat = lon = ground_alt = height_agl = gsd = None
    poly = None
    pose_rec: dict[str, Any] | None = None
    fix_rec: dict[str, Any] = {"type": None, "name": "unknown", "hdop": None, "satellites": None}
    if est is not None:
        p = est.pose
        if ctx.camera.use_gimbal and est.gimbal_rpy_deg is not None:
            cam = cam.with_mount(gimbal_mount_rpy_deg(*est.gimbal_rpy_deg))
        ground, ground_alt = ground_under(ctx.surface, est, ctx.geotag)
        height_agl = p.alt_m - ground_alt
        pose_rec = {
            "lat": _r(p.lat_deg, 8),
            "lon": _r(p.lon_deg, 8),
            "alt_m": _r(p.alt_m, 3),
            "roll_deg": _r(math.degrees(p.roll_rad), 3),
            "pitch_deg": _r(math.degrees(p.pitch_rad), 3),
            "yaw_deg": _r(math.degrees(p.yaw_rad), 3),
            "t_boot_s": _r(est.t_boot_s, 4),
            "age_s": _r(est.age_s, 4),
            "position_age_s": _r(est.position_age_s, 4),
            "attitude_age_s": _r(est.attitude_age_s, 4),
            "extrapolated": bool(est.extrapolated),
            "gimbal_rpy_deg": None if est.gimbal_rpy_deg is None else list(est.gimbal_rpy_deg),
        }
        fix_rec = {
            "type": est.fix_type,
            "name": est.fix_name,
            "hdop": est.hdop,
            "satellites": est.satellites,
        }
        placeable = FLAG_POSITION_NAN not in flags and FLAG_ATTITUDE_NAN not in flags
        if placeable and ctx.surface is not None and not _finite(height_agl):
            flags.append(FLAG_OUTSIDE_DEM)  # the vehicle flies off the DEM: no ground known under it
            placeable = False
        elif placeable and not (_finite(height_agl) and height_agl > 0):
            flags.append(FLAG_NOT_ABOVE_GROUND)
            placeable = False
        elif placeable and height_agl < ctx.geotag.min_height_agl_m:
            flags.append(FLAG_TOO_LOW)  # still placed on the map, but kept out of the map (no grid update)
        if placeable and ctx.surface is not None:
            box = tile.box
            uv = np.concatenate([np.array([box.center]), box_corners(box.x, box.y, box.w, box.h)])
            lla, status = place_on_surface(cam, uv, est, ctx.surface)
            if np.any(status == OUTSIDE):
                flags.append(FLAG_OUTSIDE_DEM)
            elif np.any(status != HIT):
                flags.append(FLAG_MISSES_GROUND)
            if status[0] == HIT:
                lat, lon, ground_alt = float(lla[0, 0]), float(lla[0, 1]), float(lla[0, 2])
                gsd = ground_sample_distance(cam, p.alt_m - ground_alt)
            if np.all(status[1:] == HIT):
                poly = [[round(float(a), 8), round(float(b), 8)] for a, b in lla[1:, :2]]
        elif placeable:
            cu, cv = tile.box.center
            ll = pixel_to_ground(cam, cu, cv, p, ground)
            if ll is None:
                flags.append(FLAG_MISSES_GROUND)
            else:
                lat, lon = ll
            fp = footprint(cam, p, ground, (tile.box.x, tile.box.y, tile.box.w, tile.box.h))
            poly = None if fp is None else [[round(a, 8), round(b, 8)] for a, b in fp]
            gsd = ground_sample_distance(cam, height_agl)
    scores = np.asarray(tile.scores, dtype=float).ravel()
    names = list(ctx.labels) if len(ctx.labels) == scores.size else [f"class_{i}" for i in range(scores.size)]
    box = tile.box
    return {
        "schema": SCHEMA,
        "id": f"{ctx.run_id}:{frame.seq}:{box.row}:{box.col}",
        "run_id": ctx.run_id,
        "label": tile.label,
        "confidence": round(float(tile.confidence), 5),
        "scores": {n: round(float(s), 5) for n, s in zip(names, scores, strict=True)},
        "lat": _r(lat, 8),
        "lon": _r(lon, 8),
        "ground_alt_m": _r(ground_alt, 3),
        "height_agl_m": _r(height_agl, 3),
        "gsd_m": _r(gsd, 5),
        "footprint": poly,
        "trusted": not flags,
        "flags": flags,
        "pose": pose_rec,
        "fix": fix_rec,
        "tile": {"x": box.x, "y": box.y, "w": box.w, "h": box.h, "row": box.row, "col": box.col},
        "frame": {
            "seq": frame.seq,
            "t_mono": round(frame.t_mono, 6),
            "t_wall": round(frame.t_wall, 6),
            "utc": utc_iso(frame.t_wall),
            "source": frame.source,
            "width": frame.width,
            "height": frame.height,
        },
        "model_sha256": ctx.model_sha256,
        "backend": backend,
        "camera": {"hfov_deg": round(cam.hfov_deg, 4), "mount_rpy_deg": list(cam.mount_rpy_deg)},
        "crop": None,
    }


def _local_detection(
    ctx: DetectionContext, frame: Frame, tile: TileResult, est: PoseEstimate, backend: str
) -> dict[str, Any]:
    """A detection placed in the local frame: on a rack face of the site (with its rack/bay/shelf), or on
    the floor (up = 0) without a site; latitude and longitude only when the frame's origin is known."""
    flags = pose_flags(est, ctx.geotag)
    cam = camera_for(ctx.camera, frame.width, frame.height)
    if ctx.camera.use_gimbal and est.gimbal_rpy_deg is not None:
        cam = cam.with_mount(gimbal_mount_rpy_deg(*est.gimbal_rpy_deg))
    p = est.pose
    enu = est.enu_m if est.enu_m is not None else (math.nan, math.nan, math.nan)
    height = float(enu[2])
    vlat, vlon = geodetic_of(enu, est.origin)
    pose_rec: dict[str, Any] = {
        **local_record(enu, est.frame),
        "lat": _r(vlat, 8), "lon": _r(vlon, 8),
        "roll_deg": _r(math.degrees(p.roll_rad), 3), "pitch_deg": _r(math.degrees(p.pitch_rad), 3),
        "yaw_deg": _r(math.degrees(p.yaw_rad), 3), "t_boot_s": _r(est.t_boot_s, 4), "age_s": _r(est.age_s, 4),
        "position_age_s": _r(est.position_age_s, 4), "attitude_age_s": _r(est.attitude_age_s, 4),
        "extrapolated": bool(est.extrapolated),
        "estimator": None if est.estimator is None else {
            "flags": est.estimator.flags, "velocity_variance": est.estimator.velocity_variance,
            "pos_horiz_variance": est.estimator.pos_horiz_variance,
            "pos_vert_variance": est.estimator.pos_vert_variance, "source": est.estimator.source},
    }
    local = site = face_fp = None
    lat = lon = None
    placeable = FLAG_POSITION_NAN not in flags and FLAG_ATTITUDE_NAN not in flags
    if placeable and not (_finite(height) and height > 0):
        flags.append(FLAG_NOT_ABOVE_GROUND)
        placeable = False
    elif placeable and height < ctx.geotag.min_height_agl_m:
        flags.append(FLAG_TOO_LOW)
    box = tile.box
    if placeable:
        uv = np.concatenate([np.array([box.center]), box_corners(box.x, box.y, box.w, box.h)])
        if ctx.faces:
            pl = place_pixels(ctx.faces, cam, uv, enu, p.roll_rad, p.pitch_rad, p.yaw_rad)
            hit = pl.enu[0]
            if not pl.on_plants[0]:
                flags.append(FLAG_NOT_ON_PLANTS)
            else:
                f = ctx.faces[int(pl.face[0])]
                a = address(f.rack, f.side, float(pl.along[0]), float(pl.up[0]))
                site = {"face_id": f.id, **a.as_dict(), "text": a.text()}
                if np.all(pl.face[1:] == pl.face[0]):
                    face_fp = [[round(float(x), 3), round(float(y), 3)] for x, y in zip(pl.along[1:], pl.up[1:],
                                                                                       strict=True)]
        else:
            off = pixels_to_ground_offsets(cam, uv[:1], p.roll_rad, p.pitch_rad, p.yaw_rad, height)[0]
            hit = np.array([enu[0] + off[0], enu[1] + off[1], 0.0])
            if not np.all(np.isfinite(off)):
                flags.append(FLAG_MISSES_GROUND)
        if np.all(np.isfinite(hit)):
            local = local_record(hit, est.frame)
            lat, lon = geodetic_of(hit, est.origin)
    scores = np.asarray(tile.scores, dtype=float).ravel()
    names = list(ctx.labels) if len(ctx.labels) == scores.size else [f"class_{i}" for i in range(scores.size)]
    return {
        "schema": SCHEMA,
        "id": f"{ctx.run_id}:{frame.seq}:{box.row}:{box.col}",
        "run_id": ctx.run_id,
        "label": tile.label,
        "confidence": round(float(tile.confidence), 5),
        "scores": {n: round(float(s), 5) for n, s in zip(names, scores, strict=True)},
        "lat": _r(lat, 8),
        "lon": _r(lon, 8),
        "frame_of_reference": est.frame,
        "local": local,
        "site": site,
        "face_footprint": face_fp,
        "ground_alt_m": None,
        "height_agl_m": _r(height, 3),
        "gsd_m": None,
        "footprint": None,
        "trusted": not flags,
        "flags": flags,
        "pose": pose_rec,
        "fix": {"type": est.fix_type, "name": est.fix_name, "hdop": est.hdop, "satellites": est.satellites},
        "tile": {"x": box.x, "y": box.y, "w": box.w, "h": box.h, "row": box.row, "col": box.col},
        "frame": {
            "seq": frame.seq, "t_mono": round(frame.t_mono, 6), "t_wall": round(frame.t_wall, 6),
            "utc": utc_iso(frame.t_wall), "source": frame.source, "width": frame.width, "height": frame.height,
        },
        "model_sha256": ctx.model_sha256,
        "backend": backend,
        "camera": {"hfov_deg": round(cam.hfov_deg, 4), "mount_rpy_deg": list(cam.mount_rpy_deg)},
        "crop": None,
    }


__all__ = [
    "GPS_FIX_NAMES",
    "SCHEMA",
    "DetectionContext",
    "build_detection",
    "ground_under",
    "place_on_surface",
    "camera_for",
    "ground_altitude",
    "pose_flags",
    "utc_iso",
]
