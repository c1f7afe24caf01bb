"""Can features learned on the training generator see the simulated world at all? A probe, not a product model.

The quick bundle's backbone is random (no ImageNet weights offline), so its blindness in the world
(tools/detectability.py) could be the random features or the look gap between compile/canopy.py and
flight_sim/world. This takes the backbone out of the question: it trains a small CNN end to end
(three convolutions, average and max pooling, a dense layer; every weight learned) on the
generator's canopy tiles, checks it on held-back generator tiles, then classifies the world's tiles
(the payload's tiles of mission-camera frames, tools/domain_gap.py) per resolution and stage, as
rendered and after a Gaussian blur of `--blur` model pixels. The blur removes structure finer
than a few pixels (leaf blades, gaps, grain): if the world's false alarms fall with it, the
generator's and the world's fine texture disagree, whatever their colours.

Calls are the argmax (no thresholds: the probe has no validation-chosen operating point).
Neither generator borrows from the other; this tool, like tools/domain_gap.py, only loads both.

The generator draws the wider camera itself (compile/canopy.py CAMERA_EXPOSURE, CAMERA_SATURATION:
exposure to clipping and colour saturation); the option of that name that this probe once had is
gone. `--train-blurred` blurs the training tiles too: a model with a fixed low-pass in front.

    python -m tools.transfer_probe --out build/transfer_probe [--per-class 2000] [--epochs 5]
        [--gsd 2 4 8 16 32] [--frames 4] [--blur 3] [--by-crop]
        [--train-blurred] [--seed N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from payload.cliutil import run_cli
from payload.errors import UserError
from tools.domain_gap import CLASSES, MODEL_PX

DEFAULT_GSD_MM = (2.0, 4.0, 8.0, 16.0, 32.0)
CELLS: tuple[tuple[str, str | None], ...] = (
    ("healthy", None),
    ("rust", "early"), ("rust", "moderate"), ("rust", "late"),
    ("powdery_mildew", "early"), ("powdery_mildew", "moderate"), ("powdery_mildew", "late"),
)


class ProbeError(UserError):
    """The options cannot give a probe."""


def cell_rate(cls: str, predicted: np.ndarray) -> float:
    """Healthy: the share called a disease (false alarms); a disease: the share called that disease."""
    predicted = np.asarray(predicted)
    if len(predicted) == 0:
        raise ProbeError("no tiles in a cell: raise --frames")
    if cls == "healthy":
        return float((predicted != CLASSES.index("healthy")).mean())
    return float((predicted == CLASSES.index(cls)).mean())


def blur_tiles(tiles: np.ndarray, sigma_px: float) -> np.ndarray:
    """Each tile blurred by a Gaussian of `sigma_px` model pixels (edges reflected)."""
    import cv2

    return np.stack([cv2.GaussianBlur(t, (0, 0), sigma_px, borderType=cv2.BORDER_REFLECT) for t in tiles])


def probe_model(seed: int) -> Any:
    """The probe's CNN: small enough to train end to end on a CPU in minutes."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    inp = keras.Input((MODEL_PX, MODEL_PX, 3))
    x = layers.Rescaling(1 / 127.5, -1)(inp)
    x = layers.Conv2D(24, 1, activation="relu")(x)
    x = layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.Conv2D(48, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.Concatenate()([layers.GlobalAveragePooling2D()(x), layers.GlobalMaxPooling2D()(x)])
    x = layers.Dropout(0.2)(layers.Dense(64, activation="relu")(x))
    model = keras.Model(inp, layers.Dense(len(CLASSES), activation="softmax")(x))
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy")
    return model


def training_set(per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`per_class` generator tiles per class (training part, every resolution, crop and camera it draws)."""
    from compile.canopy import canopy_image

    rng = np.random.default_rng([seed, 1])
    tiles = (canopy_image(c, MODEL_PX, rng) for c in CLASSES for _ in range(per_class))
    x = np.stack(list(tiles))
    y = np.repeat(np.arange(len(CLASSES)), per_class)
    order = rng.permutation(len(x))
    return x[order], y[order]


def train(x: np.ndarray, y: np.ndarray, epochs: int, seed: int) -> tuple[Any, float]:
    """The probe trained on 85 % of (x, y); its accuracy on the other 15 %."""
    model = probe_model(seed)
    n_val = max(1, int(0.15 * len(x)))
    xv, yv, xt, yt = x[:n_val], y[:n_val], x[n_val:], y[n_val:]
    rng = np.random.default_rng([seed, 2])
    t0 = time.monotonic()
    acc = 0.0
    for epoch in range(epochs):
        order = rng.permutation(len(xt))
        for i in range(0, len(order), 64):
            b = order[i : i + 64]
            model.train_on_batch(xt[b].astype(np.float32), yt[b])
        acc = float((model.predict(xv, verbose=0).argmax(1) == yv).mean())
        print(f"epoch {epoch + 1}/{epochs}: held-back generator accuracy {acc:.3f} ({time.monotonic() - t0:.0f} s)",
              flush=True)
    return model, acc


def look_rates(model: Any, cls: str, tiles: np.ndarray, blur: float) -> dict[str, float]:
    """The cell's rate (`cell_rate`) on the tiles as rendered and blurred by `blur` model pixels."""
    return {look: cell_rate(cls, model.predict(t, verbose=0).argmax(1))
            for look, t in (("rendered", tiles), ("blurred", blur_tiles(tiles, blur)))}


def run(per_class: int, epochs: int, gsds: Sequence[float], frames: int, blur: float, seed: int,
        by_crop: bool = False, train_blurred: bool = False) -> dict[str, Any]:
    """Train the probe, then its rates on the world per resolution, cell and look (as rendered, blurred).

    `by_crop` adds the healthy canopy's false alarms per crop kind (`frames` frames of each), so a
    false alarm can be traced to the crop whose rendering causes it. `train_blurred` blurs the
    training tiles by `blur` as well: a model with a fixed low-pass in front, blind to the band
    the blur removes on both sides.
    """
    from tools.detectability import CROP_KINDS
    from tools.domain_gap import world_tiles

    print(f"drawing {per_class} generator tiles per class", flush=True)
    x, y = training_set(per_class, seed)
    model, acc = train(blur_tiles(x, blur) if train_blurred else x, y, epochs, seed)
    rows: list[dict[str, Any]] = []
    by: list[dict[str, Any]] = []
    for g in gsds:
        for cls, stage in CELLS:
            tiles = world_tiles(cls, g, frames, seed, stage or "moderate")
            rows.append({"gsd_mm": g, "class": cls, "stage": stage, "tiles": int(len(tiles)),
                         **look_rates(model, cls, tiles, blur)})
        for crop in CROP_KINDS if by_crop else ():
            tiles = world_tiles("healthy", g, frames, seed, crops=(crop,))
            by.append({"gsd_mm": g, "crop": crop, "tiles": int(len(tiles)),
                       **look_rates(model, "healthy", tiles, blur)})
        print(f"{g:g} mm/px: world tiles classified", flush=True)
    out = {"seed": seed, "per_class": per_class, "epochs": epochs, "blur_px": blur, "frames": frames,
           "train_blurred": train_blurred, "generator_accuracy": round(acc, 4), "rows": rows}
    if by_crop:
        out["healthy_by_crop"] = by
    return out


def markdown(res: dict[str, Any]) -> str:
    """Rates per resolution (rows) and cell (columns): rendered, then blurred in brackets."""
    gsds = sorted({r["gsd_mm"] for r in res["rows"]})
    heads = ["healthy flagged" if c == "healthy" else f"{c} {s}" for c, s in CELLS]
    chain = ", trained blurred" if res.get("train_blurred") else ""
    lines = [f"# Probe trained on the generator{chain}, classifying the world (seed {res['seed']})", "",
             f"Held-back generator accuracy {res['generator_accuracy']:.3f}; each cell: as rendered "
             f"(blurred by {res['blur_px']:g} px).", "",
             "| mm/px | " + " | ".join(heads) + " |", "|---|" + "---|" * len(heads)]
    for g in gsds:
        cells = {(r["class"], r["stage"]): r for r in res["rows"] if r["gsd_mm"] == g}
        vals = [f"{cells[k]['rendered']:.2f} ({cells[k]['blurred']:.2f})" if k in cells else "-" for k in CELLS]
        lines.append(f"| {g:g} | " + " | ".join(vals) + " |")
    if res.get("healthy_by_crop"):
        crops = list(dict.fromkeys(r["crop"] for r in res["healthy_by_crop"]))
        lines += ["", "Healthy canopy flagged, per crop:", "", "| mm/px | " + " | ".join(crops) + " |",
                  "|---|" + "---|" * len(crops)]
        for g in gsds:
            cells = {r["crop"]: r for r in res["healthy_by_crop"] if r["gsd_mm"] == g}
            vals = [f"{cells[c]['rendered']:.2f} ({cells[c]['blurred']:.2f})" if c in cells else "-" for c in crops]
            lines.append(f"| {g:g} | " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n"


def _main(argv: Sequence[str] | None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.transfer_probe", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--per-class", type=int, default=2000, help="generator tiles per class")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--gsd", type=float, nargs="+", default=list(DEFAULT_GSD_MM), help="mm per model-input pixel")
    ap.add_argument("--frames", type=int, default=4, help="world frames per cell (12 tiles each, crops in turn)")
    ap.add_argument("--blur", type=float, default=3.0, help="Gaussian sigma, model pixels, of the blurred look")
    ap.add_argument("--by-crop", action="store_true", help="also the healthy false alarms per crop kind")
    ap.add_argument("--train-blurred", action="store_true",
                    help="blur the training tiles by --blur too (a fixed low-pass in front of the model)")
    ap.add_argument("--seed", type=int, default=None, help="default: drawn now and printed")
    a = ap.parse_args(argv)
    if a.per_class < 10 or a.epochs < 1 or a.frames < 1 or a.blur <= 0 or any(g <= 0 for g in a.gsd):
        raise ProbeError("--per-class >= 10, --epochs >= 1, --frames >= 1, --blur > 0 and every --gsd > 0 are needed")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    seed = int(np.random.default_rng().integers(0, 2**31)) if a.seed is None else a.seed
    print(f"seed {seed}", flush=True)
    res = run(a.per_class, a.epochs, a.gsd, a.frames, a.blur, seed, a.by_crop, a.train_blurred)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "transfer_probe.json").write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    md = markdown(res)
    (a.out / "transfer_probe.md").write_text(md, encoding="utf-8")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(_main))
