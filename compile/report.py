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


def roc_png(curves: dict[str, dict[str, Any]], path: Path, title: str = "test split, one class vs the rest") -> Path:
    """ROC curve per class, one panel per class, one line per model (e.g. float and int8), AUC in the legend.

    `curves` maps a model name to compile.roc.per_class_roc's result for it.
    """
    plt = _plt()
    fig, axes = plt.subplots(1, len(CLASSES), figsize=(4.2 * len(CLASSES), 4))
    for ax, cls in zip(np.atleast_1d(axes), CLASSES, strict=True):
        for (name, per_class), style in zip(curves.items(), ("-", "--", ":", "-."), strict=False):
            c = per_class[cls]
            a = "n/a" if c["auc"] is None else f"{c['auc']:.4f}"
            ax.plot(c["fpr"], c["tpr"], style, lw=1.6, label=f"{name}: AUC {a}")
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
        ax.set_xlim(-0.01, 1.01)
        ax.set_ylim(-0.01, 1.01)
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_title(f"{cls} vs rest")
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(f"ROC, {title}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def feature_maps_png(images: list[np.ndarray], names: list[str], maps: np.ndarray, layer: str, path: Path,
                     channels: int = 4) -> Path:
    """One row per leaf: the image, the channel mean of a residual stage's output, and a few channels.

    The channels shown are the ones whose mean activation differs most between the leaves (the
    variance across rows of the per-image channel means), i.e. the ones that tell these classes
    apart; all panels of a column share one colour scale so rows compare directly.
    """
    plt = _plt()
    maps = np.asarray(maps, dtype=np.float32)  # (n, h, w, c)
    means = maps.mean(axis=(1, 2))  # (n, c)
    picked = np.argsort(-means.var(axis=0), kind="stable")[:channels]
    cols = 2 + len(picked)
    fig, axes = plt.subplots(len(images), cols, figsize=(2.1 * cols, 2.2 * len(images)), squeeze=False)
    chan_mean = maps.mean(axis=3)
    for i, (img, name) in enumerate(zip(images, names, strict=True)):
        row = axes[i]
        row[0].imshow(img)
        row[0].set_title(name, fontsize=9)
        row[1].imshow(chan_mean[i], cmap="viridis", vmin=chan_mean.min(), vmax=chan_mean.max())
        row[1].set_title("mean of all channels", fontsize=8)
        for k, ch in enumerate(picked):
            m = maps[..., ch]
            row[2 + k].imshow(m[i], cmap="magma", vmin=m.min(), vmax=m.max())
            row[2 + k].set_title(f"channel {ch}", fontsize=8)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"feature maps: output of {layer} ({maps.shape[1]}x{maps.shape[2]}x{maps.shape[3]}), one test "
                 "leaf per class", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
