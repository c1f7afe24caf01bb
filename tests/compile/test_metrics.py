"""Decision rule, metrics and recall-first threshold choice on hand-made scores."""

from __future__ import annotations

import numpy as np
import pytest

from compile.metrics import choose_thresholds, classification_report, confusion, cost_table, decide

H, R, M = 0, 1, 2


def test_decide_follows_the_payload_rule() -> None:
    scores = np.array([
        [0.70, 0.20, 0.10],  # rust 0.20 >= 0.15: flagged rust although healthy is the argmax
        [0.70, 0.10, 0.20],  # mildew 0.20 < 0.25, rust 0.10 < 0.15: argmax healthy
        [0.40, 0.30, 0.30],  # both flagged: the higher-scoring flagged disease (tie -> first)
        [0.10, 0.16, 0.74],  # both flagged, mildew higher
    ])
    assert decide(scores, {"rust": 0.15, "powdery_mildew": 0.25}).tolist() == [R, H, R, M]
    assert decide(scores, {"rust": 0.99, "powdery_mildew": 0.99}).tolist() == [H, H, H, M]


def test_report_counts() -> None:
    y = np.array([H, H, R, R, M, M])
    p = np.array([H, R, R, R, M, H])
    rep = classification_report(y, p)
    assert rep["accuracy"] == pytest.approx(4 / 6)
    assert rep["per_class"]["rust"]["precision"] == pytest.approx(2 / 3)
    assert rep["per_class"]["powdery_mildew"]["recall"] == pytest.approx(0.5)
    assert rep["disease_recall"] == pytest.approx(3 / 4)  # one mildew called healthy
    assert rep["false_alarm_rate"] == pytest.approx(0.5)
    assert confusion(y, p).tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    cost = cost_table(y, p, 75000, 20)
    assert (cost["missed_disease"], cost["false_alarms"], cost["total_cost"]) == (1, 1, 75020)


def test_thresholds_reach_target_recall_at_least_cost() -> None:
    rng = np.random.default_rng(0)
    y = np.repeat([H, R, M], 200)
    scores = rng.dirichlet([1, 1, 1], size=y.size)
    for j in (R, M):  # diseased tiles score higher on their class, with overlap
        scores[y == j, j] += rng.uniform(0.05, 1.0, (y == j).sum())
    scores /= scores.sum(axis=1, keepdims=True)
    out = choose_thresholds(scores, y, 0.99, 75000, 20)
    for cls, j in (("rust", R), ("powdery_mildew", M)):
        t = out["thresholds"][cls]
        assert np.mean(scores[y == j, j] >= t) >= 0.99
        assert out["detail"][cls]["target_reached"] is True
        # brute force: no threshold on the grid that reaches the target costs less
        costs = []
        for g in np.round(np.linspace(0.01, 0.99, 99), 2):
            hit = scores[:, j] >= g
            if np.mean(hit[y == j]) >= 0.99:
                costs.append(75000 * np.sum(~hit[y == j]) + 20 * np.sum(hit[y != j]))
        assert out["detail"][cls]["val_expected_cost"] == min(costs)


def test_cheap_misses_raise_the_threshold() -> None:
    y = np.array([R] * 10 + [H] * 10)
    s = np.zeros((20, 3))
    s[:, R] = np.r_[np.linspace(0.3, 0.9, 10), np.linspace(0.05, 0.5, 10)]
    s[:, H] = 1 - s[:, R]
    costly_miss = choose_thresholds(s, y, 0.5, 75000, 20)["thresholds"]["rust"]
    cheap_miss = choose_thresholds(s, y, 0.5, 1, 1000)["thresholds"]["rust"]
    assert cheap_miss > costly_miss


def test_unreachable_target_is_reported() -> None:
    y = np.array([R, R, H])
    s = np.array([[0.0, 0.0, 1.0], [0.1, 0.9, 0.0], [0.9, 0.1, 0.0]])
    out = choose_thresholds(s, y, 0.99, 75000, 20)
    assert out["detail"]["rust"]["target_reached"] is False
    assert out["detail"]["rust"]["val_recall"] == pytest.approx(0.5)


def test_ties_keep_the_widest_recall_margin() -> None:
    y = np.array([R] * 5 + [H] * 5)
    s = np.zeros((10, 3))
    s[:5, R] = 0.9  # perfectly separated: every threshold in (0.1, 0.9] costs nothing
    s[5:, R] = 0.1
    s[:, H] = 1 - s[:, R]
    assert choose_thresholds(s, y, 0.99, 75000, 20)["thresholds"]["rust"] == pytest.approx(0.11)


def test_min_threshold_floors_a_threshold_one_hard_image_would_drag_down() -> None:
    # one hard diseased validation image at 0.012, below every healthy tile: recall 1.0 needs t = 0.01
    y = np.array([M] * 10 + [H] * 10)
    s = np.zeros((20, 3))
    s[:10, M] = np.r_[0.012, np.full(9, 0.9)]
    s[10:, M] = np.linspace(0.02, 0.08, 10)  # healthy tiles the model gives a little mildew
    s[:, H] = 1 - s[:, M]
    unfloored = choose_thresholds(s, y, 0.99, 75000, 20)
    assert unfloored["thresholds"]["powdery_mildew"] == pytest.approx(0.01)
    floored = choose_thresholds(s, y, 0.99, 75000, 20, min_threshold=0.1)
    assert floored["thresholds"]["powdery_mildew"] == pytest.approx(0.1)
    # the floor costs that one image, and the result says the target was not reached
    assert unfloored["detail"]["powdery_mildew"]["target_reached"] is True
    assert floored["detail"]["powdery_mildew"]["target_reached"] is False
    assert floored["detail"]["powdery_mildew"]["val_recall"] == pytest.approx(0.9)
    assert floored["min_threshold"] == 0.1
