"""How far the training tiles' look is from the simulated world's: pixel statistics side by side.

A bundle that fails on the physical world (tools/detectability.py) fails either because it cannot
tell the classes apart at all, or because the world's tiles lie outside what it trained on. This
measures the second: it renders the world's tiles through the mission camera chain (the same
frames detectability classifies) and draws the training generator's tiles (compile/canopy.py) at
the same resolutions, and compares per class:

- the mean colour and the 90th percentile per channel (exposure, contrast, white balance);
- the share of pixels that are saturated (HSV S > 0.5) and of "whitish" ones (S < 0.25, V > 0.5):
  pale soil and sunlit leaves look like mildew to a model that never saw them;
- the hue shares (red-orange, yellow-brown, green), where rust and soil live;
- the per-tile spread (texture), median over tiles.

Neither generator borrows from the other (tests/test_architecture.py): this tool, in tools/, is the
one place both are loaded, and only to be measured against each other.

    python -m tools.domain_gap --out build/domain_gap [--tiles 96] [--gsd 2 8 32] [--seed N]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from payload.cliutil import run_cli
from payload.errors import UserError

CLASSES = ("healthy", "rust", "powdery_mildew")
HUE_BANDS = {"red_orange": (0.0, 20.0), "yellow_brown": (20.0, 60.0), "green": (60.0, 150.0)}
DEFAULT_GSD_MM = (2.0, 8.0, 32.0)
MODEL_PX = 96  # the quick bundle's input: tiles are compared as the model receives them
WORLD_STAGE = "moderate"  # the card's reference stage; the generator's disease tiles draw their own


class DomainGapError(UserError):
    """The options cannot give a comparison."""


def tile_stats(tiles: np.ndarray) -> dict[str, Any]:
    """Pixel statistics of a batch of uint8 RGB tiles (N, H, W, 3): the quantities the module names."""
    import cv2

    if tiles.ndim != 4 or tiles.shape[-1] != 3 or len(tiles) == 0:
        raise DomainGapError(f"tiles must be a non-empty (N, H, W, 3) batch, got shape {tiles.shape}")
    px = tiles.reshape(-1, 3)
    hsv = cv2.cvtColor(px[None].astype(np.uint8), cv2.COLOR_RGB2HSV)[0].astype(np.float64)
    hue, sat, val = hsv[:, 0] * 2.0, hsv[:, 1] / 255.0, hsv[:, 2] / 255.0
    coloured = sat > 0.2
    out: dict[str, Any] = {
        "tiles": int(len(tiles)),
        "mean_rgb": [round(float(v), 1) for v in px.mean(0)],
        "p90_rgb": [round(float(v), 1) for v in np.percentile(px, 90, axis=0)],
        "saturated_share": round(float((sat > 0.5).mean()), 4),
        "whitish_share": round(float(((sat < 0.25) & (val > 0.5)).mean()), 4),
        "tile_spread": round(float(np.median(tiles.reshape(len(tiles), -1).std(1))), 1),
    }
    for name, (lo, hi) in HUE_BANDS.items():
        out[f"hue_{name}_share"] = round(float((coloured & (hue >= lo) & (hue < hi)).mean()), 4)
    return out


def world_tiles(cls: str, gsd_mm: float, n_frames: int, seed: int, stage: str = WORLD_STAGE,
                crops: Sequence[str] | None = None) -> np.ndarray:
    """The payload's tiles of `n_frames` mission-camera frames of the world, disease at `stage`.

    The frames take the crops in turn: every crop kind the world draws, or only `crops` (whose names
    then also key the draws, so one crop's frames differ from another's).
    """
    from payload.pipeline.tiling import Tiler
    from tools.detectability import CROP_KINDS, FRAME_W, GRID_COLS, GRID_ROWS, _world, frame_gsd_mm, render_frame

    key = [seed, int(gsd_mm * 1000), CLASSES.index(cls)]
    rng = np.random.default_rng(key if crops is None else key + [sum(map(ord, c)) for c in crops])
    kinds = tuple(CROP_KINDS if crops is None else crops)
    tiler = Tiler(GRID_ROWS, GRID_COLS, 0.0, (MODEL_PX, MODEL_PX))
    fg = frame_gsd_mm(gsd_mm, MODEL_PX)
    half = max(60.0, 40.0 * FRAME_W * fg / 1000.0)
    out = []
    for k in range(n_frames):
        world = _world(cls, None if cls == "healthy" else stage, kinds[k % len(kinds)],
                       int(rng.integers(0, 2**31)), half)
        img = render_frame(world, half, half, fg, int(rng.integers(0, 2**31)))
        out.append(tiler.tiles(img)[1].copy())  # the tiler reuses its batch buffer
    return np.concatenate(out)


def training_tiles(cls: str, gsd_mm: float, n: int, seed: int) -> np.ndarray:
    """`n` training-generator tiles of `cls` at `gsd_mm` (disease at the card's reference stage)."""
    from compile.canopy import ladder_image

    rng = np.random.default_rng([seed, int(gsd_mm * 1000), CLASSES.index(cls), 7])
    return np.stack([ladder_image(cls, MODEL_PX, gsd_mm, rng) for _ in range(n)])


def compare(gsds: Sequence[float], frames: int, seed: int) -> dict[str, Any]:
    """Stats of both sources per class and resolution, and the world-minus-training differences."""
    rows = []
    for g in gsds:
        for cls in CLASSES:
            w = tile_stats(world_tiles(cls, g, frames, seed))
            t = tile_stats(training_tiles(cls, g, w["tiles"], seed))
            diff = {k: round(w[k] - t[k], 4) for k in w if isinstance(w[k], float)}
            rows.append({"gsd_mm": g, "class": cls, "world": w, "training": t, "world_minus_training": diff})
    return {"seed": seed, "model_px": MODEL_PX, "world_stage": WORLD_STAGE, "rows": rows}


def markdown(res: dict[str, Any]) -> str:
    """The comparison as one table: each quantity as world / training."""
    keys = ["mean_rgb", "p90_rgb", "saturated_share", "whitish_share", "hue_yellow_brown_share", "tile_spread"]
    lines = [f"# World vs training tiles (seed {res['seed']}, {res['model_px']} px model tiles)", "",
             "| mm/px | class | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    for r in res["rows"]:
        cells = []
        for k in keys:
            w, t = r["world"][k], r["training"][k]
            if isinstance(w, list):
                cells.append(f"{'/'.join(f'{v:.0f}' for v in w)} vs {'/'.join(f'{v:.0f}' for v in t)}")
            else:
                cells.append(f"{w:.3g} vs {t:.3g}")
        lines.append(f"| {r['gsd_mm']:g} | {r['class']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _main(argv: Sequence[str] | None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.domain_gap", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--gsd", type=float, nargs="+", default=list(DEFAULT_GSD_MM), help="mm per model-input pixel")
    ap.add_argument("--frames", type=int, default=4, help="world frames per class and resolution (12 tiles each)")
    ap.add_argument("--seed", type=int, default=None, help="default: drawn now and printed")
    a = ap.parse_args(argv)
    if a.frames < 1 or any(g <= 0 for g in a.gsd):
        raise DomainGapError("--frames must be >= 1 and every --gsd a positive number of mm per pixel")
    seed = int(np.random.default_rng().integers(0, 2**31)) if a.seed is None else a.seed
    print(f"seed {seed}")
    res = compare(a.gsd, a.frames, seed)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "domain_gap.json").write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    md = markdown(res)
    (a.out / "domain_gap.md").write_text(md, encoding="utf-8")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(_main))
