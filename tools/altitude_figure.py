"""A picture of what the mission camera sees over a disease patch from three heights, beside the truth.

Numbers about ground resolution are easier to believe next to the frames they come from: this
renders the scenario's own camera (its preset, output size and camera chain) straight down over one
of its patches at three heights above the ground, near (half the working height), at the working
height (where a model-input pixel is the bundle card's `working_gsd_mm`) and too high (four times
it), each beside its label frame (the true class of every pixel).

    python -m tools.altitude_figure --bundle build/quick_bundle --out docs/img/altitudes.png
        [--scenario configs/scenarios/default.yaml] [--patch 0] [--gsd-mm 12]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from payload.cliutil import run_cli
from payload.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
LABEL_COLOURS = {0: (61, 145, 64), 1: (214, 120, 30), 2: (200, 200, 215), 255: (40, 40, 40)}


class FigureError(UserError):
    """The figure cannot be drawn from these options."""


def working_height_m(gsd_mm: float, f_px: float, tile_px: float, model_px: int) -> float:
    """Height at which a nadir camera's tile (tile_px wide, resized to model_px) reaches gsd_mm per model pixel."""
    return gsd_mm / 1000.0 * model_px / tile_px * f_px


def _label_rgb(labels: np.ndarray) -> np.ndarray:
    out = np.zeros((*labels.shape, 3), np.uint8)
    for k, c in LABEL_COLOURS.items():
        out[labels == k] = c
    return out


def draw(scenario_path: Path, gsd_mm: float, model_px: int, patch_index: int, out: Path,
         source: str = "--gsd-mm") -> list[float]:
    """Write the figure; returns the three heights (m) it shows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from flight_sim.render import WorldRenderer, build_world
    from flight_sim.scenario import load_scenario
    from payload.geo.frames import enu_to_geodetic
    from payload.types import Pose

    s = load_scenario(scenario_path)
    if not 0 <= patch_index < len(s.patches):
        raise FigureError(f"--patch {patch_index}: the scenario has {len(s.patches)} patches (0..{len(s.patches) - 1})")
    p = s.patches[patch_index]
    world = build_world(s)
    f_px = float(s.camera.model().K[0, 0])
    tile_px = s.camera.width / s.camera.tile_cols
    work = working_height_m(gsd_mm, f_px, tile_px, model_px)
    heights = [work / 2.0, work, work * 4.0]
    names = ["near", "working" if source != "--gsd-mm" else "reference", "too high"]
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.6), dpi=100)
    for k, (name, h) in enumerate(zip(names, heights, strict=True)):
        lat, lon, alt = enu_to_geodetic(p.east_m, p.north_m, h, s.origin.lat, s.origin.lon, s.origin.alt)
        pose = Pose(float(lat), float(lon), float(alt), 0.0, 0.0, 0.0)
        r = WorldRenderer.for_scenario(s, world)  # each height a fresh camera: its exposure meters anew
        img = r.render(pose)
        labels = r.render_labels(pose)
        frame_gsd = h / f_px * 1000.0
        axes[0, k].imshow(img)
        axes[0, k].set_title(f"{name}: {h:.1f} m, {frame_gsd:.1f} mm/px frame, "
                             f"{frame_gsd * tile_px / model_px:.1f} mm/px model", fontsize=8)
        axes[1, k].imshow(_label_rgb(labels))
        axes[1, k].set_title("label frame (orange rust, lilac mildew, green healthy)", fontsize=8)
        for ax in axes[:, k]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"{s.crop.kind}, {p.stage} {p.cls} patch of radius {p.radius_m} m, camera "
                 f"{s.camera.preset or 'by intrinsics'} {s.camera.width}x{s.camera.height}, {s.camera.tile_rows}x"
                 f"{s.camera.tile_cols} tiles to {model_px} px\nmiddle height: {gsd_mm:g} mm per model pixel "
                 f"({source})\n"
                 f"`python -m tools.altitude_figure` (scenario {scenario_path.name})", fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    from PIL import Image  # matplotlib's own dependency

    with Image.open(out) as im:  # 256 colours: a figure for docs/, not a photo
        im.convert("RGB").quantize(256).save(out, optimize=True)
    return heights


def _main(argv: Sequence[str] | None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.altitude_figure", description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", type=Path, default=ROOT / "configs" / "scenarios" / "default.yaml")
    ap.add_argument("--bundle", type=Path, help="read working_gsd_mm and the input size from its card")
    ap.add_argument("--gsd-mm", type=float, help="the working resolution, mm per model-input pixel")
    ap.add_argument("--input-px", type=int, default=96, help="model input size when no bundle is given")
    ap.add_argument("--patch", type=int, default=0)
    ap.add_argument("--stage", choices=("early", "moderate", "late"), default=None,
                    help="the stage whose working resolution the card states (default: the earliest it states)")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    gsd, px = a.gsd_mm, a.input_px
    if a.bundle is not None:
        card_path = a.bundle / "model_card.json"
        if not card_path.is_file():
            raise FigureError(f"{a.bundle} is not a model bundle (no model_card.json)")
        from payload.bundle import ModelCard

        card = ModelCard.model_validate(json.loads(card_path.read_text(encoding="utf-8")))
        px = int(card.input.width)
        stage, stated, said = card.stage_gsd(a.stage)
        gsd = gsd if gsd is not None else stated
    if gsd is None or gsd <= 0:
        raise FigureError("give --gsd-mm, or a --bundle whose card states a working resolution (for --stage)")
    source = said if a.bundle is not None and a.gsd_mm is None else "--gsd-mm"
    heights = draw(a.scenario, float(gsd), px, a.patch, a.out, source)
    print(f"wrote {a.out}: heights {', '.join(f'{h:.1f}' for h in heights)} m")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(_main))
