"""The whole chain on one small field: simulator, the real `payload run` process, scoring, report.

The model here is the session's quick bundle (barely trained), so this checks that every link of
the chain works and reports honestly, not how well the model finds disease: `make demo` and the
closing notes carry the quality figures.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tools.mission.run import MissionPlan, run_mission

ROOT = Path(__file__).resolve().parents[2]


def small_scenario(tmp_path: Path) -> Path:
    s = yaml.safe_load((ROOT / "configs" / "scenarios" / "default.yaml").read_text())
    s["field"].update(width_m=40, height_m=20)
    s["patches"] = [{"class": "rust", "east_m": 20, "north_m": 10, "radius_m": 6}]
    s["flight"].update(altitude_m=20, line_spacing_m=15, margin_m=5)
    p = tmp_path / "small.yaml"
    p.write_text(yaml.safe_dump(s))
    return p


def test_mission_flies_the_real_payload_and_reports(tmp_path: Path, quick_bundle) -> None:
    out = tmp_path / "mission"
    report = run_mission(MissionPlan(small_scenario(tmp_path), out, quick_bundle.path))
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk == json.loads(json.dumps(report))
    for key in ("patches_total", "patches_found", "false_hotspots", "centroid_error_m_median",
                "centroid_error_m_p95", "per_class", "frames_processed", "frames_dropped", "backend"):
        assert key in report
    assert report["patches_total"] == 1
    assert report["backend"].startswith("cpu")
    assert report["frames_processed"] > 20
    # the payload wrote the product's layers, and the map picture exists
    for name in ("detections.jsonl", "payload.yaml", "run_stats.json", "map.png", "payload.log"):
        assert (out / name).is_file(), name
    log = (out / "payload.log").read_text()
    assert "Edge TPU" in log or "edgetpu" in log  # says why it fell back to the CPU
    assert (out / "map.png").read_bytes()[:4] == b"\x89PNG"
