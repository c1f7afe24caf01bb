"""The sensor model's calibration against hand-worked counts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from compile.sensor import calibrate_sensor_model, call_counts, counts_matrix, llr_table
from payload.geo.sensor import sensor_model_from_dict

CLASSES = ["healthy", "rust", "powdery_mildew"]
DIS = ["rust", "powdery_mildew"]
THR = {"rust": 0.5, "powdery_mildew": 0.5}


def _scores(calls: list[int]) -> np.ndarray:
    s = np.full((len(calls), 3), 0.1, dtype=np.float32)
    for i, c in enumerate(calls):
        s[i, c] = 0.8
    return s


def test_counts_use_the_cards_decision_rule() -> None:
    # healthy x4 all called healthy; rust x4: 3 rust, 1 healthy; mildew x4: 2 mildew, 2 rust
    y = np.array([0] * 4 + [1] * 4 + [2] * 4)
    calls = [0, 0, 0, 0, 1, 1, 1, 0, 2, 2, 1, 1]
    n = call_counts(_scores(calls), y, THR, CLASSES, "healthy", DIS)
    assert n.tolist() == [[4, 0, 0], [1, 3, 0], [0, 2, 2]]
    # a disease score below its threshold is no call (the healthy column), whatever the argmax
    low = np.array([[0.3, 0.45, 0.25]], dtype=np.float32)
    assert call_counts(low, np.array([1]), THR, CLASSES, "healthy", DIS).tolist()[1] == [1, 0, 0]


def test_llr_by_hand() -> None:
    y = np.array([0] * 4 + [1] * 4 + [2] * 4)
    calls = [0, 0, 0, 0, 1, 1, 1, 0, 2, 2, 1, 1]
    block = calibrate_sensor_model(_scores(calls), y, THR, CLASSES, "healthy", DIS, hit_share=0.5, miss_share=0.25,
                                   cap=10.0)
    # add-one: P(rust call | rust) = 4/7, P(rust call | healthy) = 1/7 -> 0.5 * log 4
    assert block["llr"]["rust"][0] == pytest.approx(0.5 * math.log(4), abs=1e-5)
    # P(rust call | mildew) = 3/7 -> 0.5 * log 3: mildew ground draws rust calls, so a rust call says a little mildew
    assert block["llr"]["rust"][1] == pytest.approx(0.5 * math.log(3), abs=1e-5)
    # no call: P(healthy | rust) = 2/7 vs P(healthy | healthy) = 5/7, at the miss share
    assert block["llr"]["healthy"][0] == pytest.approx(0.25 * math.log(2 / 5), abs=1e-5)
    assert (block["hit_share"], block["miss_share"]) == (0.5, 0.25)
    assert block["images"] == 12 and block["counts"]["powdery_mildew"]["rust"] == 2
    capped = calibrate_sensor_model(_scores(calls), y, THR, CLASSES, "healthy", DIS, hit_share=1.0, miss_share=1.0,
                                    cap=0.5)
    assert max(abs(v) for row in capped["llr"].values() for v in row) == pytest.approx(0.5)
    # and the payload reads the block back
    model = sensor_model_from_dict(block, "healthy", DIS)
    assert model.source == "validation" and list(model.evidence("rust", True)) == block["llr"]["rust"]


def test_table_from_the_cards_counts_equals_the_calibration() -> None:
    y = np.array([0] * 4 + [1] * 4 + [2] * 4)
    calls = [0, 0, 0, 0, 1, 1, 1, 0, 2, 2, 1, 1]
    block = calibrate_sensor_model(_scores(calls), y, THR, CLASSES, "healthy", DIS)
    n = counts_matrix(block, CLASSES)
    assert n.tolist() == [[4, 0, 0], [1, 3, 0], [0, 2, 2]]
    assert llr_table(n, CLASSES, "healthy", DIS) == block["llr"]
    # a healthy call clears every cell under it; a disease call speaks for a share of them
    assert abs(block["llr"]["healthy"][0]) > abs(block["llr"]["rust"][0]) * 0.5
    with pytest.raises(ValueError, match="counts"):
        counts_matrix({"llr": block["llr"]}, CLASSES)
