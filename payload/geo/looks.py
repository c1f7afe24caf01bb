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
    FLAG_POSITION_NAN,
    FLAG_TOO_LOW,
    DetectionContext,
    camera_for,
    ground_altitude,
    pose_flags,
    utc_iso,
)
from payload.types import Frame, PoseEstimate, TileResult

LOOK_SCHEMA = "cropscout.look/1"


def build_look(
    ctx: DetectionContext, frame: Frame, tiles: Sequence[TileResult], est: PoseEstimate | None
) -> dict[str, Any]:
    """One frame's tiles -> a JSON-ready look record (always returns one; `trusted` says if the grid may use it)."""
    flags = pose_flags(est, ctx.geotag)
    footprints: list[list[list[float]] | None] = [None] * len(tiles)
    vehicle = None
    if est is not None:
        p = est.pose
        cam = camera_for(ctx.camera, frame.width, frame.height)
        if ctx.camera.use_gimbal and est.gimbal_rpy_deg is not None:
            cam = cam.with_mount(gimbal_mount_rpy_deg(*est.gimbal_rpy_deg))
        ground_alt = ground_altitude(est, ctx.geotag)
        height_agl = p.alt_m - ground_alt
        placeable = FLAG_POSITION_NAN not in flags and FLAG_ATTITUDE_NAN not in flags
        if placeable:
            vehicle = {"lat": round(p.lat_deg, 8), "lon": round(p.lon_deg, 8), "alt_m": round(p.alt_m, 3),
                       "height_agl_m": round(height_agl, 3) if math.isfinite(height_agl) else None}
        if placeable and not (math.isfinite(height_agl) and height_agl > 0):
            flags.append(FLAG_NOT_ABOVE_GROUND)
            placeable = False
        elif placeable and height_agl < ctx.geotag.min_height_agl_m:
            flags.append(FLAG_TOO_LOW)
        if placeable and tiles:
            corners = np.concatenate([box_corners(t.box.x, t.box.y, t.box.w, t.box.h) for t in tiles])
            ll = pixels_to_latlon(cam, corners, p, ground_alt).reshape(len(tiles), 4, 2)
            for i, q in enumerate(ll):
                if np.all(np.isfinite(q)):
                    footprints[i] = [[round(float(a), 8), round(float(b), 8)] for a, b in q]
            if any(f is None for f in footprints):
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
