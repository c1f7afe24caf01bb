"""The hill must-show: on 22 m of relief, with the DEM, every patch found, no false zone, and the median
centroid error within 0.5 m of the same layout flown over flat ground; the flat assumption's error beside it.

Two real missions (simulator + `payload run` + scoring), about four minutes each on 2 cores: slow.
`make mission SCENARIO=configs/scenarios/hill.yaml` (and hill_flat.yaml) give the same figures.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.mission.run import MissionPlan, run_mission

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_hill_with_the_dem_scores_like_flat_ground(tmp_path: Path, quick_bundle) -> None:
    hill = run_mission(MissionPlan(ROOT / "configs/scenarios/hill.yaml", tmp_path / "hill", quick_bundle.path))
    flat = run_mission(MissionPlan(ROOT / "configs/scenarios/hill_flat.yaml", tmp_path / "flat", quick_bundle.path))
    print(f"hill (DEM): found {hill['patches_found']}/{hill['patches_total']}, false {hill['false_zones']}, "
          f"median {hill['centroid_error_m_median']:.2f} m; flat twin: found {flat['patches_found']}/"
          f"{flat['patches_total']}, false {flat['false_zones']}, median {flat['centroid_error_m_median']:.2f} m; "
          f"flat assumption on the hill: {hill['flat_assumption']}")
    assert hill["ground"].startswith("dem") and flat["ground"] == "flat"
    assert hill["patches_found"] == hill["patches_total"] == 3
    assert hill["false_zones"] == 0
    assert flat["patches_found"] == 3 and flat["false_zones"] == 0
    assert abs(hill["centroid_error_m_median"] - flat["centroid_error_m_median"]) <= 0.5
    fa = hill["flat_assumption"]
    assert fa is not None and fa["centroid_error_m_median"] is not None
    # the contrast must be a contrast: the flat assumption places the hill's patches worse
    assert fa["centroid_error_m_median"] > hill["centroid_error_m_median"]
