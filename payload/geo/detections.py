"""A disease sighting as a self-contained record: what, how sure, where on the ground, and why to trust it.

A record carries everything needed to rebuild every output layer (detections.jsonl is the source
of truth), and the pose it was placed with. A sighting whose pose cannot be trusted (no
telemetry, no GPS fix, position 0/0, NaN attitude, telemetry too old, a ray that misses the
ground) is still recorded, with `flags` saying why, so that nothing is silently dropped. Where the
sighting lands (ground, floor or rack face) is the frame's view's answer (payload/geo/frameview.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np

from payload.geo.frameview import (
    FLAG_ATTITUDE_NAN,
    FLAG_ESTIMATOR_UNHEALTHY,
    FLAG_HDOP_HIGH,
    FLAG_LATLON_ZERO,
    FLAG_MISSES_GROUND,
    FLAG_NO_ESTIMATOR_REPORT,
    FLAG_NO_FIX,
    FLAG_NO_TELEMETRY,
    FLAG_NOT_ABOVE_GROUND,
    FLAG_NOT_ON_PLANTS,
    FLAG_OUTSIDE_DEM,
    FLAG_POSE_STALE,
    FLAG_POSITION_NAN,
    FLAG_TOO_LOW,
    NULL_ISLAND_DEG,
    DetectionContext,
    FrameView,
    camera_for,
    frame_view,
    geodetic_of,
    ground_altitude,
    ground_under,
    local_record,
    place_on_surface,
    pose_flags,
)
from payload.types import GPS_FIX_NAMES, Frame, PoseEstimate, TileResult

SCHEMA = "cropscout.detection/1"


def utc_iso(t_wall: float) -> str:
    """An ISO-8601 UTC timestamp with milliseconds (for people and for GIS time fields)."""
    return datetime.fromtimestamp(t_wall, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def detection_record(view: FrameView, tile: TileResult, backend: str = "") -> dict[str, Any]:
    """One flagged tile of the view's frame -> a JSON-ready detection record (always one, trusted or not)."""
    ctx, frame, cam = view.ctx, view.frame, view.camera
    placed, ray_flags = view.sighting_fields(tile)
    flags = view.flags + ray_flags
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
        **placed,
        "trusted": not flags,
        "flags": flags,
        "pose": view.pose_record(),
        "fix": view.fix_record(),
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


def build_detection(
    ctx: DetectionContext, frame: Frame, tile: TileResult, est: PoseEstimate | None, backend: str = ""
) -> dict[str, Any]:
    """A detection record of one tile without a view at hand (tools, tests); a frame's records share one view."""
    return detection_record(frame_view(ctx, frame, est), tile, backend)


__all__ = [
    "FLAG_ATTITUDE_NAN",
    "FLAG_ESTIMATOR_UNHEALTHY",
    "FLAG_HDOP_HIGH",
    "FLAG_LATLON_ZERO",
    "FLAG_MISSES_GROUND",
    "FLAG_NOT_ABOVE_GROUND",
    "FLAG_NOT_ON_PLANTS",
    "FLAG_NO_ESTIMATOR_REPORT",
    "FLAG_NO_FIX",
    "FLAG_NO_TELEMETRY",
    "FLAG_OUTSIDE_DEM",
    "FLAG_POSE_STALE",
    "FLAG_POSITION_NAN",
    "FLAG_TOO_LOW",
    "GPS_FIX_NAMES",
    "NULL_ISLAND_DEG",
    "SCHEMA",
    "DetectionContext",
    "build_detection",
    "camera_for",
    "detection_record",
    "geodetic_of",
    "ground_altitude",
    "ground_under",
    "local_record",
    "place_on_surface",
    "pose_flags",
    "utc_iso",
]
