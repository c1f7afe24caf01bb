"""The map chooses where a busy chip looks: tile values, the budget, and the scheduler keeping to both."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from payload.bundle import load_bundle
from payload.capture.sources import InProcessSource
from payload.geo.diseasemap import DiseaseMap
from payload.geo.frames import LocalFrame
from payload.geo.sensor import default_sensor_model
from payload.geo.tilevalue import (
    UNDECIDED_ENTROPY,
    UNSEEN,
    binary_entropy,
    cell_values,
    footprint_points,
    footprint_values,
    zone_edges,
)
from payload.pipeline.choose import choose, tile_budget
from payload.pipeline.scheduler import Pipeline
from payload.pipeline.tiling import Tiler
from payload.settings.map import MapSection
from payload.types import Frame
from tests.payload.doubles import RecordingHandler, ScriptedClassifier

ORIGIN = LocalFrame(-35.0, 149.0, 0.0)


# -- pure values ----------------------------------------------------------------------------------


def test_entropy_and_tiers_follow_the_order_the_issue_asks() -> None:
    assert binary_entropy(np.array([0.5]))[0] == pytest.approx(1.0)
    assert binary_entropy(np.array([0.1]))[0] == pytest.approx(UNDECIDED_ENTROPY, abs=1e-3)
    # one disease; cells: unseen, seen once, undecided (4 looks, p = 0.5), certain healthy (4 looks)
    ev = np.array([[[0.0, 0.0, 2.0, -4.0]]])
    looks = np.array([[0, 1, 4, 4]])
    v = cell_values(ev, looks, prior_logodds=-2.0, trust_looks=3, zone_threshold=0.99)[0]
    assert v[0] == pytest.approx(UNSEEN)
    assert v[1] == pytest.approx(2.0 + 2 / 3)
    assert v[2] == pytest.approx(2.0)  # p = 0.5: 1 + H = 2, the top of the undecided tier
    assert 0.0 < v[3] < UNDECIDED_ENTROPY  # certain: below every undecided cell
    assert v[0] > v[1] > v[2] > v[3]


def test_a_zone_edge_is_undecided_even_when_both_sides_are_sure() -> None:
    p = np.array([[0.01, 0.01, 0.99, 0.99]])
    assert zone_edges(p, 0.5).tolist() == [[False, True, True, False]]
    ev = np.log(p / (1 - p))[None] + 2.0  # evidence that gives p with prior -2
    v = cell_values(ev, np.full(p.shape, 5), -2.0, 3, 0.5)[0]
    assert v[1] >= 1.0 + UNDECIDED_ENTROPY and v[2] >= 1.0 + UNDECIDED_ENTROPY
    assert v[0] < 1.0 and v[3] < 1.0


def test_footprint_points_spread_inside_the_quad_and_values_average_them() -> None:
    quad = np.array([[[0.0, 0.0], [2.0, 0.0], [2.0, 2.0], [0.0, 2.0]]])
    pts = footprint_points(quad, 4)
    assert pts.shape == (1, 16, 2)
    assert pts.min() == pytest.approx(0.25) and pts.max() == pytest.approx(1.75)
    values = np.array([[1.0, 3.0], [5.0, 7.0]])  # rows north, columns east, 1 m cells from (0, 0)
    assert footprint_values(quad, 1.0, (0, 2, 0, 2), values)[0] == pytest.approx(4.0)
    left = np.array([[[0.0, 0.0], [1.0, 0.0], [1.0, 2.0], [0.0, 2.0]]])
    assert footprint_values(left, 1.0, (0, 2, 0, 2), values)[0] == pytest.approx(3.0)


def test_budget_and_choice() -> None:
    assert tile_budget(0.2, 0.049, 12) == 3  # 5 fps on one Coral at 49 ms a tile: 3 of 12
    assert tile_budget(0.2, 0.003, 12) == 12  # the CPU's 3 ms keeps up
    assert tile_budget(None, 0.049, 12) == 12 and tile_budget(0.2, None, 12) == 12  # not measured yet
    assert tile_budget(0.01, 0.049, 12) == 1  # never nothing
    v = np.array([0.1, 3.0, 0.2, 2.5, 0.3, 3.0])
    assert choose(v, 6, 3, rotation=0) == [1, 3, 5]
    assert choose(v, 6, 6, rotation=0) == list(range(6))
    # ties share the chip: with no opinion every tile gets its turn over successive frames
    seen = set()
    for seq in range(3):
        picked = choose(None, 6, 2, rotation=seq)
        assert len(picked) == 2
        seen.update(picked)
    assert seen == set(range(6))


# -- the ground map's values ------------------------------------------------------------------------


def _square(e0: float, n0: float, size: float = 1.0) -> list[list[float]]:
    lat, lon, _ = ORIGIN.to_geodetic(np.array([e0, e0 + size, e0 + size, e0]),
                                     np.array([n0, n0, n0 + size, n0 + size]), 0.0)
    return [[float(a), float(b)] for a, b in zip(lat, lon, strict=True)]


def _look(run: str, tiles: list[tuple[list[list[float]], str, bool]]) -> dict:
    return {"trusted": True, "run_id": run, "vehicle": {"lat": ORIGIN.lat0, "lon": ORIGIN.lon0},
            "tiles": [{"footprint": fp, "label": lab, "flagged": fl} for fp, lab, fl in tiles]}


def test_the_ground_map_ranks_unseen_then_thin_then_undecided_then_certain() -> None:
    cfg = MapSection(cell_m=1.0, explain_away=False)
    m = DiseaseMap(default_sensor_model("healthy", ("rust", "powdery_mildew")), cfg, ORIGIN)
    a, b, c, d = _square(0.0, 0.0), _square(5.0, 0.0), _square(10.0, 0.0), _square(15.0, 0.0)  # whole cells
    for k in range(4):  # independent looks (a new run each): A healthy, D mostly rust
        m.add_look(_look(f"r{k}", [(a, "healthy", False), (d, "rust", k < 3)]))
    m.add_look(_look("once", [(b, "healthy", False)]))
    probe = _look("probe", [(a, "", False), (b, "", False), (c, "", False), (d, "", False)])
    va, vb, vc, vd = m.tile_values(probe) or []
    assert vc == pytest.approx(UNSEEN)
    assert vc > vb > vd > va
    assert va < UNDECIDED_ENTROPY and vd >= 1.0
    assert m.tile_values({**probe, "trusted": False}) is None


# -- the scheduler keeps to the budget and the chooser's order ---------------------------------------


class ValueByIndex:
    """A chooser double: the higher a tile's grid index, the more it is worth."""

    def __init__(self) -> None:
        self.calls = 0

    def values(self, frame: Frame, boxes: list) -> np.ndarray:
        self.calls += 1
        return np.arange(len(boxes), dtype=np.float64)


def _frames(n: int, interval_s: float) -> list[Frame]:
    t0 = time.monotonic()
    return [Frame(np.zeros((96, 96, 3), np.uint8), i, t0 + i * interval_s, time.time(), "t") for i in range(n)]


def _slow_per_tile(s: float) -> ScriptedClassifier:
    clf = ScriptedClassifier()
    inner = clf.classify_batch

    def classify(tiles: np.ndarray) -> np.ndarray:
        time.sleep(s * len(tiles))
        return inner(tiles)

    clf.classify_batch = classify  # type: ignore[method-assign]
    return clf


@pytest.mark.parametrize("with_chooser", [True, False])
def test_a_busy_chip_classifies_the_most_valuable_tiles(tiny_bundle_dir: Path, with_chooser: bool) -> None:
    # frames 1 s apart (their own stamps), 0.1 s a tile: at most 9 of a 3 x 3 grid's tiles fit, fewer
    # once the measured tile time includes any overhead; the first frame measures, so it has all 9
    src = InProcessSource(_frames(4, 1.0))
    src.lossless = False
    handler = RecordingHandler()
    chooser = ValueByIndex() if with_chooser else None
    pipe = Pipeline(src, _slow_per_tile(0.1), handler, load_bundle(tiny_bundle_dir), Tiler(3, 3, 0.0, (32, 32)),
                    chooser=chooser)
    stats = pipe.run()
    assert handler.results, "no frame was classified"
    first, *rest = handler.results
    assert len(first.tiles) == 9
    for r in rest:
        idx = sorted(t.box.row * 3 + t.box.col for t in r.tiles)
        if with_chooser:
            assert 1 <= len(idx) < 9
            assert idx == list(range(9 - len(idx), 9))  # the highest-valued ones
        else:
            assert len(idx) == 9
    assert stats.tiles_offered == 9 * stats.frames_captured
    assert stats.tiles_classified == sum(len(r.tiles) for r in handler.results)
    assert stats.tile_choice == ("map" if with_chooser else "all")
    if with_chooser and rest:
        assert chooser is not None and chooser.calls == len(rest)
        assert stats.choose_ms_p50 is not None
