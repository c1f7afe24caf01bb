"""Calibrate the evidence grid's sensor model on the build's validation split (the card's `sensor_model`).

The grid (payload/geo/grid.py) adds, for each disease k, log P(call | cell is k) - log P(call |
cell is healthy) to every cell under a tile. On validation images of known class the decision rule
of the card (`payload.bundle.decide`, the same thresholds) gives the confusion counts
n[true k][call j]; with add-one smoothing (a split of n images cannot support a likelihood ratio
beyond about n, and an unseen confusion is not an impossible one)

    P(j | k) = (n[k][j] + 1) / (n_k + C)
    llr[j][k] = FOOTPRINT_SHARE * (log P(j | k) - log P(j | healthy)), clipped to +-LLR_CAP.

Validation images are whole tiles of one class, but a cell in flight is one small part of a
tile's footprint: a diseased cell makes a disease call only as likely as the tile's diseased share
makes it. FOOTPRINT_SHARE scales the whole-tile ratio down to what one cell under a tile earns
(0.25: a patch edge typically covers a quarter of the tiles that see it); the cap keeps one look
from deciding a cell. Both are stated in the block, so a reader of the card can judge them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from payload.bundle import decide
from payload.geo.sensor import SENSOR_SCHEMA

FOOTPRINT_SHARE = 0.25
LLR_CAP = 2.0


def call_counts(scores: np.ndarray, y: np.ndarray, thresholds: Mapping[str, float], classes: Sequence[str],
                healthy: str, diseases: Sequence[str]) -> np.ndarray:
    """n[true class][call] over the split; calls are the healthy class and each disease, in `classes` order."""
    d = decide(np.asarray(scores), thresholds, classes, diseases)
    calls = np.where(d.flagged, d.label, classes.index(healthy))
    n = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for t, c in zip(np.asarray(y, dtype=np.int64), calls, strict=True):
        n[t, c] += 1
    return n


def calibrate_sensor_model(scores: np.ndarray, y: np.ndarray, thresholds: Mapping[str, float],
                           classes: Sequence[str], healthy: str, diseases: Sequence[str],
                           share: float = FOOTPRINT_SHARE, cap: float = LLR_CAP) -> dict[str, Any]:
    """The card's `sensor_model` block from validation scores (N, C) and true class indices (N,)."""
    classes = list(classes)
    n = call_counts(scores, y, thresholds, classes, healthy, diseases)
    p = (n + 1.0) / (n.sum(axis=1, keepdims=True) + len(classes))  # P(call | true), add-one
    h = classes.index(healthy)
    llr: dict[str, list[float]] = {}
    for call in [healthy, *diseases]:
        j = classes.index(call)
        llr[call] = [round(float(np.clip(share * (math.log(p[classes.index(k), j]) - math.log(p[h, j])), -cap, cap)), 5)
                     for k in diseases]
    return {
        "schema": SENSOR_SCHEMA,
        "source": "validation",
        "healthy": healthy,
        "diseases": list(diseases),
        "llr": llr,
        "footprint_share": share,
        "llr_cap": cap,
        "counts": {classes[t]: {classes[c]: int(n[t, c]) for c in [h] + [classes.index(x) for x in diseases]}
                   for t in range(len(classes))},
        "images": int(n.sum()),
    }
