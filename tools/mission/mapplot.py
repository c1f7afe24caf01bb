"""The mission map: what an agronomist looks at first after a simulated flight.

Drawn in local metres east/north of the field's south-west corner so distances read directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import Circle, Polygon, Rectangle

from tools.mission.score import FoundHotspot, TruePatch

CLASS_COLOURS = {"rust": "#c0501f", "powdery_mildew": "#7a5cc4", "healthy": "#3a8f3a"}


def draw_mission_map(
    out_png: Path,
    field_w_m: float,
    field_h_m: float,
    patches: Sequence[TruePatch],
    hotspots: Sequence[FoundHotspot],
    track_en: Sequence[tuple[float, float]],
    footprints_en: Sequence[Sequence[tuple[float, float]]],
    score: dict,
    title: str = "Mission map",
) -> Path:
    """Write the map PNG: field, flight track, camera footprints, true patches, hotspots."""
    fig, ax = plt.subplots(figsize=(9, 9 * max(0.4, min(2.5, field_h_m / max(field_w_m, 1e-6)))))
    ax.add_patch(Rectangle((0, 0), field_w_m, field_h_m, facecolor="#e8f3e0", edgecolor="#3a8f3a", lw=1.5))
    for fp in footprints_en:
        ax.add_patch(Polygon(list(fp), closed=True, fill=False, edgecolor="#888888", lw=0.4, alpha=0.5))
    if track_en:
        xs, ys = zip(*track_en, strict=True)
        ax.plot(xs, ys, color="#1f4e9c", lw=1.2, label="flight track")
    tol = float(score.get("tolerance_m", 0.0))
    rows = score.get("patches", [])
    for i, p in enumerate(patches):
        found = bool(rows[i]["found"]) if i < len(rows) else False
        colour = CLASS_COLOURS.get(p.cls, "black")
        ax.add_patch(Circle((p.east_m, p.north_m), p.radius_m, facecolor=colour, alpha=0.25, edgecolor=colour))
        ax.add_patch(
            Circle((p.east_m, p.north_m), p.radius_m + tol, fill=False, edgecolor=colour, ls=":", lw=0.8)
        )
        ax.annotate(
            "found" if found else "MISSED",
            (p.east_m, p.north_m + p.radius_m + tol),
            ha="center",
            va="bottom",
            fontsize=7,
            color="black" if found else "red",
        )
    false_pos = {(f["east_m"], f["north_m"], f["class"]) for f in score.get("false_hotspot_positions", [])}
    for h in hotspots:
        is_false = (h.east_m, h.north_m, h.cls) in false_pos
        ax.plot(
            h.east_m,
            h.north_m,
            marker="X" if is_false else "o",
            ms=9,
            mec="red" if is_false else "black",
            mfc=CLASS_COLOURS.get(h.cls, "black"),
            ls="none",
        )
    handles = [
        plt.Line2D([], [], color="#1f4e9c", lw=1.2, label="flight track"),
        plt.Line2D([], [], color="#888888", lw=0.6, label="camera footprints"),
    ]
    for c, col in CLASS_COLOURS.items():
        if c == "healthy":
            continue
        handles.append(plt.Line2D([], [], marker="s", ls="none", ms=10, mfc=col, alpha=0.4, mec=col,
                                  label=f"true {c.replace('_', ' ')} patch"))
        handles.append(plt.Line2D([], [], marker="o", ls="none", ms=8, mfc=col, mec="black",
                                  label=f"{c.replace('_', ' ')} hotspot"))
    handles.append(plt.Line2D([], [], marker="X", ls="none", ms=9, mfc="white", mec="red", label="false hotspot"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    med = score.get("centroid_error_m_median")
    ax.set_title(
        f"{title}\npatches found {score.get('patches_found')}/{score.get('patches_total')}, "
        f"false hotspots {score.get('false_hotspots')}, "
        f"median centroid error {'n/a' if med is None else f'{med:.2f} m'}",
        fontsize=10,
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
