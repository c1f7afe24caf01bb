"""`python -m tools.synthetic_labels OUT`: label folders as `payload review` leaves them, from canopy views.

For trying and testing `python -m compile build --labels DIR... --init-from BUNDLE` without a flown
field: each flight folder OUT/flightK gets labels/labels.csv (payload/report/review.py's columns) and
labels/<class>/<tile_id>.jpg, the tiles drawn by compile's canopy generator from its *held-out*
looks (glaucous leaves, stripe-rust colour, maize, heavy haze: docs/TRAINING_DATA.md), which a
parent bundle never trained on. It measures the mechanism (the split, the mix, before/after), not
what real fields would give: the looks are still compile's own. Flight K draws with seed K.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from compile import canopy
from compile.synthetic import CLASSES
from payload.cliutil import run_cli
from payload.report.review import CSV_FIELDS, LABELS_CSV, LABELS_DIR, UNSURE


def write_flight(root: Path, seed: int, per_class: int, unsure: int = 2, size: int = 96) -> Path:
    """One flight folder's labels: `per_class` tiles of each class and `unsure` unsure ones, JPEG quality 90."""
    lab = root / LABELS_DIR
    rng = np.random.default_rng(seed)
    rows = []
    for cls in (*CLASSES, UNSURE):
        (lab / cls).mkdir(parents=True, exist_ok=True)
        for i in range(unsure if cls == UNSURE else per_class):
            tile = f"{root.name}_{cls}_{i:03d}"
            img = canopy.canopy_image(CLASSES[i % len(CLASSES)] if cls == UNSURE else cls, size, rng, "heldout")
            Image.fromarray(img).save(lab / cls / f"{tile}.jpg", quality=90)
            rows.append({"tile_id": tile, "label": cls, "labelled_utc": "2026-12-07T05:00:00Z",
                         "model_label": "", "model_sha256": "", "kind": "synthetic"})
    with (lab / LABELS_CSV).open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return root


def _main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.synthetic_labels", description=__doc__.splitlines()[0])
    p.add_argument("out", help="folder to write flight1..flightN into")
    p.add_argument("--flights", type=int, default=3, help="flight folders (default 3)")
    p.add_argument("--per-class", type=int, default=20, help="labelled tiles per class and flight (default 20)")
    args = p.parse_args(argv)
    for k in range(1, args.flights + 1):
        print(write_flight(Path(args.out) / f"flight{k}", k, args.per_class))
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    sys.exit(run_cli(_main, argv))


if __name__ == "__main__":
    main()
