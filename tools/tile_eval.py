"""How a model bundle does on the tiles the drone really sees: rendered frames with per-tile truth.

`flight-sim render --scenario S --out DIR` writes JPEG frames and `frames.csv` with the true class of
every tile of the payload's grid; this classifies those tiles exactly as the payload does (same
tiler, same backend, same thresholds) and prints a confusion table. Tiles mostly outside the field
("-") count as "outside" truth: any disease call there is a false alarm a grower would see.

    python -m tools.tile_eval --bundle build/quick_bundle --frames DIR [--rows 3 --cols 4 --overlap 0]

The grid defaults to the one the frames were rendered with (the folder's scenario.yaml), so the
truth and the tiles are cut from the same boxes (payload.pipeline.tiling.grid).
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

from flight_sim.scenario import load_scenario
from payload.backends.cpu import CpuClassifier
from payload.bundle import load_bundle
from payload.cliutil import run_cli
from payload.pipeline.tiling import Tiler


def evaluate(bundle_dir: Path, frames_dir: Path, rows: int, cols: int, overlap: float = 0.0) -> dict:
    """Confusion counts (truth -> predicted label) and disease recall / false-alarm rate on sim tiles."""
    bundle = load_bundle(bundle_dir)
    clf = CpuClassifier(bundle, 2)
    tiler = Tiler(rows, cols, overlap, (bundle.input_height, bundle.input_width))
    confusion: Counter[tuple[str, str]] = Counter()
    with (frames_dir / "frames.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            truth = [t.split(" ") for t in row["tiles"].split("/")]
            bgr = cv2.imread(str(frames_dir / row["file"]), cv2.IMREAD_COLOR)
            boxes, batch = tiler.tiles(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            decisions = bundle.decide(clf.classify_batch(batch))
            for box, d in zip(boxes, decisions, strict=True):
                t = truth[box.row][box.col]
                confusion[("outside" if t == "-" else t, d.label if d.flagged else "healthy")] += 1
    clf.close()
    truths = sorted({t for t, _ in confusion})
    out = {"confusion": {t: {p: n for (tt, p), n in confusion.items() if tt == t} for t in truths}}
    for d in bundle.disease_classes:
        total = sum(n for (t, _), n in confusion.items() if t == d)
        out[f"recall_{d}"] = None if total == 0 else confusion[(d, d)] / total
    non = sum(n for (t, _), n in confusion.items() if t in ("healthy", "outside"))
    fa = sum(n for (t, p), n in confusion.items() if t in ("healthy", "outside") and p != "healthy")
    out["false_alarm_rate"] = None if non == 0 else fa / non
    return out


def _main(argv: Sequence[str] | None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.tile_eval", description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--frames", type=Path, required=True, help="a `flight-sim render` output folder")
    ap.add_argument("--rows", type=int, help="default: the rendered scenario's camera.tile_rows (else 3)")
    ap.add_argument("--cols", type=int, help="default: the rendered scenario's camera.tile_cols (else 4)")
    ap.add_argument("--overlap", type=float, help="default: the rendered scenario's camera.tile_overlap (else 0)")
    a = ap.parse_args(argv)
    rows, cols, overlap = 3, 4, 0.0
    if (a.frames / "scenario.yaml").is_file():
        cam = load_scenario(a.frames / "scenario.yaml").camera
        rows, cols, overlap = cam.tile_rows, cam.tile_cols, cam.tile_overlap
    rows = a.rows if a.rows is not None else rows
    cols = a.cols if a.cols is not None else cols
    overlap = a.overlap if a.overlap is not None else overlap
    print(json.dumps(evaluate(a.bundle, a.frames, rows, cols, overlap), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(_main))
