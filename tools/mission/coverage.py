"""How much of the field the camera saw: the share of a 1 m grid under at least one camera footprint.

A mission that finds every patch over a field it barely covered proves little, and a flight cut
short (a tlog window, a payload that connected late) shows here first, so the missions summary
reports it beside the detection figures.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.path import Path as PolyPath


def field_coverage(width_m: float, height_m: float, footprints: Sequence[Sequence[tuple[float, float]]],
                   cell_m: float = 1.0) -> float:
    """Share (0-1) of the field's cells whose centre lies inside at least one footprint polygon.

    `footprints` are polygons in metres east/north of the field's SW corner, as
    `tools.mission.run.track_and_footprints` returns them.
    """
    if width_m <= 0 or height_m <= 0 or cell_m <= 0:
        raise ValueError("field size and cell size must be > 0")
    xs = np.arange(cell_m / 2, width_m, cell_m)
    ys = np.arange(cell_m / 2, height_m, cell_m)
    gx, gy = np.meshgrid(xs, ys)
    pts = np.column_stack([gx.ravel(), gy.ravel()])
    seen = np.zeros(len(pts), dtype=bool)
    for poly in footprints:
        if len(poly) < 3:
            continue
        ring = np.asarray(poly, dtype=float)
        lo, hi = ring.min(axis=0), ring.max(axis=0)
        box = (~seen) & (pts[:, 0] >= lo[0]) & (pts[:, 0] <= hi[0]) & (pts[:, 1] >= lo[1]) & (pts[:, 1] <= hi[1])
        if box.any():
            idx = np.flatnonzero(box)
            seen[idx[PolyPath(ring).contains_points(pts[idx])]] = True
    return float(seen.mean()) if len(pts) else 0.0
