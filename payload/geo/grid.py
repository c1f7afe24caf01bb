"""The ground evidence grid: per-cell log-odds of each disease against healthy, and look counts.

Occupancy-grid mapping (Thrun, Burgard & Fox, Probabilistic Robotics ch. 9) applied to disease:
every classified tile, healthy ones included, adds its evidence (payload/geo/sensor.py) to each
cell its projected footprint covers, weighted by the share of the cell it covers. A cell keeps,
for each disease class k, the sum of the log-likelihood ratios of k against healthy; with a prior
l0 the posterior over {healthy, k...} is a softmax over (0, l0 + sum_k ...) (`posterior`).

Storage is chosen for a companion computer: the ground is cut into square chunks of `chunk`
cells that are allocated when a footprint first touches them, so memory follows the ground flown
over, not a declared field. A chunk is one uint16 array (K, C, C): each word holds a disease's
evidence sum as a 12-bit two's-complement number in steps of 1/250 (clamped to +-8.19, so a cell
can still change its mind and a hover cannot drive it to certainty), and the top 4 bits of the
first disease's word hold the cell's look count, saturating at 15. That is 2 bytes per disease
class per cell, look count included: 4 bytes with two diseases, so a 100 ha survey at 0.5 m cells
stays under 20 MB with Python's bookkeeping counted (`make bench`). A step of 1/250 is a hundred
times finer than any evidence a tile adds, and fifteen looks are more than the coverage layer asks
for (`map.coverage_min_looks` <= 15).

Pure numpy, no clocks and no I/O: `add_footprints` is what the flight and `payload export` both
call, in the records' order, so both build the same grid.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

LSB = 1.0 / 250.0  # log-odds step of the 12-bit evidence
EV_MAX = 2047  # the largest 12-bit two's-complement value
LOOKS_MAX = 15  # a 4-bit look count
_EV_MASK = 0x0FFF


# A cell takes at most this many times a tile's mean share of a call's evidence: ground believed
# diseased explains the call, but one cell never takes the whole tile's worth.
EXPLAIN_GAIN_MAX = 4.0


def encode_cells(ev_q: np.ndarray, looks: np.ndarray) -> np.ndarray:
    """Evidence (K, h, w) integers in [-EV_MAX, EV_MAX] and looks (h, w) in [0, 15] -> uint16 (K, h, w)."""
    words = (np.asarray(ev_q, dtype=np.int32) & _EV_MASK).astype(np.uint16)
    words[0] |= np.asarray(looks, dtype=np.uint16) << 12
    return words


def decode_cells(words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The inverse of `encode_cells`: uint16 (K, h, w) -> (evidence int32 (K, h, w), looks uint8 (h, w))."""
    w = np.asarray(words, dtype=np.uint16)
    ev = (w & _EV_MASK).astype(np.int32)
    ev -= (ev & 0x0800) << 1  # sign-extend the 12-bit value
    return ev, (w[0] >> 12).astype(np.uint8)


def frame_cell_evidence(
    quads_en: np.ndarray, evidence: np.ndarray, cell_m: float, subsamples: int = 4,
    gain: np.ndarray | None = None,
) -> tuple[int, int, np.ndarray, np.ndarray]:
    """One frame's tiles on the cells: (row0, col0, evidence (K, h, w), covered share (h, w)).

    Rows count north (row i spans n in [i*cell, (i+1)*cell)), columns east. Each cell is sampled on
    a subsamples x subsamples lattice and a tile's share of it is the fraction of lattice points
    inside the tile's footprint (a convex quadrilateral in east/north metres; exact for edges along
    cell boundaries, within 1/subsamples of a cell width at a slanted edge). A cell's evidence is the
    sum over tiles of share x the tile's evidence. All tiles of a frame are tested in one batch of
    array operations, which keeps a 12-tile frame to a few milliseconds where exact polygon
    clipping per cell would not. `gain` (K, h, w), the current disease probabilities over the
    frame's window (`frame_window`), shares each tile's positive evidence by them (`_explain_gain`).
    """
    q = np.asarray(quads_en, dtype=np.float64)
    ev = np.asarray(evidence, dtype=np.float64)
    if q.ndim != 3 or q.shape[1:] != (4, 2) or not np.all(np.isfinite(q)):
        raise ValueError(f"footprints are (T, 4, 2) finite east/north corners, got shape {q.shape}")
    if ev.ndim != 2 or len(ev) != len(q):
        raise ValueError(f"evidence must be (T, K) for T = {len(q)} footprints, got {ev.shape}")
    lo = np.floor(q.min(axis=1) / cell_m).astype(np.int64)  # (T, 2): first column, first row
    hi = np.ceil(q.max(axis=1) / cell_m).astype(np.int64)
    W = int(max((hi[:, 0] - lo[:, 0]).max(), 1))
    H = int(max((hi[:, 1] - lo[:, 1]).max(), 1))
    s = int(subsamples)
    T = len(q)
    # Each lattice row (fixed north) meets a convex quad in one interval of east: from the four edges'
    # half-planes A*e + B >= 0, lower bounds where A > 0, upper where A < 0. Counting the lattice
    # points of each cell inside the interval is then integer arithmetic, not a point-in-polygon test
    # per point.
    north = (lo[:, 1, None] + (np.arange(H * s)[None, :] + 0.5) / s) * cell_m  # (T, H*s)
    nxt = np.roll(q, -1, axis=1)
    area2 = np.sum(q[:, :, 0] * nxt[:, :, 1] - nxt[:, :, 0] * q[:, :, 1], axis=1)
    sign = np.where(area2 >= 0, 1.0, -1.0)[:, None]  # (T, 1)
    dx, dy = nxt[:, :, 0] - q[:, :, 0], nxt[:, :, 1] - q[:, :, 1]  # (T, 4)
    A = (-sign * dy)[:, None, :]  # (T, 1, 4)
    B = sign[:, :, None] * (dx[:, None, :] * (north[:, :, None] - q[:, None, :, 1])
                            + dy[:, None, :] * q[:, None, :, 0])  # (T, H*s, 4)
    with np.errstate(divide="ignore", invalid="ignore"):
        bound = -B / A  # (T, H*s, 4)
    e_lo = np.max(np.where(A > 0, bound, -np.inf), axis=2)
    e_hi = np.min(np.where(A < 0, bound, np.inf), axis=2)
    empty = np.any((A == 0) & (B < 0), axis=2) | (e_lo > e_hi)
    # global east sample index k sits at (k + 0.5) / s cells
    kmin = np.ceil(e_lo / cell_m * s - 0.5)
    kmax = np.floor(e_hi / cell_m * s - 0.5)
    cols = (lo[:, 0, None] + np.arange(W)[None, :]) * s  # (T, W): first sample index of each cell
    first = np.maximum(kmin[:, :, None], cols[:, None, :])
    last = np.minimum(kmax[:, :, None], cols[:, None, :] + s - 1)
    counts = np.where(empty[:, :, None], 0.0, np.clip(last - first + 1, 0, s))  # (T, H*s, W)
    frac = counts.reshape(T, H, s, W).sum(axis=2) / (s * s)  # (T, H, W)
    j0, i0 = int(lo[:, 0].min()), int(lo[:, 1].min())
    w, h = int(lo[:, 0].max()) - j0 + W, int(lo[:, 1].max()) - i0 + H
    delta = np.zeros((ev.shape[1], h, w), dtype=np.float64)
    covered = np.zeros((h, w), dtype=np.float64)
    for t in range(len(q)):
        r, c = int(lo[t, 1]) - i0, int(lo[t, 0]) - j0
        share = frac[t][None]
        if gain is not None:
            share = share * _explain_gain(frac[t], gain[:, r:r + H, c:c + W], ev[t])
        delta[:, r:r + H, c:c + W] += share * ev[t][:, None, None]
        covered[r:r + H, c:c + W] += frac[t]
    return i0, j0, delta, covered


def _explain_gain(frac: np.ndarray, p: np.ndarray, ev: np.ndarray) -> np.ndarray:
    """Per class, how a tile's positive evidence is shared among its cells (K, H, W); 1 where not shared.

    A disease call says the disease is somewhere under the tile, and the ground already believed
    diseased is the likeliest place: each cell's share is its current probability over the tile's
    mean (weighted by coverage), capped at EXPLAIN_GAIN_MAX, so the tile's total evidence is
    unchanged while ground seen only beside a patch stops collecting the patch's evidence. Negative
    evidence (a healthy call says "nowhere under this tile") stays uniform.
    """
    g = np.ones_like(p)
    tot = float(frac.sum())
    if tot <= 0:
        return g
    for k in np.flatnonzero(ev > 0):
        mean = float((frac * p[k]).sum()) / tot
        if mean > 0:
            g[k] = np.minimum(p[k] / mean, EXPLAIN_GAIN_MAX)
    return g


def frame_window(quads_en: np.ndarray, cell_m: float) -> tuple[int, int, int, int]:
    """(row0, row1, col0, col1): the cells `frame_cell_evidence` returns for these footprints."""
    q = np.asarray(quads_en, dtype=np.float64)
    lo = np.floor(q.min(axis=1) / cell_m).astype(np.int64)
    hi = np.ceil(q.max(axis=1) / cell_m).astype(np.int64)
    W = int(max((hi[:, 0] - lo[:, 0]).max(), 1))
    H = int(max((hi[:, 1] - lo[:, 1]).max(), 1))
    j0, i0 = int(lo[:, 0].min()), int(lo[:, 1].min())
    return i0, int(lo[:, 1].max()) + H, j0, int(lo[:, 0].max()) + W


@dataclass(slots=True)
class _Chunk:
    cells: np.ndarray  # uint16 (K, C, C): `encode_cells`
    peak: int  # an upper bound of the chunk's evidence, in LSB (zone extraction skips chunks below a bound)


class EvidenceGrid:
    """Chunked per-cell disease evidence in a local east-north frame (metres from the map's origin)."""

    def __init__(self, cell_m: float, n_classes: int, *, chunk: int = 64, clamp: float = 8.0,
                 subsamples: int = 4) -> None:
        if not cell_m > 0:
            raise ValueError(f"cell_m must be positive, got {cell_m}")
        if n_classes < 1:
            raise ValueError("the grid needs at least one disease class")
        if not 0 < clamp <= EV_MAX * LSB:
            raise ValueError(f"clamp must be in (0, {EV_MAX * LSB:.2f}], got {clamp}")
        self.cell_m = float(cell_m)
        self.n_classes = int(n_classes)
        self.chunk = int(chunk)
        self.clamp = float(clamp)
        self.subsamples = int(subsamples)
        self._clamp_q = round(clamp / LSB)
        self.chunks: dict[tuple[int, int], _Chunk] = {}

    @property
    def nbytes(self) -> int:
        """Bytes held by the cell arrays (the grid's memory, less about 300 bytes of bookkeeping per chunk)."""
        return sum(c.cells.nbytes for c in self.chunks.values())

    def _chunk(self, key: tuple[int, int]) -> _Chunk:
        c = self.chunks.get(key)
        if c is None:
            n = self.chunk
            c = _Chunk(np.zeros((self.n_classes, n, n), dtype=np.uint16), 0)
            self.chunks[key] = c
        return c

    def add_footprints(self, quads_en: np.ndarray, evidence: np.ndarray, weight: float = 1.0,
                       explain_prior: float | None = None) -> None:
        """Add one frame: tile footprints (T, 4, 2) east/north metres, evidence (T, K), the frame's weight.

        A cell's increment is sum over tiles of share * weight * evidence; a cell counts one look when
        the frame's tiles cover at least half of it, whatever the weight (the look counts say how
        often the ground was seen; the weights say how much of that was new information). With
        `explain_prior` (the map's prior log-odds) a tile's positive evidence is shared by the cells'
        current probabilities instead of evenly (`_explain_gain`).
        """
        quads = np.asarray(quads_en, dtype=np.float64)
        ev = np.asarray(evidence, dtype=np.float64)
        if ev.shape != (len(quads), self.n_classes):
            raise ValueError(f"expected evidence ({len(quads)}, {self.n_classes}), got {ev.shape}")
        if not weight >= 0:
            raise ValueError(f"a look's weight is in [0, 1], got {weight}")
        if len(quads) == 0:
            return
        gain = None
        if explain_prior is not None and (ev > 0).any():
            win = frame_window(quads, self.cell_m)
            now, _ = self.dense(win)
            gain = 1.0 / (1.0 + np.exp(-(explain_prior + now.astype(np.float64))))
        i0, j0, delta, covered = frame_cell_evidence(quads, weight * ev, self.cell_m, self.subsamples, gain)
        looks = (covered >= 0.5).astype(np.int32)
        dq = np.rint(delta / LSB).astype(np.int32)
        self._apply(i0, j0, dq, looks)

    def _apply(self, i0: int, j0: int, dq: np.ndarray, looks: np.ndarray) -> None:
        n = self.chunk
        h, w = looks.shape
        for ci in range(i0 // n, (i0 + h - 1) // n + 1):
            for cj in range(j0 // n, (j0 + w - 1) // n + 1):
                a0, a1 = max(i0, ci * n), min(i0 + h, (ci + 1) * n)
                b0, b1 = max(j0, cj * n), min(j0 + w, (cj + 1) * n)
                sub_l = dq[:, a0 - i0:a1 - i0, b0 - j0:b1 - j0]
                sub_k = looks[a0 - i0:a1 - i0, b0 - j0:b1 - j0]
                if not sub_k.any() and not sub_l.any():
                    continue
                c = self._chunk((ci, cj))
                sl = (slice(a0 - ci * n, a1 - ci * n), slice(b0 - cj * n, b1 - cj * n))
                ev, lk = decode_cells(c.cells[:, sl[0], sl[1]])
                ev = np.clip(ev + sub_l, -self._clamp_q, self._clamp_q)
                c.cells[:, sl[0], sl[1]] = encode_cells(ev, np.minimum(lk.astype(np.int32) + sub_k, LOOKS_MAX))
                c.peak = max(c.peak, int(ev.max()))

    def extent(self) -> tuple[int, int, int, int] | None:
        """(row0, row1, col0, col1) cell bounds of the allocated chunks (None: nothing seen yet)."""
        if not self.chunks:
            return None
        ks = np.array(list(self.chunks), dtype=np.int64)
        n = self.chunk
        return (int(ks[:, 0].min() * n), int((ks[:, 0].max() + 1) * n),
                int(ks[:, 1].min() * n), int((ks[:, 1].max() + 1) * n))

    def dense(self, bounds: tuple[int, int, int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Evidence sums (K, h, w) float32 and looks (h, w) uint8 over cell bounds (row0, row1, col0, col1).

        Cells no chunk holds are 0 evidence and 0 looks; row 0 of the arrays is the southernmost.
        """
        b = bounds if bounds is not None else self.extent()
        if b is None:
            return np.zeros((self.n_classes, 0, 0), np.float32), np.zeros((0, 0), np.uint8)
        r0, r1, c0, c1 = b
        ev = np.zeros((self.n_classes, r1 - r0, c1 - c0), dtype=np.float32)
        lk = np.zeros((r1 - r0, c1 - c0), dtype=np.uint8)
        n = self.chunk
        for (ci, cj), c in list(self.chunks.items()):  # a copy: the scheduler reads while the writer adds chunks
            a0, a1 = max(r0, ci * n), min(r1, (ci + 1) * n)
            b0, b1 = max(c0, cj * n), min(c1, (cj + 1) * n)
            if a0 >= a1 or b0 >= b1:
                continue
            q, n_looks = decode_cells(c.cells[:, a0 - ci * n:a1 - ci * n, b0 - cj * n:b1 - cj * n])
            ev[:, a0 - r0:a1 - r0, b0 - c0:b1 - c0] = q * LSB
            lk[a0 - r0:a1 - r0, b0 - c0:b1 - c0] = n_looks
        return ev, lk

    def chunk_groups(self, min_evidence: float) -> Iterator[tuple[int, int, int, int]]:
        """Cell bounds of groups of touching chunks holding a cell with evidence >= min_evidence.

        Zones are looked for only there, so extracting them costs what the diseased ground costs,
        not what the whole flight covered.
        """
        q = round(min_evidence / LSB)
        hot = {k for k, c in self.chunks.items() if c.peak >= q}
        n = self.chunk
        while hot:
            stack = [hot.pop()]
            group = []
            while stack:
                k = stack.pop()
                group.append(k)
                for di in (-1, 0, 1):
                    for dj in (-1, 0, 1):
                        nb = (k[0] + di, k[1] + dj)
                        if nb in hot:
                            hot.remove(nb)
                            stack.append(nb)
            ks = np.array(group)
            # one chunk of margin so a zone touching the group's edge is cut from whole evidence
            yield (int(ks[:, 0].min() - 1) * n, int(ks[:, 0].max() + 2) * n,
                   int(ks[:, 1].min() - 1) * n, int(ks[:, 1].max() + 2) * n)


def posterior(evidence: np.ndarray, prior_logodds: float) -> np.ndarray:
    """Per-cell class probabilities (K+1, ...): index 0 healthy, then the disease classes.

    Each disease's log-odds against healthy is prior + evidence; a softmax over (0, those) is the
    categorical posterior, so two diseases compete for the same cell.
    """
    ev = np.asarray(evidence, dtype=np.float64)
    logits = np.concatenate([np.zeros((1, *ev.shape[1:])), prior_logodds + ev], axis=0)
    logits -= logits.max(axis=0, keepdims=True)
    ex = np.exp(logits)
    return ex / ex.sum(axis=0, keepdims=True)
