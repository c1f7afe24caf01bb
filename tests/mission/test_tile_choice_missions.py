"""Issue 27's chip budget on a whole mission: a modelled Coral too slow for every tile, the map choosing them
against newest-frame dropping, over the default field.

Both runs fly configs/scenarios/wheat_30m.yaml with the payload at a modelled USB 3 Coral's pace for the
default build's 224 px ResNet-50 (`--model-cost resnet50`, ~42 ms a tile: about 24 tiles a second
against the camera's 60), one with `scheduler.tile_choice: map`, one with `all`. The world is the TEST
DOUBLE tests/trainingtexture_world.py with its leaf-family bundle (as the chain test): the comparison
needs a classifier that sees the patches, which the quick bundle does not in the physical world yet.
Four minutes a mission: `make test-slow`. The figures print with `-s`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.trainingtexture_world import TrainingTextureWorld
from tools.mission.run import MissionPlan, run_mission

ROOT = Path(__file__).resolve().parents[2]
KEYS = ("patches_found", "patches_total", "false_zones", "centroid_error_m_median", "iou_mean", "coverage_fraction",
        "frames_dropped", "frames_processed", "tiles_classified", "tiles_offered")


@pytest.mark.slow
def test_the_map_choosing_tiles_against_newest_frame_dropping(tmp_path: Path, leaf_family_bundle: Path) -> None:
    reports = {}
    for choice in ("map", "all"):
        plan = MissionPlan(ROOT / "configs" / "scenarios" / "wheat_30m.yaml", tmp_path / choice, leaf_family_bundle,
                           world_factory=TrainingTextureWorld, edgetpu_model="usb3", tpus=1, model_cost="resnet50",
                           tile_choice=choice)
        reports[choice] = run_mission(plan)
        print(f"TILE-CHOICE {choice}: " + json.dumps({k: reports[choice].get(k) for k in KEYS}))
    m, a = reports["map"], reports["all"]
    for r in (m, a):  # the chip, not the CPU, set the pace: fewer tiles classified than offered
        assert r["tiles_classified"] < 0.7 * r["tiles_offered"], r
    # newest-frame dropping loses whole frames; the map keeps every frame and spreads the chip over them
    assert m["frames_dropped"] < a["frames_dropped"]
    assert m["coverage_fraction"] >= a["coverage_fraction"] - 0.02
    # the targets with the map choosing
    assert m["patches_found"] == m["patches_total"] and m["false_zones"] == 0, m["patches"]
    assert m["centroid_error_m_median"] <= 1.0, m["patches"]
