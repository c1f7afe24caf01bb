"""tools.altitude_figure: the working height is the camera geometry's, and the figure is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from payload.errors import UserError
from tools.altitude_figure import _main, working_height_m


def test_working_height_gives_the_resolution_at_the_model_input() -> None:
    # f = 526 px: at h metres a frame pixel is h / f metres; a 160 px tile resized to 96 px is 160/96 of that
    h = working_height_m(20.0, 526.0, 160.0, 96)
    assert h / 526.0 * 1000.0 * 160.0 / 96.0 == pytest.approx(20.0)


def test_figure_is_written_with_three_heights(tmp_path: Path, capsys) -> None:
    out = tmp_path / "alt.png"
    assert _main(["--gsd-mm", "16", "--out", str(out)]) == 0
    assert out.stat().st_size > 10_000
    printed = capsys.readouterr().out
    heights = [float(x) for x in printed.split("heights ")[1].split(" m")[0].split(", ")]
    # printed to 0.1 m, so the ratios hold to the rounding
    assert heights[1] == pytest.approx(2 * heights[0], abs=0.15)
    assert heights[2] == pytest.approx(4 * heights[1], abs=0.3)


def test_no_resolution_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="give --gsd-mm"):
        _main(["--out", str(tmp_path / "x.png")])
