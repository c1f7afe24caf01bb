"""tools/transfer_probe.py: its rates, blur and table on known inputs; a small run end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tools.transfer_probe import CELLS, ProbeError, _main, blur_tiles, cell_rate, markdown


def test_rates_count_the_right_calls() -> None:
    calls = np.array([0, 1, 2, 2])  # healthy, rust, mildew, mildew
    assert cell_rate("healthy", calls) == pytest.approx(0.75)  # three of four healthy tiles flagged
    assert cell_rate("rust", calls) == pytest.approx(0.25)
    assert cell_rate("powdery_mildew", calls) == pytest.approx(0.5)
    with pytest.raises(ProbeError, match="--frames"):
        cell_rate("rust", np.array([], int))


def test_blur_removes_fine_texture_and_keeps_the_mean() -> None:
    tiles = np.zeros((1, 32, 32, 3), np.uint8)
    tiles[0, :, ::2] = 200  # one-pixel stripes
    out = blur_tiles(tiles, 3.0)
    assert out.shape == tiles.shape and out.dtype == np.uint8
    assert out.std() < 0.1 * tiles.std()
    assert abs(float(out.mean()) - float(tiles.mean())) < 2.0


def test_table_has_a_row_per_resolution() -> None:
    rows = [{"gsd_mm": g, "class": c, "stage": s, "tiles": 12, "rendered": 0.5, "blurred": 0.25}
            for g in (4.0, 16.0) for c, s in CELLS]
    md = markdown({"seed": 9, "generator_accuracy": 0.9, "blur_px": 3.0, "rows": rows})
    assert "seed 9" in md and "| 4 | 0.50 (0.25) |" in md and "| 16 |" in md


def test_bad_options_are_named(tmp_path) -> None:
    with pytest.raises(ProbeError, match="--per-class"):
        _main(["--out", str(tmp_path), "--per-class", "2"])


def test_small_run_writes_its_table(tmp_path, capsys) -> None:
    assert _main(["--out", str(tmp_path), "--per-class", "12", "--epochs", "1", "--gsd", "16", "--frames", "1",
                  "--by-crop", "--train-blurred", "--seed", "5"]) == 0
    res = json.loads((tmp_path / "transfer_probe.json").read_text())
    assert res["seed"] == 5 and len(res["rows"]) == len(CELLS) and res["train_blurred"] is True
    assert all(0.0 <= r[k] <= 1.0 for r in res["rows"] for k in ("rendered", "blurred"))
    assert all(r["tiles"] == 12 for r in res["rows"])  # one frame of the 3 x 4 grid per cell
    by = res["healthy_by_crop"]
    assert [r["crop"] for r in by] == ["wheat", "soybean", "cucurbit", "grapevine"]
    assert all(r["tiles"] == 12 and 0.0 <= r["rendered"] <= 1.0 for r in by)
    out = capsys.readouterr().out
    assert "seed 5" in out and "per crop" in out and "| 16 | " in out
