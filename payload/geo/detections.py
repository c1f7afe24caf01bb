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

from payload.config import CameraSection, GeotagSection
from payload.geo.camera import (
    CameraModel,
    footprint,
    gimbal_mount_rpy_deg,
    ground_sample_distance,
    pixel_to_ground,
)
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


def ground_altitude(est: PoseEstimate, geotag: GeotagSection) -> float:
    """Altitude (m MSL) of the flat ground the rays are cut with."""
    if geotag.ground == "agl" and geotag.height_agl_m is not None:
        return est.pose.alt_m - geotag.height_agl_m
    return est.home_alt_m


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


def build_detection(
    ctx: DetectionContext, frame: Frame, tile: TileResult, est: PoseEstimate | None, backend: str = ""
) -> dict[str, Any]:
    """One flagged tile -> a JSON-ready detection record (always returns one, trusted or not)."""
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
        ground_alt = ground_altitude(est, ctx.geotag)
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
        if placeable and not (_finite(height_agl) and height_agl > 0):
            flags.append(FLAG_NOT_ABOVE_GROUND)
            placeable = False
        elif placeable and height_agl < ctx.geotag.min_height_agl_m:
            flags.append(FLAG_TOO_LOW)  # still placed on the map, but kept out of the map (no grid update)
        if placeable:
            cu, cv = tile.box.center
            ll = pixel_to_ground(cam, cu, cv, p, ground_alt)
            if ll is None:
                flags.append(FLAG_MISSES_GROUND)
            else:
                lat, lon = ll
            fp = footprint(cam, p, ground_alt, (tile.box.x, tile.box.y, tile.box.w, tile.box.h))
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


__all__ = [
    "GPS_FIX_NAMES",
    "SCHEMA",
    "DetectionContext",
    "build_detection",
    "camera_for",
    "ground_altitude",
    "pose_flags",
    "utc_iso",
]
