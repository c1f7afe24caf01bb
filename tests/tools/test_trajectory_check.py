"""tools.trajectory_check: the figures docs/TELEMETRY.md quotes for the recorded copter, and its command line."""

from __future__ import annotations

import json
from pathlib import Path

from tests.flight_sim.conftest import COPTER_TLOG
from tools.trajectory_check import check, main


def test_the_fit_beats_straight_lines_where_the_copter_turns_fast() -> None:
    out = check(COPTER_TLOG, None, 60.0)
    assert 2.5 < out["attitude_hz"] < 3.0 and 2.5 < out["position_hz"] < 3.0
    every = out["roll_pitch_deg"]
    fast = out["roll_pitch_deg_above_60_dps"]
    assert every["fit"]["n"] == every["linear"]["n"] > 5000 and fast["fit"]["n"] > 100
    # docs/TELEMETRY.md: max 14.2 against 26.2 deg, p90 1.22 against 1.65, fast p90 3.5 against 4.3
    assert every["fit"]["max"] < 0.6 * every["linear"]["max"]
    assert every["fit"]["p90"] < every["linear"]["p90"] and fast["fit"]["p90"] < fast["linear"]["p90"]
    assert out["horizontal_m"]["fit"]["p90"] < out["horizontal_m"]["linear"]["p90"]


def test_command_line_prints_and_writes_json(tmp_path: Path, capsys) -> None:
    assert main([str(COPTER_TLOG), "--json", str(tmp_path / "t.json"), "--fast-dps", "90"]) == 0
    printed = capsys.readouterr().out
    assert "every other sample predicted" in printed and "roll_pitch_deg_above_90_dps" in printed
    assert json.loads((tmp_path / "t.json").read_text())["tlog"] == str(COPTER_TLOG)
