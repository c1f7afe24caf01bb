"""Score a mission's hotspots against the field's true disease patches.

Pure functions over local East-North metres from the field origin, so the rules can be checked
against hand-worked answers. The rules (stated in every report so a reader can judge them):
- a patch is FOUND when a hotspot of its class has its centroid within the patch radius plus
  `tolerance_m` of the patch centre;
- a hotspot is FALSE when its centroid is within radius + tolerance of no patch of its class;
- a found patch's centroid error is the distance from its centre to the nearest matching hotspot.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TruePatch:
    """A disease patch of the scenario: class and disk in metres east/north of the origin."""

    cls: str
    east_m: float
    north_m: float
    radius_m: float


@dataclass(frozen=True)
class FoundHotspot:
    """A hotspot the payload reported, projected into the same local frame."""

    cls: str
    east_m: float
    north_m: float
    count: int = 1
    max_confidence: float = 0.0


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    return float(np.percentile(np.asarray(values, dtype=float), q))


def score_mission(
    patches: Sequence[TruePatch],
    hotspots: Sequence[FoundHotspot],
    tolerance_m: float,
) -> dict:
    """Match hotspots to patches and return the report's figures (JSON-ready)."""
    if tolerance_m < 0:
        raise ValueError("tolerance_m must be >= 0")
    patch_rows = []
    errors: list[float] = []
    matched_hotspots: set[int] = set()
    for p in patches:
        best: tuple[float, int] | None = None
        for j, h in enumerate(hotspots):
            if h.cls != p.cls:
                continue
            d = math.hypot(h.east_m - p.east_m, h.north_m - p.north_m)
            if d <= p.radius_m + tolerance_m:
                matched_hotspots.add(j)
                if best is None or d < best[0]:
                    best = (d, j)
        found = best is not None
        if found:
            errors.append(best[0])
        patch_rows.append(
            {
                "class": p.cls,
                "east_m": p.east_m,
                "north_m": p.north_m,
                "radius_m": p.radius_m,
                "found": found,
                "centroid_error_m": None if best is None else round(best[0], 3),
                "hotspot_index": None if best is None else best[1],
            }
        )
    false_idx = [j for j in range(len(hotspots)) if j not in matched_hotspots]

    classes = sorted({p.cls for p in patches} | {h.cls for h in hotspots})
    per_class = {}
    for c in classes:
        rows = [r for r in patch_rows if r["class"] == c]
        errs = [r["centroid_error_m"] for r in rows if r["found"]]
        per_class[c] = {
            "patches_total": len(rows),
            "patches_found": sum(r["found"] for r in rows),
            "false_hotspots": sum(1 for j in false_idx if hotspots[j].cls == c),
            "hotspots": sum(1 for h in hotspots if h.cls == c),
            "centroid_error_m_median": _percentile(errs, 50),
        }
    return {
        "match_rule": (
            f"a patch is found when a hotspot of its class has its centroid within the patch radius "
            f"+ {tolerance_m:g} m of the patch centre; a hotspot matching no patch of its class is false"
        ),
        "tolerance_m": tolerance_m,
        "patches_total": len(patches),
        "patches_found": sum(r["found"] for r in patch_rows),
        "hotspots_total": len(hotspots),
        "false_hotspots": len(false_idx),
        "centroid_error_m_median": _percentile(errors, 50),
        "centroid_error_m_p95": _percentile(errors, 95),
        "per_class": per_class,
        "patches": patch_rows,
        "false_hotspot_positions": [
            {"class": hotspots[j].cls, "east_m": hotspots[j].east_m, "north_m": hotspots[j].north_m}
            for j in false_idx
        ],
    }
