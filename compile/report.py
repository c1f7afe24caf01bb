"""Pictures of a build for the report folder (matplotlib, headless Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .metrics import DISEASES, threshold_curve
from .synthetic import CLASSES


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def confusion_png(cm: list[list[int]], title: str, path: Path) -> Path:
    """Confusion matrix with counts in the cells."""
    plt = _plt()
    m = np.asarray(cm)
    fig, ax = plt.subplots(figsize=(4.6, 4))
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(len(CLASSES)), CLASSES, rotation=30, ha="right")
    ax.set_yticks(range(len(CLASSES)), CLASSES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, str(m[i, j]), ha="center", va="center", color="white" if m[i, j] > m.max() / 2 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def training_png(history: dict[str, list[float]], path: Path) -> Path:
    """Loss and accuracy per epoch, training and validation."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, key in zip(axes, ("loss", "accuracy"), strict=True):
        for prefix, style in (("", "-"), ("val_", "--")):
            vals = history.get(prefix + key)
            if vals:
                ax.plot(range(1, len(vals) + 1), vals, style, marker="o", label=(prefix or "train_") + key)
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def threshold_png(scores: np.ndarray, y_true: np.ndarray, chosen: dict[str, Any], target: float, path: Path) -> Path:
    """Recall and precision against the threshold per disease class (validation), chosen point marked."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(DISEASES), figsize=(5 * len(DISEASES), 3.6))
    for ax, cls in zip(np.atleast_1d(axes), DISEASES, strict=True):
        c = threshold_curve(scores, y_true, cls)
        ax.plot(c["threshold"], c["recall"], label="recall")
        ax.plot(c["threshold"], c["precision"], label="precision")
        ax.axhline(target, color="grey", lw=0.8, ls=":", label=f"target recall {target}")
        thr = chosen["thresholds"][cls]
        ax.axvline(thr, color="red", lw=1, label=f"chosen {thr:.2f}")
        ax.set_xlabel(f"threshold on score[{cls}]")
        ax.set_ylim(0, 1.02)
        ax.set_title(f"{cls} (validation)")
        ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
