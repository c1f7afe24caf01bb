"""What a tile's ground is worth to the map: the order in which a busy chip should look.

An Edge TPU at ~49 ms a ResNet-50 tile cannot classify every tile of every frame of a survey
camera (docs/CORAL.md). Rather than drop whole frames, the scheduler classifies the newest frame's
tiles in the order of what their ground is worth to the map (payload/pipeline/scheduler.py):

1. ground never seen, or seen fewer times than the coverage layer trusts (`coverage_min_looks`):
   the map knows nothing there, and a gap is the one thing no later look can excuse;
2. ground whose disease probability is undecided, or that lies on a zone's edge (a cell on one
   side of `zone_threshold` beside one on the other): one more look moves a zone or its outline;
3. ground already certain, healthy or diseased: one more look changes nothing a grower sees.

Each tier adds 1, and inside a tier the value grows with what is missing (looks short of trust) or
with the binary entropy of "diseased at all", so ties break toward the less certain ground. A tile's
value is the mean over points spread across its footprint. Pure numpy on the grid's arrays; no I/O.
"""

from __future__ import annotations

import numpy as np

from payload.geo.grid import posterior

UNDECIDED_ENTROPY = 0.469  # binary entropy (bits) at p = 0.1 or 0.9: beyond that a cell is "certain"
SAMPLES = 4  # points per footprint side
UNSEEN = 3.0  # the worth of ground never seen (tier 3 with no look at all)


def binary_entropy(p: np.ndarray) -> np.ndarray:
    """H(p) in bits, 0 at p = 0 or 1, 1 at p = 0.5."""
    q = np.clip(np.asarray(p, dtype=np.float64), 1e-12, 1 - 1e-12)
    return -(q * np.log2(q) + (1 - q) * np.log2(1 - q))


def zone_edges(p_disease: np.ndarray, threshold: float) -> np.ndarray:
    """Cells on a zone's outline: at or above `threshold` with a 4-neighbour below it, or the reverse."""
    above = np.asarray(p_disease) >= threshold
    edge = np.zeros(above.shape, dtype=bool)
    for axis in (0, 1):
        if above.shape[axis] < 2:
            continue
        diff = np.diff(above, axis=axis)
        lo = [slice(None)] * 2
        hi = [slice(None)] * 2
        lo[axis], hi[axis] = slice(0, -1), slice(1, None)
        edge[tuple(lo)] |= diff
        edge[tuple(hi)] |= diff
    return edge


def cell_values(evidence: np.ndarray, looks: np.ndarray, prior_logodds: float, trust_looks: int,
                zone_threshold: float) -> np.ndarray:
    """Each cell's worth (h, w) from the grid's evidence (K, h, w) and looks (h, w): tiers as the module says."""
    lk = np.asarray(looks, dtype=np.float64)
    p_disease = 1.0 - posterior(evidence, prior_logodds)[0]
    h = binary_entropy(p_disease)
    undecided = (h >= UNDECIDED_ENTROPY) | zone_edges(p_disease, zone_threshold)
    value = np.where(undecided, 1.0 + np.maximum(h, UNDECIDED_ENTROPY), h)
    short = lk < trust_looks
    return np.where(short, 2.0 + (trust_looks - lk) / max(trust_looks, 1), value)


def footprint_points(quads: np.ndarray, n: int = SAMPLES) -> np.ndarray:
    """(T, n*n, 2) points spread over each quadrilateral footprint (T, 4, 2), corners in ring order.

    Bilinear in the quad's corners at the centres of an n x n grid: a tilted camera's trapezoid is
    sampled as evenly as its ground allows.
    """
    q = np.asarray(quads, dtype=np.float64)
    s = (np.arange(n) + 0.5) / n
    u, v = np.meshgrid(s, s)
    u, v = u.ravel()[None, :, None], v.ravel()[None, :, None]
    a, b, c, d = (q[:, k][:, None, :] for k in range(4))
    return (1 - v) * ((1 - u) * a + u * b) + v * ((1 - u) * d + u * c)


def footprint_values(quads_en: np.ndarray, cell_m: float, window: tuple[int, int, int, int],
                values: np.ndarray) -> np.ndarray:
    """Each footprint's mean cell value; `values` (h, w) covers the cell bounds `window` (row0, row1, col0, col1).

    Rows are north (cell row = floor(north / cell_m)), columns east, as in payload/geo/grid.py.
    """
    pts = footprint_points(quads_en)
    r0, _r1, c0, _c1 = window
    rows = np.floor(pts[..., 1] / cell_m).astype(np.int64) - r0
    cols = np.floor(pts[..., 0] / cell_m).astype(np.int64) - c0
    h, w = values.shape
    rows, cols = np.clip(rows, 0, h - 1), np.clip(cols, 0, w - 1)
    return values[rows, cols].mean(axis=1)
