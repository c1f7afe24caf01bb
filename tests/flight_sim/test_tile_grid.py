"""One tile grid: the simulator's per-tile truth covers exactly the boxes the payload's tiler crops.

The truth used to be cut with its own arithmetic that ignored overlap; with overlap > 0 it then
judged different pixels from the ones the classifier saw. Here frames are judged with overlap > 0
and every tile's truth is recomputed in the test from the boxes of `payload.pipeline.tiling.Tiler`.
"""

from __future__ import annotations

import numpy as np
import pymap3d
import pytest

from flight_sim.render import WorldRenderer, tile_truth
from flight_sim.scenario import Scenario
from flight_sim.world.world import LABEL_OUTSIDE
from payload.bundle import CLASSES
from payload.pipeline.tiling import Tiler
from payload.types import Pose

RUST = CLASSES.index("rust")
ROWS, COLS = 3, 4


def truth_of_boxes(labels: np.ndarray, tiler: Tiler, min_share: float = 0.25) -> list[list[str]]:
    """The test's own judgement of each tile, over the pixels the payload's tiler crops for it."""
    h, w = labels.shape
    out = [["?"] * tiler.cols for _ in range(tiler.rows)]
    for b in tiler.boxes(w, h):
        crop = labels[b.y : b.y + b.h, b.x : b.x + b.w]
        assert crop.shape == (b.h, b.w)
        if (crop == LABEL_OUTSIDE).mean() > 0.5:
            out[b.row][b.col] = "-"
            continue
        shares = {c: float((crop == CLASSES.index(c)).mean()) for c in CLASSES[1:]}
        best = max(shares, key=lambda c: (shares[c], c))
        out[b.row][b.col] = best if shares[best] >= min_share else CLASSES[0]
    return out


@pytest.mark.parametrize("overlap", [0.2, 0.5])
def test_truth_covers_the_overlapping_boxes(overlap: float) -> None:
    labels = np.zeros((480, 640), np.uint8)
    tiler = Tiler(ROWS, COLS, overlap, (96, 96))
    boxes = {(b.row, b.col): b for b in tiler.boxes(640, 480)}
    # a rust strip from where tile (0, 1) starts with overlap (left of x = 160, where it would start
    # without) just wide enough to reach the 25 % share in the overlapping box, while the
    # no-overlap box [160, 320) holds less than 25 % of it
    b01 = boxes[(0, 1)]
    assert b01.x < 160
    end = b01.x + int(np.ceil(0.25 * b01.w))
    assert (end - 160) / 160 < 0.25
    labels[: b01.h, b01.x : end] = RUST
    got = tile_truth(labels, ROWS, COLS, overlap)
    assert got == truth_of_boxes(labels, tiler)
    assert got[0][1] == "rust"
    assert tile_truth(labels, ROWS, COLS, 0.0)[0][1] == "healthy"  # the old overlap-blind cut misses it


def test_rendered_truth_matches_the_tiler_boxes(scenario: Scenario) -> None:
    s = scenario.model_copy(update={"camera": scenario.camera.model_copy(update={"tile_overlap": 0.3})})
    renderer = WorldRenderer.for_scenario(s, effects=False)
    tiler = Tiler(ROWS, COLS, s.camera.tile_overlap, (96, 96))
    seen_disease = 0
    differs_from_no_overlap = 0
    for p in s.patches:
        for de in (-9.0, 0.0, 9.0):
            lat, lon, alt = pymap3d.enu2geodetic(p.east_m + de, p.north_m, s.flight.altitude_m, s.origin.lat,
                                                 s.origin.lon, s.origin.alt)
            labels = renderer.render_labels(Pose(float(lat), float(lon), float(alt), 0.0, 0.0, 0.0))
            got = tile_truth(labels, ROWS, COLS, s.camera.tile_overlap)
            assert got == truth_of_boxes(labels, tiler)
            seen_disease += sum(t not in ("healthy", "-") for row in got for t in row)
            differs_from_no_overlap += got != tile_truth(labels, ROWS, COLS, 0.0)
    assert seen_disease > 0  # the frames do show the patches: the comparison is not all-healthy
    assert differs_from_no_overlap > 0  # and overlap changes some verdicts, so the boxes matter
