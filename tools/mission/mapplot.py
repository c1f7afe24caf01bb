"""The mission map: what an agronomist looks at first after a simulated flight.

Drawn in local metres east/north of the field's south-west corner so distances read directly: the
disease probability raster (the largest disease posterior per cell), the zones the payload
reported, the true patches, the flight track and camera footprints, and the coverage gaps.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Circle, Polygon, Rectangle

from tools.mission.score import FoundZone, TruePatch

CLASS_COLOURS = {"rust": "#c0501f", "powdery_mildew": "#7a5cc4", "healthy": "#3a8f3a"}


def _polys(geom) -> list:  # noqa: ANN001 - a shapely geometry
    if geom.is_empty:
        return []
    return list(getattr(geom, "geoms", [geom]))


def draw_mission_map(
    out_png: Path,
    field_w_m: float,
    field_h_m: float,
    patches: Sequence[TruePatch],
    zones: Sequence[FoundZone],
    track_en: Sequence[tuple[float, float]],
    footprints_en: Sequence[Sequence[tuple[float, float]]],
    score: dict,
    title: str = "Mission map",
    rasters: tuple[np.ndarray, tuple[float, float, float, float]] | None = None,
) -> Path:
    """Write the map PNG: probability raster, field, track, footprints, true patches, zones, coverage gaps."""
    fig, ax = plt.subplots(figsize=(9, 9 * max(0.4, min(2.5, field_h_m / max(field_w_m, 1e-6)))))
    ax.add_patch(Rectangle((0, 0), field_w_m, field_h_m, facecolor="#e8f3e0", edgecolor="#3a8f3a", lw=1.5))
    if rasters is not None:
        prob, extent = rasters
        im = ax.imshow(prob, extent=extent, origin="upper", cmap="magma", vmin=0.0, vmax=1.0, alpha=0.75,
                       interpolation="nearest", zorder=1)
        fig.colorbar(im, ax=ax, fraction=0.03, pad=0.01, label="disease probability (largest class)")
    for fp in footprints_en:
        ax.add_patch(Polygon(list(fp), closed=True, fill=False, edgecolor="#888888", lw=0.4, alpha=0.5, zorder=2))
    if track_en:
        xs, ys = zip(*track_en, strict=True)
        ax.plot(xs, ys, color="#1f4e9c", lw=1.2, zorder=3)
    for gap in score.get("coverage_gaps", []):
        ax.add_patch(Polygon(gap["polygon_en"], closed=True, facecolor="none", edgecolor="black", hatch="///",
                             lw=0.6, zorder=4))
    rows = score.get("patches", [])
    for i, p in enumerate(patches):
        status = rows[i]["status"] if i < len(rows) else "missed"
        colour = CLASS_COLOURS.get(p.cls, "black")
        ax.add_patch(Circle((p.east_m, p.north_m), p.radius_m, fill=False, edgecolor=colour, lw=1.5, ls="--",
                            zorder=5))
        ax.annotate(status, (p.east_m, p.north_m + p.radius_m + 0.5), ha="center", va="bottom", fontsize=7,
                    color="black" if status == "found" else "red", zorder=6)
    false_ids = {f["zone_id"] for f in score.get("false_zone_positions", [])}
    for z in zones:
        colour = CLASS_COLOURS.get(z.cls, "black")
        for poly in _polys(z.geometry):
            ax.add_patch(Polygon(list(poly.exterior.coords), closed=True, facecolor=colour, alpha=0.45,
                                 edgecolor="red" if z.zone_id in false_ids else colour, lw=1.2, zorder=6))
        ax.plot(z.east_m, z.north_m, marker="X" if z.zone_id in false_ids else "+", ms=8, color="black", ls="none",
                zorder=7)
    handles = [
        plt.Line2D([], [], color="#1f4e9c", lw=1.2, label="flight track"),
        plt.Line2D([], [], color="#888888", lw=0.6, label="camera footprints"),
        Rectangle((0, 0), 1, 1, facecolor="none", edgecolor="black", hatch="///", label="coverage gap"),
    ]
    for c, col in CLASS_COLOURS.items():
        if c == "healthy":
            continue
        handles.append(plt.Line2D([], [], color=col, ls="--", lw=1.5, label=f"true {c.replace('_', ' ')} patch"))
        handles.append(Rectangle((0, 0), 1, 1, facecolor=col, alpha=0.45, label=f"{c.replace('_', ' ')} zone"))
    handles.append(plt.Line2D([], [], marker="X", ls="none", ms=8, color="black", label="false zone centroid"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.12, 1.0), fontsize=8)
    med = score.get("centroid_error_m_median")
    cov = score.get("coverage_fraction")
    ax.set_title(
        f"{title}\npatches found {score.get('patches_found')}/{score.get('patches_total')} "
        f"(not inspected {score.get('patches_not_inspected', 0)}), false zones {score.get('false_zones')}, "
        f"median centroid error {'n/a' if med is None else f'{med:.2f} m'}, "
        f"coverage {'n/a' if cov is None else f'{100 * cov:.1f} %'}",
        fontsize=9,
    )
    ax.set_xlabel("east of field origin (m)")
    ax.set_ylabel("north of field origin (m)")
    ax.set_aspect("equal")
    margin = 0.08 * max(field_w_m, field_h_m)
    ax.set_xlim(-margin, field_w_m + margin)
    ax.set_ylim(-margin, field_h_m + margin)
    ax.grid(True, lw=0.3, alpha=0.5)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out_png
