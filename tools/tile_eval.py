"""How a model bundle does on the tiles the drone really sees: rendered frames with per-tile truth.

`flight-sim render --scenario S --out DIR` writes JPEG frames and `frames.csv` with the true class of
every tile of the payload's grid; this classifies those tiles exactly as the payload does (same
tiler, same backend, same thresholds) and prints a confusion table. Tiles mostly outside the field
("-") count as "outside" truth: any disease call there is a false alarm a grower would see.

    python -m tools.tile_eval --bundle build/quick_bundle --frames DIR [--rows 3 --cols 4 --overlap 0]
        [--min-recall 0.9 --max-confusion 0.02]

The grid defaults to the one the frames were rendered with (the folder's scenario.yaml), so the
truth and the tiles are cut from the same boxes (payload.pipeline.tiling.grid).

Recall is also reported by diseased fraction: each tile's share of each disease is measured on the
label frame re-rendered at the frame's true pose (frames.csv), over the payload tiler's own boxes.
A tile at least 25 % diseased is one the payload must flag; with --min-recall / --max-confusion
the command exits 1 when a disease's recall on those tiles, or the share of them called the other
disease, misses the target.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from flight_sim.scenario import load_scenario
from flight_sim.world.world import LABEL_OUTSIDE
from payload.backends.cpu import CpuClassifier
from payload.bundle import CLASSES, load_bundle
from payload.cliutil import run_cli
from payload.pipeline.tiling import Tiler
from payload.types import Pose, TileBox

FRACTION_BINS: tuple[tuple[float, float], ...] = ((0.0, 0.1), (0.1, 0.25), (0.25, 0.5), (0.5, 1.01))
MUST_FLAG_SHARE = 0.25  # a tile at least this diseased must be flagged (flight_sim.render.tile_truth's rule)


def tile_shares(labels: np.ndarray, boxes: Sequence[TileBox], n_classes: int) -> np.ndarray:
    """(tiles, n_classes + 1) share of each class under each box; the last column is outside/sky."""
    out = np.zeros((len(boxes), n_classes + 1))
    for i, b in enumerate(boxes):
        tile = labels[b.y : b.y + b.h, b.x : b.x + b.w].ravel()
        counts = np.bincount(np.where(tile == LABEL_OUTSIDE, n_classes, tile), minlength=n_classes + 1)
        out[i] = counts[: n_classes + 1] / max(tile.size, 1)
    return out


def tile_class(share: np.ndarray, classes: Sequence[str]) -> str:
    """A tile's true class from its shares (tile_shares' row): "outside" when over half of it is outside the
    field or sky, else the disease covering most of it when that is at least MUST_FLAG_SHARE, else "healthy"
    (flight_sim.render.tile_truth's rule)."""
    if share[-1] > 0.5:
        return "outside"
    dis = int(np.argmax(share[1 : len(classes)])) + 1
    return classes[dis] if share[dis] >= MUST_FLAG_SHARE else "healthy"


def confusion_figures(confusion: Counter[tuple[str, str]], diseases: Sequence[str]) -> dict:
    """The confusion table (truth -> predicted -> tiles), each disease's recall and share called the other
    disease, and the false-alarm rate (healthy and outside tiles called a disease)."""
    truths = sorted({t for t, _ in confusion})
    out: dict = {"confusion": {t: {p: n for (tt, p), n in confusion.items() if tt == t} for t in truths}}
    for d in diseases:
        total = sum(n for (t, _), n in confusion.items() if t == d)
        out[f"recall_{d}"] = None if total == 0 else confusion[(d, d)] / total
        others = [o for o in diseases if o != d]
        out[f"called_other_disease_{d}"] = None if total == 0 else sum(confusion[(d, o)] for o in others) / total
    non = sum(n for (t, _), n in confusion.items() if t in ("healthy", "outside"))
    fa = sum(n for (t, p), n in confusion.items() if t in ("healthy", "outside") and p != "healthy")
    out["false_alarm_rate"] = None if non == 0 else fa / non
    return out


def evaluate(bundle_dir: Path, frames_dir: Path, rows: int, cols: int, overlap: float = 0.0) -> dict:
    """Confusion counts (truth -> predicted label), disease recall / false-alarm rate, recall by diseased share."""
    from flight_sim.render import WorldRenderer

    bundle = load_bundle(bundle_dir)
    clf = CpuClassifier(bundle, 2)
    tiler = Tiler(rows, cols, overlap, (bundle.input_height, bundle.input_width))
    scenario = load_scenario(frames_dir / "scenario.yaml")
    renderer = WorldRenderer.for_scenario(scenario, effects=False)
    classes = list(CLASSES)  # the label frame holds the simulator's class indices: the contract's order
    confusion: Counter[tuple[str, str]] = Counter()
    by_share: Counter[tuple[str, int, str]] = Counter()  # (disease, bin, predicted)
    with (frames_dir / "frames.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            bgr = cv2.imread(str(frames_dir / row["file"]), cv2.IMREAD_COLOR)
            boxes, batch = tiler.tiles(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            pose = Pose(float(row["lat"]), float(row["lon"]), float(row["alt_m"]), float(row["roll_rad"]),
                        float(row["pitch_rad"]), float(row["yaw_rad"]))
            shares = tile_shares(renderer.render_labels(pose), boxes, len(classes))
            decisions = bundle.decide(clf.classify_batch(batch))
            for share, d in zip(shares, decisions, strict=True):
                pred = d.label if d.flagged else "healthy"
                dis = int(np.argmax(share[1 : len(classes)])) + 1
                confusion[(tile_class(share, classes), pred)] += 1
                if share[dis] > 0 and share[-1] <= 0.5:
                    b = next(i for i, (lo, hi) in enumerate(FRACTION_BINS) if lo <= share[dis] < hi)
                    by_share[(classes[dis], b, pred)] += 1
    clf.close()
    out = confusion_figures(confusion, bundle.disease_classes)
    table = {}
    for d in bundle.disease_classes:
        table[d] = {}
        for b, (lo, hi) in enumerate(FRACTION_BINS):
            n = sum(v for (dd, bb, _), v in by_share.items() if dd == d and bb == b)
            hit = by_share[(d, b, d)]
            table[d][f"{lo:.2f}-{min(hi, 1.0):.2f}"] = {"tiles": n, "recall": None if n == 0 else hit / n}
    out["recall_by_diseased_share"] = table
    return out


def misses(result: dict, min_recall: float | None, max_confusion: float | None) -> list[str]:
    """The targets a result misses (empty when every target is met or none was given)."""
    found = []
    for key, value in result.items():
        if value is None:
            continue
        if min_recall is not None and key.startswith("recall_") and key != "recall_by_diseased_share" \
                and value < min_recall:
            found.append(f"{key} {value:.3f} < {min_recall}")
        if max_confusion is not None and key.startswith("called_other_disease_") and value > max_confusion:
            found.append(f"{key} {value:.3f} > {max_confusion}")
    return found


def _main(argv: Sequence[str] | None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.tile_eval", description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--frames", type=Path, required=True, help="a `flight-sim render` output folder")
    ap.add_argument("--rows", type=int, help="default: the rendered scenario's camera.tile_rows (else 3)")
    ap.add_argument("--cols", type=int, help="default: the rendered scenario's camera.tile_cols (else 4)")
    ap.add_argument("--overlap", type=float, help="default: the rendered scenario's camera.tile_overlap (else 0)")
    ap.add_argument("--min-recall", type=float, default=None,
                    help="exit 1 if a disease's recall on tiles at least 25 %% diseased is below this")
    ap.add_argument("--max-confusion", type=float, default=None,
                    help="exit 1 if more than this share of a disease's tiles are called the other disease")
    ap.add_argument("--json", type=Path, default=None, help="also write the result here")
    a = ap.parse_args(argv)
    rows, cols, overlap = 3, 4, 0.0
    if (a.frames / "scenario.yaml").is_file():
        cam = load_scenario(a.frames / "scenario.yaml").camera
        rows, cols, overlap = cam.tile_rows, cam.tile_cols, cam.tile_overlap
    rows = a.rows if a.rows is not None else rows
    cols = a.cols if a.cols is not None else cols
    overlap = a.overlap if a.overlap is not None else overlap
    result = evaluate(a.bundle, a.frames, rows, cols, overlap)
    text = json.dumps(result, indent=2)
    print(text)
    if a.json:
        a.json.write_text(text + "\n", encoding="utf-8")
    missed = misses(result, a.min_recall, a.max_confusion)
    for m in missed:
        print(f"MISS {m}", file=sys.stderr)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(run_cli(_main))
