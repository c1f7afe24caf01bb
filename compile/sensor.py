"""Calibrate the evidence grid's sensor model on the build's validation split (the card's `sensor_model`).

The grid (payload/geo/grid.py) adds, for each disease k, log P(call | cell is k) - log P(call |
cell is healthy) to every cell under a tile. On validation images of known class the decision rule
of the card (`payload.bundle.decide`, the same thresholds) gives the confusion counts
n[true k][call j]; with add-one smoothing (a split of n images cannot support a likelihood ratio
beyond about n, and an unseen confusion is not an impossible one)

    P(j | k) = (n[k][j] + 1) / (n_k + C)
    llr[j][k] = share(j) * (log P(j | k) - log P(j | healthy)), clipped to +-LLR_CAP.

Validation images are whole tiles of one class, but a cell in flight is one small part of a
tile's footprint, and what a call says about one cell depends on which call it is (the wide-beam
sensor of occupancy-grid mapping: a sonar echo puts the obstacle somewhere on its arc, while a
free reading clears the whole arc):
- a disease call (HIT_SHARE, 0.15) says "disease somewhere under this tile": the classifier flags
  a tile whose diseased share is a few percent (`tools/tile_eval.py`), so the cells of a flagged
  footprint are mostly healthy ground near a patch. Each earns a small part of the whole-tile ratio;
- no call (MISS_SHARE, 1.0) says "no disease anywhere under this tile", for every cell of it.
With equal shares a cell outside a patch but within half a tile of it is flagged by as many views
as clear it, and every zone grows by about half a tile all round (zones 2-3.5x the patch's area,
IoU 0.38 on six missions); with these shares a cell stays in a zone only when about 85 % of the
views over it flag it, which the cells of the patch itself are (mean IoU 0.56, no zone lost or
false on the same six recorded missions, `python -m tools.remap`). The cap keeps one look from
deciding a cell. Shares and cap are stated in the block, so a reader of the card can judge them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from payload.bundle import decide
from payload.geo.sensor import SENSOR_SCHEMA

HIT_SHARE = 0.15
MISS_SHARE = 1.0
LLR_CAP = 5.0


def call_counts(scores: np.ndarray, y: np.ndarray, thresholds: Mapping[str, float], classes: Sequence[str],
                healthy: str, diseases: Sequence[str]) -> np.ndarray:
    """n[true class][call] over the split; calls are the healthy class and each disease, in `classes` order."""
    d = decide(np.asarray(scores), thresholds, classes, diseases)
    calls = np.where(d.flagged, d.label, classes.index(healthy))
    n = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for t, c in zip(np.asarray(y, dtype=np.int64), calls, strict=True):
        n[t, c] += 1
    return n


def llr_table(n: np.ndarray, classes: Sequence[str], healthy: str, diseases: Sequence[str],
              hit_share: float = HIT_SHARE, miss_share: float = MISS_SHARE,
              cap: float = LLR_CAP) -> dict[str, list[float]]:
    """llr[call][k] from confusion counts n[true][call] (classes order), add-one smoothed, shared and capped."""
    classes = list(classes)
    n = np.asarray(n, dtype=np.float64)
    p = (n + 1.0) / (n.sum(axis=1, keepdims=True) + len(classes))  # P(call | true), add-one
    h = classes.index(healthy)
    llr: dict[str, list[float]] = {}
    for call in [healthy, *diseases]:
        j = classes.index(call)
        share = miss_share if call == healthy else hit_share
        llr[call] = [round(float(np.clip(share * (math.log(p[classes.index(k), j]) - math.log(p[h, j])), -cap, cap)), 5)
                     for k in diseases]
    return llr


def counts_matrix(block: Mapping[str, Any], classes: Sequence[str]) -> np.ndarray:
    """n[true][call] back from a card block's `counts` (what `tools.remap` recomputes a table from)."""
    counts = block.get("counts")
    if not isinstance(counts, Mapping):
        raise ValueError("this sensor_model block has no `counts` (a card from before calibration kept them)")
    return np.array([[int(counts[t][c]) for c in classes] for t in classes], dtype=np.int64)


def calibrate_sensor_model(scores: np.ndarray, y: np.ndarray, thresholds: Mapping[str, float],
                           classes: Sequence[str], healthy: str, diseases: Sequence[str],
                           hit_share: float = HIT_SHARE, miss_share: float = MISS_SHARE,
                           cap: float = LLR_CAP) -> dict[str, Any]:
    """The card's `sensor_model` block from validation scores (N, C) and true class indices (N,)."""
    classes = list(classes)
    n = call_counts(scores, y, thresholds, classes, healthy, diseases)
    h = classes.index(healthy)
    return {
        "schema": SENSOR_SCHEMA,
        "source": "validation",
        "healthy": healthy,
        "diseases": list(diseases),
        "llr": llr_table(n, classes, healthy, diseases, hit_share, miss_share, cap),
        "hit_share": hit_share,
        "miss_share": miss_share,
        "llr_cap": cap,
        "counts": {classes[t]: {classes[c]: int(n[t, c]) for c in [h] + [classes.index(x) for x in diseases]}
                   for t in range(len(classes))},
        "images": int(n.sum()),
    }
