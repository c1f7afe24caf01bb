"""Which ResNet-50 stages carry the classes, for a given backbone: a linear probe per pooled stage.

The head's `model.head_stages: auto` reads conv1+conv2 with a random backbone and conv5 with real
weights. This is the measurement behind that choice, and a way to check it for other weights:
family images (compile/family.py) go through the backbone once; each stage's output is globally
average- and max-pooled; a linear softmax classifier is fitted on each feature set (and on some
combinations) and scored on an in-distribution test set and on the family's held-out looks.

    python -m tools.stage_probe [--size 96] [--train 900] [--weights none|imagenet|FILE] [--json F]

Exit 1 when no feature set reaches --min-heldout on the held-out looks (default 0: report only).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

STAGES = ("conv1", "conv2", "conv3", "conv4", "conv5")
COMBOS = {"conv1+conv2": ("conv1", "conv2"), "conv1-conv3": ("conv1", "conv2", "conv3"), "all": STAGES}


def family_set(n: int, part: str, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n family images, classes in turn, from the training region or the held-out one."""
    from compile.family import family_image
    from compile.synthetic import CLASSES

    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(CLASSES)
    images = np.stack([family_image(CLASSES[c], size, rng, part) for c in labels]).astype(np.float32)  # type: ignore[arg-type]
    return images, labels


def pooled_features(weights: str, size: int, images: list[np.ndarray],
                    calibrate: np.ndarray) -> list[dict[str, np.ndarray]]:
    """Per image set: {"convN_avg"|"convN_max": (n, channels)} from one pass through the backbone."""
    import keras

    from compile.config import ModelConfig
    from compile.model import STAGE_OUTPUT, _backbone, caffe_preprocess_kernel, calibrate_batchnorm

    base = _backbone(ModelConfig(input_size=size, weights=weights), size)
    if weights.strip().lower() == "none":
        calibrate_batchnorm(base, _preprocess(calibrate, caffe_preprocess_kernel()))
    outs = [base.get_layer(STAGE_OUTPUT[s]).output for s in STAGES]
    probe = keras.Model(base.input, outs)
    kernel = caffe_preprocess_kernel()
    result = []
    for x in images:
        feats: dict[str, list[np.ndarray]] = {}
        for i in range(0, len(x), 32):
            maps = probe.predict_on_batch(_preprocess(x[i:i + 32], kernel))
            for stage, fmap in zip(STAGES, maps, strict=True):
                fmap = np.asarray(fmap)
                feats.setdefault(f"{stage}_avg", []).append(fmap.mean(axis=(1, 2)))
                feats.setdefault(f"{stage}_max", []).append(fmap.max(axis=(1, 2)))
        result.append({k: np.concatenate(v) for k, v in feats.items()})
    return result


def _preprocess(x: np.ndarray, kernel: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    k, b = kernel
    return (x @ k[0, 0] + b).astype(np.float32)


def linear_probe(train: tuple[np.ndarray, np.ndarray], tests: dict[str, tuple[np.ndarray, np.ndarray]],
                 epochs: int = 300, l2: float = 1e-3, lr: float = 0.5) -> dict[str, dict[str, float | list[float]]]:
    """Standardise on the training features, fit L2 softmax regression (full-batch gradient descent
    in numpy: convex, deterministic, no framework tracing), score accuracy and per-class recall."""
    x, y = train
    mu, sd = x.mean(0), x.std(0) + 1e-6
    xs = (x - mu) / sd
    n, d = xs.shape
    k = int(y.max()) + 1
    onehot = np.eye(k)[y]
    w, b = np.zeros((d, k)), np.zeros(k)
    for _ in range(epochs):
        z = xs @ w + b
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        g = (p - onehot) / n
        w -= lr * (xs.T @ g + l2 * w)
        b -= lr * g.sum(0)
    scores: dict[str, dict[str, float | list[float]]] = {}
    for name, (tx, ty) in tests.items():
        pred = (((tx - mu) / sd) @ w + b).argmax(1)
        scores[name] = {"accuracy": float((pred == ty).mean()),
                        "recall": [float((pred[ty == c] == c).mean()) for c in range(k)]}
    return scores


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.stage_probe", description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--train", type=int, default=900, help="training images (classes in turn)")
    ap.add_argument("--test", type=int, default=300, help="in-distribution and held-out test images, each")
    ap.add_argument("--weights", default="none", help="none | imagenet | a notop .h5 file")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--min-heldout", type=float, default=0.0, help="exit 1 if the best held-out accuracy is lower")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    t0 = time.monotonic()
    train = family_set(args.train, "train", args.size, args.seed)
    test = family_set(args.test, "train", args.size, args.seed + 1)
    held = family_set(args.test, "heldout", args.size, args.seed + 2)
    print(f"made {args.train + 2 * args.test} family images at {args.size} px in {time.monotonic() - t0:.0f} s",
          flush=True)
    ftr, fte, fho = pooled_features(args.weights, args.size, [train[0], test[0], held[0]], train[0][:64])
    sets = {k: (k,) for k in ftr} | {name: tuple(f"{s}_{p}" for s in st for p in ("avg", "max"))
                                      for name, st in COMBOS.items()}
    rows = {}
    print(f"{'features':14s} {'dim':>5s} {'test':>6s} {'held-out':>8s}  held-out recall (healthy, rust, mildew)")
    for name, keys in sets.items():
        def cat(f: dict[str, np.ndarray], keys: tuple[str, ...] = keys) -> np.ndarray:
            return np.concatenate([f[k] for k in keys], axis=1)

        r = linear_probe((cat(ftr), train[1]), {"test": (cat(fte), test[1]), "heldout": (cat(fho), held[1])})
        rows[name] = {"dim": int(cat(ftr).shape[1])} | r
        rec = ", ".join(f"{v:.2f}" for v in r["heldout"]["recall"])  # type: ignore[union-attr]
        print(f"{name:14s} {rows[name]['dim']:5d} {r['test']['accuracy']:6.3f} {r['heldout']['accuracy']:8.3f}  {rec}",
              flush=True)
    best = max(rows, key=lambda k: rows[k]["heldout"]["accuracy"])
    print(f"best on held-out looks: {best} ({rows[best]['heldout']['accuracy']:.3f}); "
          f"{time.monotonic() - t0:.0f} s in all")
    if args.json:
        args.json.write_text(json.dumps({"size": args.size, "weights": args.weights, "train": args.train,
                                         "test": args.test, "seed": args.seed, "rows": rows}, indent=1))
    if rows[best]["heldout"]["accuracy"] < args.min_heldout:
        print(f"MISS: no feature set reaches {args.min_heldout} on the held-out looks", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
