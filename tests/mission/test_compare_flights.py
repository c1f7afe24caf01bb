"""Issue 25's change between flights, on two real missions over the default field.

Two flights of configs/scenarios/wheat_30m.yaml's field, the second with one extra patch, each through
the simulator and the real `payload run`; then `payload compare OLD NEW --out D`. Exactly the extra
patch's zone must be new, and every zone of the first flight must be found again (not gone).

The world is the TEST DOUBLE tests/trainingtexture_world.py with its leaf-family bundle, as in the
chain test (tests/mission/test_mission_e2e.py): this measures the map and the comparison, which need
a classifier that sees the patches; the quick bundle does not yet see disease in the physical world
(the README's "world at real scale"). Two full missions take about 8 minutes: `make test-slow`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import shapely
import shapely.geometry
import yaml

from tests.trainingtexture_world import TrainingTextureWorld
from tools.mission.run import MissionPlan, _enu, run_mission

ROOT = Path(__file__).resolve().parents[2]
EXTRA = {"class": "rust", "east_m": 55, "north_m": 20, "radius_m": 6, "stage": "moderate"}


def _scenario(tmp_path: Path, extra: bool) -> Path:
    s = yaml.safe_load((ROOT / "configs" / "scenarios" / "wheat_30m.yaml").read_text())
    if extra:
        s["patches"].append(EXTRA)
    p = tmp_path / ("extra.yaml" if extra else "default.yaml")
    p.write_text(yaml.safe_dump(s))
    return p


@pytest.mark.slow
def test_compare_two_flights_of_the_default_field_finds_exactly_the_extra_patch(
        tmp_path: Path, leaf_family_bundle: Path) -> None:
    flights = {}
    for name, extra in (("old", False), ("new", True)):
        plan = MissionPlan(_scenario(tmp_path, extra), tmp_path / name, leaf_family_bundle,
                           world_factory=TrainingTextureWorld)
        report = run_mission(plan)
        assert report["false_zones"] == 0 and report["patches_found"] == report["patches_total"], report["patches"]
        flights[name] = tmp_path / name
    out = tmp_path / "changes"
    done = subprocess.run([sys.executable, "-m", "payload", "compare", str(flights["old"]), str(flights["new"]),
                           "--out", str(out)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    changes = json.loads((out / "changes.json").read_text())
    print("CHANGES:", json.dumps(changes["counts"]), "areas", json.dumps(changes["area_m2"]))
    assert changes["counts"]["new"] == 1 and changes["counts"]["gone"] == 0, changes["counts"]
    gj = json.loads((out / "changes.geojson").read_text())
    (feat,) = [f for f in gj["features"] if f["properties"]["change"] == "new"]
    lonlat = shapely.geometry.shape(feat["geometry"]).centroid
    from flight_sim.scenario import load_scenario

    e, n = _enu(lonlat.y, lonlat.x, load_scenario(tmp_path / "extra.yaml"))
    assert shapely.Point(e, n).distance(shapely.Point(EXTRA["east_m"], EXTRA["north_m"])) < 3.0, (e, n)
    for name in ("changes.geojson", "compare.html"):
        assert (out / name).is_file()
