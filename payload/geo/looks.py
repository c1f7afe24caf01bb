"""A look: one classified frame as a record, every tile with its scores, call and ground footprint.

The evidence grid needs every view of the ground, healthy ones included (a view that saw no
disease is evidence too), and `payload export` must rebuild exactly the map the flight built. So
each frame becomes one look record in detections.jsonl, written before the grid uses it, and the
grid is only ever updated from such records (payload/geo/diseasemap.py): live and export read the
same numbers in the same order. A look whose pose is not trusted (the same flags as a detection,
plus below_min_height) is recorded but does not update the grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from payload.geo.detections import DetectionContext, utc_iso
from payload.geo.frameview import FrameView, frame_view
from payload.types import Frame, PoseEstimate, TileResult

LOOK_SCHEMA = "cropscout.look/1"


def look_record(view: FrameView, tiles: Sequence[TileResult]) -> dict[str, Any]:
    """The view's frame's tiles -> a JSON-ready look record (always one; `trusted` says if the map may use it).

    Where each tile lands is the view's answer: a ground `footprint` (lat/lon), or on a rack face its
    `face` and `face_quad` ((along, up) metres) with the ground footprint empty (a rack face is not ground).
    """
    ctx, frame = view.ctx, view.frame
    placed, ray_flags = view.tile_fields(tiles)
    flags = view.flags + ray_flags
    return {
        "schema": LOOK_SCHEMA,
        "run_id": ctx.run_id,
        # t_boot_s: the stamp on the vehicle's clock, as the pose was looked up (the mission scores it against
        # the true exposure time); latency_s: how far the source moved the stamp back (camera.latency_s)
        "frame": {"seq": frame.seq, "t_mono": round(frame.t_mono, 6), "t_wall": round(frame.t_wall, 6),
                  "utc": utc_iso(frame.t_wall), "width": frame.width, "height": frame.height,
                  "t_boot_s": None if view.est is None else round(view.est.t_boot_s, 6),
                  "latency_s": frame.latency_s},
        "trusted": not flags,
        "flags": flags,
        **view.look_fields(),
        "classes": list(ctx.labels),
        "tiles": [
            {"row": t.box.row, "col": t.box.col, "label": t.label, "flagged": bool(t.flagged),
             "scores": [round(float(s), 5) for s in np.asarray(t.scores, dtype=float).ravel()], **where}
            for t, where in zip(tiles, placed, strict=True)
        ],
        "model_sha256": ctx.model_sha256,
    }


def build_look(
    ctx: DetectionContext, frame: Frame, tiles: Sequence[TileResult], est: PoseEstimate | None
) -> dict[str, Any]:
    """A look record without a view at hand (tools, tests); the geotagging handler builds the view once per frame."""
    return look_record(frame_view(ctx, frame, est), tiles)
