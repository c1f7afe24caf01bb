"""Classification metrics, the payload's decision rule, and recall-first threshold choice.

Numpy only. A missed diseased patch costs a grower far more than a needless walk to look at a
healthy one, so per-class thresholds are chosen on the VALIDATION split to reach a target disease
recall at the least expected cost, and then reported on the untouched test split.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from payload import bundle as contract

from .synthetic import CLASSES

DISEASES = contract.DISEASES


def decide(scores: np.ndarray, thresholds: dict[str, float]) -> np.ndarray:
    """Predicted class indices under the payload's own decision rule (payload.bundle.decide).

    The build evaluates its thresholds with the function the drone applies them with, so what
    the card promises (recall at thresholds) is what flies.
    """
    return contract.decide(scores, thresholds, CLASSES).label


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n: int = len(CLASSES)) -> np.ndarray:
    """Rows are true classes, columns predicted."""
    m = np.zeros((n, n), dtype=np.int64)
    np.add.at(m, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    return m


def classification_report(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """Accuracy, macro and weighted F1, per-class precision/recall/F1 and the confusion matrix."""
    cm = confusion(y_true, y_pred)
    tp = np.diag(cm).astype(float)
    support = cm.sum(axis=1).astype(float)
    predicted = cm.sum(axis=0).astype(float)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    total = support.sum()
    diseased = np.isin(y_true, [CLASSES.index(d) for d in DISEASES])
    flagged = np.isin(y_pred, [CLASSES.index(d) for d in DISEASES])
    return {
        "n": int(total),
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "macro_f1": float(f1.mean()),
        "weighted_f1": float((f1 * support).sum() / total) if total else 0.0,
        "per_class": {
            c: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                "support": int(support[i])}
            for i, c in enumerate(CLASSES)
        },
        # any disease flagged on a diseased tile (the label may be the other disease)
        "disease_recall": float(flagged[diseased].mean()) if diseased.any() else 0.0,
        "false_alarm_rate": float(flagged[~diseased].mean()) if (~diseased).any() else 0.0,
        "confusion_matrix": cm.tolist(),
    }


def cost_table(y_true: np.ndarray, y_pred: np.ndarray, cost_missed: float, cost_false_alarm: float) -> dict[str, Any]:
    """Dollars lost to missed diseased tiles and to needless inspections of healthy ones."""
    diseased = np.isin(y_true, [CLASSES.index(d) for d in DISEASES])
    flagged = np.isin(y_pred, [CLASSES.index(d) for d in DISEASES])
    missed = int((diseased & ~flagged).sum())
    false_alarms = int((~diseased & flagged).sum())
    return {
        "missed_disease": missed,
        "false_alarms": false_alarms,
        "cost_missed_each": cost_missed,
        "cost_false_alarm_each": cost_false_alarm,
        "total_cost": missed * cost_missed + false_alarms * cost_false_alarm,
        "cost_per_tile": (missed * cost_missed + false_alarms * cost_false_alarm) / max(len(y_true), 1),
    }


THRESHOLD_GRID = np.round(np.linspace(0.01, 0.99, 99), 2)


def threshold_curve(scores: np.ndarray, y_true: np.ndarray, cls: str, grid: np.ndarray = THRESHOLD_GRID):
    """Recall, precision, missed and false alarms of `score[cls] >= t` as a one-vs-rest test."""
    j = CLASSES.index(cls)
    pos = np.asarray(y_true) == j
    # compared in the contract's precision, exactly as decide() will compare in flight
    s = np.asarray(scores, dtype=contract.SCORE_DTYPE)[:, j]
    hit = s[None, :] >= np.asarray(grid, dtype=contract.SCORE_DTYPE)[:, None]
    tp = (hit & pos).sum(axis=1)
    fp = (hit & ~pos).sum(axis=1)
    fn = pos.sum() - tp
    recall = tp / max(pos.sum(), 1)
    precision = np.divide(tp, tp + fp, out=np.ones(len(grid)), where=(tp + fp) > 0)
    return {"threshold": grid, "recall": recall, "precision": precision, "fn": fn, "fp": fp}


def choose_thresholds(
    scores: np.ndarray, y_true: np.ndarray, target_recall: float, cost_missed: float, cost_false_alarm: float,
    min_threshold: float = 0.0,
) -> dict[str, Any]:
    """Per disease class: among thresholds reaching the target recall, the one of least expected cost.

    Ties go to the LOWEST threshold: equal validation cost means the same misses and alarms, and
    the lower threshold keeps the widest recall margin for field images that differ from the
    validation set (a missed patch costs ~3,750 false alarms). If no threshold reaches
    the target on validation, the lowest-cost one of the highest reachable recall is taken and
    the result says so, rather than silently shipping a threshold that misses the target.
    Thresholds below `min_threshold` are never chosen (evaluate.min_threshold: one hopeless
    validation image must not set a threshold that flags near-certain healthy tiles in the field).
    """
    grid = THRESHOLD_GRID[THRESHOLD_GRID >= min_threshold - 1e-12]
    chosen: dict[str, float] = {}
    detail: dict[str, Any] = {}
    for cls in DISEASES:
        c = threshold_curve(scores, y_true, cls, grid)
        cost = c["fn"] * cost_missed + c["fp"] * cost_false_alarm
        ok = c["recall"] >= target_recall - 1e-12
        reached = bool(ok.any())
        pool = ok if reached else c["recall"] >= c["recall"].max() - 1e-12
        idx = np.flatnonzero(pool)
        best = idx[np.lexsort((c["threshold"][idx], cost[idx]))[0]]
        chosen[cls] = float(c["threshold"][best])
        detail[cls] = {
            "threshold": float(c["threshold"][best]),
            "val_recall": float(c["recall"][best]),
            "val_precision": float(c["precision"][best]),
            "val_expected_cost": float(cost[best]),
            "target_reached": reached,
        }
    return {"thresholds": chosen, "detail": detail, "target_recall": target_recall,
            "cost_missed_disease": cost_missed, "cost_false_alarm": cost_false_alarm, "min_threshold": min_threshold}
