"""ROC curves and AUC in numpy, against answers worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from compile.roc import auc, auc_summary, per_class_roc, roc_auc, roc_curve


def test_roc_curve_of_a_worked_example() -> None:
    # negatives 0.1, 0.4; positives 0.35, 0.8. Thresholds from the top: 0.8 catches 1 of 2 positives,
    # 0.4 adds a negative, 0.35 the second positive, 0.1 the second negative.
    fpr, tpr, thr = roc_curve(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    assert fpr.tolist() == [0.0, 0.0, 0.5, 0.5, 1.0]
    assert tpr.tolist() == [0.0, 0.5, 0.5, 1.0, 1.0]
    assert thr[0] == np.inf and thr[1:].tolist() == [0.8, 0.4, 0.35, 0.1]
    # area: the step at fpr 0.5 from tpr 0.5 to 1 -> 0.5 * 0.5 + 0.5 * 1 = 0.75 (3 of 4 pairs ordered)
    assert auc(fpr, tpr) == pytest.approx(0.75)


def test_ties_count_half_and_extremes() -> None:
    assert roc_auc(np.array([0, 1]), np.array([0.5, 0.5])) == pytest.approx(0.5)
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.3, 0.9])) == pytest.approx(1.0)
    assert roc_auc(np.array([1, 1, 0, 0]), np.array([0.1, 0.2, 0.3, 0.9])) == pytest.approx(0.0)
    assert roc_auc(np.array([1, 1]), np.array([0.1, 0.2])) is None  # no negatives: undefined
    # one tie across classes among 2 x 2 pairs: (1 + 1 + 0.5 + 0) / 4
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.2, 0.6, 0.6, 0.9])) == pytest.approx(0.875)


def test_auc_equals_the_pairwise_probability() -> None:
    """AUC = P(score of a random positive > a random negative) + P(tie) / 2 (Mann-Whitney)."""
    rng = np.random.default_rng(7)
    pos = rng.random(300) < 0.3
    s = np.round(rng.random(300), 1) + 0.15 * pos  # coarse scores: many ties
    p, n = s[pos][:, None], s[~pos][None, :]
    expected = float(np.mean((p > n) + 0.5 * (p == n)))
    assert roc_auc(pos, s) == pytest.approx(expected, abs=1e-12)


def test_per_class_one_vs_rest() -> None:
    y = np.array([0, 0, 1, 1, 2, 2])
    scores = np.array([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1],
                       [0.5, 0.4, 0.1], [0.1, 0.1, 0.8], [0.3, 0.2, 0.5]])
    curves = per_class_roc(scores, y)
    assert set(curves) == {"healthy", "rust", "powdery_mildew"}
    # healthy: positives 0.8, 0.6 vs negatives 0.2, 0.5, 0.1, 0.3 -> all 8 pairs ordered
    assert curves["healthy"]["auc"] == pytest.approx(1.0)
    # rust: positives 0.7, 0.4 vs 0.1, 0.3, 0.1, 0.2 -> 8 of 8
    assert curves["rust"]["auc"] == pytest.approx(1.0)
    assert curves["rust"]["positives"] == 2 and curves["rust"]["negatives"] == 4
    # swap two scores so one healthy leaf scores below a rust leaf on "healthy": 7 of 8 pairs
    scores[1, 0] = 0.45
    assert per_class_roc(scores, y)["healthy"]["auc"] == pytest.approx(7 / 8)
    summary = auc_summary(per_class_roc(scores, y))
    assert summary["macro"] == pytest.approx((7 / 8 + 1 + 1) / 3)
