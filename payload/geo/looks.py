"""A look: one classified frame as a record, every tile with its scores, call and ground footprint.

The evidence grid needs every view of the ground, healthy ones included (a view that saw no
disease is evidence too), and `payload export` must rebuild exactly the map the flight built. So
each frame becomes one look record in detections.jsonl, written before the grid uses it, and the
grid is only ever updated from such records (payload/geo/diseasemap.py): live and export read the
same numbers in the same order. A look whose pose is not trusted (the same flags as a detection,
plus below_min_height) is recorded but does not update the grid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from payload.geo.camera import box_corners, gimbal_mount_rpy_deg, pixels_to_latlon
from payload.geo.detections import (
    FLAG_ATTITUDE_NAN,
    FLAG_MISSES_GROUND,
    FLAG_NOT_ABOVE_GROUND,
    FLAG_OUTSIDE_DEM,
    FLAG_POSITION_NAN,
    FLAG_TOO_LOW,
    DetectionContext,
    camera_for,
    geodetic_of,
    ground_under,
    local_record,
    place_on_surface,
    pose_flags,
    utc_iso,
)
from payload.geo.site import place_pixels
from payload.geo.surface import HIT, OUTSIDE
from payload.types import Frame, PoseEstimate, TileResult

LOOK_SCHEMA = "cropscout.look/1"


def build_look(
    ctx: DetectionContext, frame: Frame, tiles: Sequence[TileResult], est: PoseEstimate | None
) -> dict[str, Any]:
    """One frame's tiles -> a JSON-ready look record (always returns one; `trusted` says if the grid may use it)."""
    if est is not None and est.is_local:
        return _local_look(ctx, frame, tiles, est)
    flags = pose_flags(est, ctx.geotag)
    footprints: list[list[list[float]] | None] = [None] * len(tiles)
    vehicle = None
    if est is not None:
        p = est.pose
        cam = camera_for(ctx.camera, frame.width, frame.height)
        if ctx.camera.use_gimbal and est.gimbal_rpy_deg is not None:
            cam = cam.with_mount(gimbal_mount_rpy_deg(*est.gimbal_rpy_deg))
        ground, ground_alt = ground_under(ctx.surface, est, ctx.geotag)
        height_agl = p.alt_m - ground_alt
        placeable = FLAG_POSITION_NAN not in flags and FLAG_ATTITUDE_NAN not in flags
        if placeable:
            vehicle = {"lat": round(p.lat_deg, 8), "lon": round(p.lon_deg, 8), "alt_m": round(p.alt_m, 3),
                       "height_agl_m": round(height_agl, 3) if math.isfinite(height_agl) else None}
        if placeable and ctx.surface is not None and not math.isfinite(height_agl):
            flags.append(FLAG_OUTSIDE_DEM)  # the vehicle flies off the DEM: no ground known under it
            placeable = False
        elif placeable and not (math.isfinite(height_agl) and height_agl > 0):
            flags.append(FLAG_NOT_ABOVE_GROUND)
            placeable = False
        elif placeable and height_agl < ctx.geotag.min_height_agl_m:
            flags.append(FLAG_TOO_LOW)
        if placeable and tiles:
            corners = np.concatenate([box_corners(t.box.x, t.box.y, t.box.w, t.box.h) for t in tiles])
            if ctx.surface is not None:
                lla, status = place_on_surface(cam, corners, est, ctx.surface)
                ll = np.where((status == HIT)[:, None], lla[:, :2], np.nan).reshape(len(tiles), 4, 2)
                if np.any(status == OUTSIDE):
                    flags.append(FLAG_OUTSIDE_DEM)
            else:
                ll = pixels_to_latlon(cam, corners, p, ground).reshape(len(tiles), 4, 2)
            for i, q in enumerate(ll):
                if np.all(np.isfinite(q)):
                    footprints[i] = [[round(float(a), 8), round(float(b), 8)] for a, b in q]
            if any(f is None for f in footprints) and FLAG_OUTSIDE_DEM not in flags:
                flags.append(FLAG_MISSES_GROUND)
    names = list(ctx.labels)
    return {
        "schema": LOOK_SCHEMA,
        "run_id": ctx.run_id,
        "frame": {"seq": frame.seq, "t_mono": round(frame.t_mono, 6), "t_wall": round(frame.t_wall, 6),
                  "utc": utc_iso(frame.t_wall), "width": frame.width, "height": frame.height},
        "trusted": not flags,
        "flags": flags,
        "vehicle": vehicle,
        "hdop": None if est is None else est.hdop,
        "classes": names,
        "tiles": [
            {"row": t.box.row, "col": t.box.col, "label": t.label, "flagged": bool(t.flagged),
             "scores": [round(float(s), 5) for s in np.asarray(t.scores, dtype=float).ravel()],
             "footprint": fp}
            for t, fp in zip(tiles, footprints, strict=True)
        ],
        "model_sha256": ctx.model_sha256,
    }


def _local_look(ctx: DetectionContext, frame: Frame, tiles: Sequence[TileResult], est: PoseEstimate) -> dict[str, Any]:
    """A look in the local frame. With a site, each tile whose four corners land on one plant face gets
    `face` and `face_quad` ((along, up) metres): what the per-face evidence grids read
    (payload/geo/facemap.py). The ground `footprint` (lat/lon) is left empty: a rack face is not ground."""
    flags = pose_flags(est, ctx.geotag)
    p = est.pose
    enu = est.enu_m if est.enu_m is not None else (math.nan, math.nan, math.nan)
    placeable = FLAG_POSITION_NAN not in flags and FLAG_ATTITUDE_NAN not in flags
    vehicle = None
    faces: list[tuple[str, list[list[float]]] | None] = [None] * len(tiles)
    if placeable:
        lat, lon = geodetic_of(enu, est.origin)
        vehicle = {**local_record(enu, est.frame), "lat": None if lat is None else round(lat, 8),
                   "lon": None if lon is None else round(lon, 8), "height_agl_m": round(float(enu[2]), 3)}
        if not (math.isfinite(enu[2]) and enu[2] > 0):
            flags.append(FLAG_NOT_ABOVE_GROUND)
            placeable = False
        elif enu[2] < ctx.geotag.min_height_agl_m:
            flags.append(FLAG_TOO_LOW)
    if placeable and tiles and ctx.faces:
        cam = camera_for(ctx.camera, frame.width, frame.height)
        if ctx.camera.use_gimbal and est.gimbal_rpy_deg is not None:
            cam = cam.with_mount(gimbal_mount_rpy_deg(*est.gimbal_rpy_deg))
        corners = np.concatenate([box_corners(t.box.x, t.box.y, t.box.w, t.box.h) for t in tiles])
        pl = place_pixels(ctx.faces, cam, corners, enu, p.roll_rad, p.pitch_rad, p.yaw_rad)
        for i in range(len(tiles)):
            k = slice(4 * i, 4 * i + 4)
            f = pl.face[k]
            if pl.on_plants[k].all() and np.all(f == f[0]):
                faces[i] = (ctx.faces[int(f[0])].id,
                            [[round(float(a), 4), round(float(u), 4)] for a, u in zip(pl.along[k], pl.up[k],
                                                                                      strict=True)])
    names = list(ctx.labels)
    return {
        "schema": LOOK_SCHEMA,
        "run_id": ctx.run_id,
        "frame": {"seq": frame.seq, "t_mono": round(frame.t_mono, 6), "t_wall": round(frame.t_wall, 6),
                  "utc": utc_iso(frame.t_wall), "width": frame.width, "height": frame.height},
        "trusted": not flags,
        "flags": flags,
        "frame_of_reference": est.frame,
        "vehicle": vehicle,
        "hdop": est.hdop,
        "classes": names,
        "tiles": [
            {"row": t.box.row, "col": t.box.col, "label": t.label, "flagged": bool(t.flagged),
             "scores": [round(float(s), 5) for s in np.asarray(t.scores, dtype=float).ravel()],
             "footprint": None, "face": None if fq is None else fq[0], "face_quad": None if fq is None else fq[1]}
            for t, fq in zip(tiles, faces, strict=True)
        ],
        "model_sha256": ctx.model_sha256,
    }
