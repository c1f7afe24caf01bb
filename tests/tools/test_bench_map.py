"""The map's bench figures measure what they say (small sizes, hand-worked areas)."""

from __future__ import annotations

import math

import pytest

from tools.bench_map import memory_figures, update_figures


def test_memory_follows_the_ground_flown_over() -> None:
    m = memory_figures(side_m=100.0, spacing_m=20.0, swath_m=34.64, margin_m=10.0)
    # legs at e = 10 ... 90 with a 34.64 m swath: e from -7.32 to 107.32, n from -10 to 110
    assert m["map_seen_ha"] == pytest.approx(114.64 * 120.0 / 1e4, abs=0.05)
    chunk_m = 64 * 0.5
    chunks = math.ceil(107.32 / chunk_m) - math.floor(-7.32 / chunk_m)
    chunks *= math.ceil(110 / chunk_m) - math.floor(-10 / chunk_m)
    assert m["map_chunks"] == chunks
    cells_mb = chunks * 64 * 64 * 4 / 1e6  # one 16-bit word per cell and disease
    assert m["map_cells_mb_100ha"] == pytest.approx(cells_mb, abs=0.01)
    # what tracemalloc sees: the cells plus a few hundred bytes of bookkeeping per chunk
    assert cells_mb <= m["map_memory_mb_100ha"] <= cells_mb + chunks * 1000 / 1e6


def test_update_figures_are_timed_per_frame() -> None:
    u = update_figures(n_frames=40)
    assert 0 < u["map_update_ms_p50"] <= u["map_update_ms_p95"]
    assert u["map_tiles_per_frame"] == 12 and u["map_frames"] == 40


def test_ranking_a_frame_costs_a_sliver_of_a_tile() -> None:
    from tools.bench_map import choose_figures

    f = choose_figures(60)
    assert f["choose_ms_p50"] > 0 and f["choose_tile_ms_modelled"] > 25.0
    # both sides are rounded figures of one unrounded ratio: equal to the last printed digit
    assert f["choose_share_of_tile"] == pytest.approx(f["choose_ms_p50"] / f["choose_tile_ms_modelled"], abs=2e-4)
