"""The low-pass cost tool runs, and its two forms of the Gaussian compute the same thing."""

from __future__ import annotations

import json
from pathlib import Path

from tools import lowpass_cost


def test_square_and_separable_lowpass_agree_and_are_timed(tmp_path: Path) -> None:
    out = tmp_path / "cost.json"
    assert lowpass_cost.main(["--size", "32", "--runs", "3", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert set(res["ms_per_tile"]) == {"none", "square", "separable"}
    assert all(ms > 0 for ms in res["ms_per_tile"].values())
    assert res["float_max_abs_diff_square_vs_separable"] < 1e-5  # a Gaussian is separable, padding included
