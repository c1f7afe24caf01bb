"""The stage probe behind `model.head_stages: auto` runs end to end and fails on a missed floor."""

from __future__ import annotations

import json
from pathlib import Path

from tools import stage_probe


def test_probe_reports_every_stage_and_exits_1_below_the_floor(tmp_path: Path) -> None:
    out = tmp_path / "probe.json"
    rc = stage_probe.main(["--size", "32", "--train", "24", "--test", "12", "--json", str(out),
                           "--min-heldout", "1.01"])  # no probe can beat 1.0: the floor must fail
    assert rc == 1
    rows = json.loads(out.read_text())["rows"]
    assert {f"conv{i}_{p}" for i in range(1, 6) for p in ("avg", "max")} <= set(rows)
    assert rows["conv2_avg"]["dim"] == 256 and rows["conv1+conv2"]["dim"] == 2 * (64 + 256)
    for r in rows.values():
        assert 0.0 <= r["heldout"]["accuracy"] <= 1.0 and len(r["test"]["recall"]) == 3
