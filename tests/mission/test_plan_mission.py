"""Issue 27's flight plan flown: `payload plan` writes a QGroundControl .plan and its scenario, the simulator
flies the .plan, and the real payload maps the field at the modelled chip's pace.

A 40 x 24 m field at the default scenario's origin with one rust patch; `payload plan --gsd-mm 40` (a stated
resolution: no offline bundle states one) for the Raspberry Pi camera and one modelled USB 3 Coral charged
the full ResNet-50 (`--model-cost resnet50`). The world is the TEST DOUBLE tests/trainingtexture_world.py
with its leaf-family bundle (as the chain test): the quick bundle does not yet see disease in the physical
world. A few minutes of flight: `make test-slow`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from payload.geo.frames import enu_to_geodetic
from tests.trainingtexture_world import TrainingTextureWorld
from tools.mission.run import MissionPlan, run_mission

ROOT = Path(__file__).resolve().parents[2]
LAT0, LON0, ALT0 = -35.363261, 149.165230, 584.0
PATCH = {"class": "rust", "east_m": 22.0, "north_m": 12.0, "radius_m": 5.0, "stage": "moderate"}


def _field(path: Path, w: float = 40.0, h: float = 24.0) -> Path:
    ring = []
    for e, n in ((0, 0), (w, 0), (w, h), (0, h), (0, 0)):
        lat, lon, _ = enu_to_geodetic(e, n, 0.0, LAT0, LON0, 0.0)
        ring.append([round(float(lon), 9), round(float(lat), 9)])
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": "test field"}, "geometry": {"type": "Polygon",
                                                                             "coordinates": [ring]}}]}))
    return path


@pytest.mark.slow
def test_a_plan_from_payload_plan_is_flown_and_maps_the_patch(tmp_path: Path, leaf_family_bundle: Path) -> None:
    plan_dir = tmp_path / "plan"
    done = subprocess.run([sys.executable, "-m", "payload", "plan", "--field", str(_field(tmp_path / "f.geojson")),
                           "--camera", str(ROOT / "configs" / "cameras" / "rpi_cam_v2.yaml"),
                           "--bundle", str(leaf_family_bundle), "--gsd-mm", "40", "--edgetpu-model", "usb3",
                           "--tpus", "1", "--model-cost", "resnet50", "--home-alt", str(ALT0), "--out", str(plan_dir)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    print("PLAN:", done.stdout)
    qgc = json.loads((plan_dir / "survey.plan").read_text())
    assert qgc["fileType"] == "Plan" and qgc["mission"]["items"]
    scenario = yaml.safe_load((plan_dir / "scenario.yaml").read_text())
    assert scenario["flight"]["plan"] == "survey.plan"
    scenario["patches"] = [PATCH]
    (plan_dir / "scenario.yaml").write_text(yaml.safe_dump(scenario))
    report = run_mission(MissionPlan(plan_dir / "scenario.yaml", tmp_path / "mission", leaf_family_bundle,
                                     world_factory=TrainingTextureWorld, edgetpu_model="usb3", tpus=1,
                                     model_cost="resnet50"))
    print("PLAN-MISSION: " + json.dumps({k: report.get(k) for k in (
        "patches_found", "patches_total", "false_zones", "centroid_error_m_median", "iou_mean", "coverage_fraction",
        "frames_dropped", "frames_processed", "tiles_classified", "tiles_offered")}))
    assert report["patches_found"] == 1 and report["false_zones"] == 0, report["patches"]
    assert report["centroid_error_m_median"] <= 1.0 and report["coverage_fraction"] >= 0.9
