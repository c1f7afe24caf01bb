"""tools/domain_gap.py: the pixel statistics are right on tiles whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from tools.domain_gap import DomainGapError, markdown, tile_stats


def test_stats_of_known_tiles() -> None:
    tiles = np.zeros((2, 4, 4, 3), np.uint8)
    tiles[0] = (60, 120, 40)  # saturated green: S = 0.67, hue 100
    tiles[1, :2] = (200, 200, 190)  # whitish: S = 0.05, V = 0.78
    tiles[1, 2:] = (150, 90, 30)  # saturated orange-brown: hue 30
    s = tile_stats(tiles)
    assert s["tiles"] == 2
    assert s["whitish_share"] == pytest.approx(0.25)
    assert s["saturated_share"] == pytest.approx(0.75)
    assert s["hue_green_share"] == pytest.approx(0.5)
    assert s["hue_yellow_brown_share"] == pytest.approx(0.25)
    assert s["hue_red_orange_share"] == 0.0
    assert s["tile_spread"] == pytest.approx(float(np.median([tiles[0].std(), tiles[1].std()])), abs=0.1)


def test_bad_batch_is_named() -> None:
    with pytest.raises(DomainGapError, match="non-empty"):
        tile_stats(np.zeros((0, 4, 4, 3), np.uint8))


def test_markdown_shows_both_sources() -> None:
    s = tile_stats(np.full((1, 2, 2, 3), 100, np.uint8))
    md = markdown({"seed": 3, "model_px": 96, "rows": [{"gsd_mm": 8.0, "class": "rust", "world": s, "training": s}]})
    assert "| 8 | rust | 100/100/100 vs 100/100/100" in md
