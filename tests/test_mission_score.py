"""Mission scoring against hand-worked answers."""

from __future__ import annotations

import math

import pytest

from tools.mission.score import FoundHotspot, TruePatch, score_mission


def test_found_false_and_errors_by_hand() -> None:
    patches = [
        TruePatch("rust", 10.0, 10.0, 3.0),
        TruePatch("rust", 50.0, 50.0, 3.0),
        TruePatch("powdery_mildew", 80.0, 20.0, 4.0),
    ]
    hotspots = [
        FoundHotspot("rust", 11.0, 11.0),  # 1.414 m from patch 0: found
        FoundHotspot("rust", 13.0, 10.0),  # 3 m: also matches patch 0 (not false), farther
        FoundHotspot("powdery_mildew", 10.0, 10.0),  # right place, wrong class: false
        FoundHotspot("powdery_mildew", 80.0, 26.5),  # 6.5 m > 4 + 2 tolerance: false, patch missed
    ]
    s = score_mission(patches, hotspots, tolerance_m=2.0)
    assert s["patches_total"] == 3
    assert s["patches_found"] == 1
    assert s["false_hotspots"] == 2
    assert s["centroid_error_m_median"] == pytest.approx(math.sqrt(2), abs=1e-3)
    assert s["patches"][0]["hotspot_index"] == 0
    assert s["per_class"]["rust"] == {
        "patches_total": 2,
        "patches_found": 1,
        "false_hotspots": 0,
        "hotspots": 2,
        "centroid_error_m_median": pytest.approx(1.414, abs=1e-3),
    }
    assert s["per_class"]["powdery_mildew"]["false_hotspots"] == 2
    assert "2 m" in s["match_rule"]


def test_tolerance_boundary_is_inclusive() -> None:
    p = [TruePatch("rust", 0.0, 0.0, 2.0)]
    assert score_mission(p, [FoundHotspot("rust", 3.0, 0.0)], 1.0)["patches_found"] == 1
    assert score_mission(p, [FoundHotspot("rust", 3.01, 0.0)], 1.0)["patches_found"] == 0


def test_no_hotspots_and_p95() -> None:
    s = score_mission([TruePatch("rust", 0, 0, 1)], [], 1.0)
    assert s["patches_found"] == 0 and s["centroid_error_m_median"] is None
    patches = [TruePatch("rust", 100.0 * i, 0.0, 5.0) for i in range(20)]
    hs = [FoundHotspot("rust", 100.0 * i + i * 0.1, 0.0) for i in range(20)]
    s = score_mission(patches, hs, 0.0)
    assert s["patches_found"] == 20
    assert s["centroid_error_m_p95"] == pytest.approx(1.805, abs=1e-3)


def test_negative_tolerance_rejected() -> None:
    with pytest.raises(ValueError):
        score_mission([], [], -1.0)


def test_map_png_is_written(tmp_path) -> None:
    from tools.mission.mapplot import draw_mission_map

    patches = [TruePatch("rust", 30, 40, 5), TruePatch("powdery_mildew", 80, 70, 6)]
    hs = [FoundHotspot("rust", 31, 41), FoundHotspot("rust", 10, 90)]
    s = score_mission(patches, hs, 3.0)
    out = draw_mission_map(tmp_path / "m.png", 100, 100, patches, hs, [(0, 10), (100, 10)],
                           [[(0, 0), (10, 0), (10, 10), (0, 10)]], s)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
