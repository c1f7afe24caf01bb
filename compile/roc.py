"""ROC curves and their area, one class against the rest, in numpy (no scikit-learn on these machines).

The thresholds the payload uses are one point on each curve; the curve and its area say how
well the scores separate a class at every threshold, so two models (float and int8, or two
builds) can be compared independently of where the thresholds were put.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .synthetic import CLASSES


def roc_curve(positive: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False and true positive rates of `scores >= t` for every distinct score t, highest first.

    Starts at (0, 0) with t = +inf. Tied scores move in one step (a diagonal segment), so ties
    count half, as in the Mann-Whitney statistic the area equals. A class with no positives (or
    no negatives) gives a rate of 0 throughout for the missing side.
    """
    pos = np.asarray(positive, dtype=bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if pos.shape != s.shape:
        raise ValueError(f"positive and scores differ in length ({pos.size} vs {s.size})")
    order = np.argsort(-s, kind="mergesort")
    s, pos = s[order], pos[order]
    last_of_run = np.r_[np.flatnonzero(np.diff(s) != 0), s.size - 1] if s.size else np.array([], dtype=int)
    tp = np.cumsum(pos)[last_of_run]
    fp = np.cumsum(~pos)[last_of_run]
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    tpr = np.r_[0.0, tp / n_pos if n_pos else np.zeros(tp.size)]
    fpr = np.r_[0.0, fp / n_neg if n_neg else np.zeros(fp.size)]
    thresholds = np.r_[np.inf, s[last_of_run]]
    return fpr, tpr, thresholds


def auc(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Area under a curve by the trapezoid rule (fpr ascending, as roc_curve gives it)."""
    x, y = np.asarray(fpr, dtype=np.float64), np.asarray(tpr, dtype=np.float64)
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))


def roc_auc(positive: np.ndarray, scores: np.ndarray) -> float | None:
    """One-vs-rest ROC AUC; None when a side is empty (the area is undefined)."""
    pos = np.asarray(positive, dtype=bool)
    if pos.all() or not pos.any():
        return None
    return auc(*roc_curve(pos, scores)[:2])


def per_class_roc(scores: np.ndarray, y_true: np.ndarray, max_points: int = 400) -> dict[str, Any]:
    """For each class (one vs rest): its AUC and its curve (thinned to about `max_points` points)."""
    scores = np.asarray(scores, dtype=np.float64)
    y = np.asarray(y_true)
    out: dict[str, Any] = {}
    for j, cls in enumerate(CLASSES):
        pos = y == j
        fpr, tpr, thr = roc_curve(pos, scores[:, j])
        keep = np.unique(np.r_[np.linspace(0, fpr.size - 1, min(max_points, fpr.size)).astype(int), fpr.size - 1])
        out[cls] = {"auc": roc_auc(pos, scores[:, j]), "fpr": fpr[keep].tolist(), "tpr": tpr[keep].tolist(),
                    "positives": int(pos.sum()), "negatives": int((~pos).sum())}
    return out


def auc_summary(curves: dict[str, Any]) -> dict[str, float | None]:
    """Per-class AUCs plus their unweighted mean (macro) over the classes where it is defined."""
    per = {cls: c["auc"] for cls, c in curves.items()}
    defined = [v for v in per.values() if v is not None]
    return per | {"macro": float(np.mean(defined)) if defined else None}
