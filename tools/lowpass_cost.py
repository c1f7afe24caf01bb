"""What the small backbone's Gaussian low-pass costs in int8 on the CPU: one (k, k) depthwise op or two 1-D passes.

The small backbone (compile/model.py `small_cnn`) blurs its input with a fixed Gaussian. A Gaussian
is separable: a (k, 1) depthwise pass then a (1, k) one compute exactly the (k, k) kernel. This builds
the front of the small backbone (0-255 scaling, the low-pass in either form, its first convolution,
pooling and a dense layer) at the quick profile's size, converts each to full int8 as the build does
(compile/quantize.py) and times `Int8Runner.scores` per tile in ai-edge-litert, the CPU runtime of
the build's int8 evaluation and the payload's CPU fallback. It also checks that the two forms agree.

    python -m tools.lowpass_cost [--size 96] [--sigma 1.5] [--runs 100] [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FORMS = ("none", "square", "separable")


def front(form: str, size: int, sigma: float) -> Any:
    """The small backbone's front with the low-pass as `form`: none, one square op, or two 1-D passes."""
    import keras
    from keras import layers

    from compile.model import gaussian_kernel, gaussian_kernel_1d

    inp = keras.Input((size, size, 3), batch_size=1)
    scale = layers.Conv2D(3, 1)
    x = scale(inp)
    scale.set_weights([np.eye(3, dtype=np.float32)[None, None] / np.float32(127.5), -np.ones(3, np.float32)])
    if form == "square":
        k2 = gaussian_kernel(sigma)
        dw = layers.DepthwiseConv2D(k2.shape[0], padding="same", use_bias=False)
        x = dw(x)
        dw.set_weights([np.repeat(k2[:, :, None, None], 3, axis=2)])
    elif form == "separable":
        g = gaussian_kernel_1d(sigma)
        for shape in ((g.size, 1), (1, g.size)):
            dw = layers.DepthwiseConv2D(shape, padding="same", use_bias=False)
            x = dw(x)
            dw.set_weights([np.broadcast_to(g.reshape(*shape, 1, 1), (*shape, 3, 1)).copy()])
    # the same weights after the low-pass in every form (numpy-drawn: the forms draw Keras' seeds differently)
    w = np.random.default_rng(2)
    mix = layers.Conv2D(24, 1, activation="relu")
    x = mix(x)
    mix.set_weights([w.normal(0, 0.5, (1, 1, 3, 24)).astype(np.float32), np.zeros(24, np.float32)])
    x = layers.GlobalAveragePooling2D()(x)
    dense = layers.Dense(3, activation="softmax")
    out = dense(x)
    dense.set_weights([w.normal(0, 0.5, (24, 3)).astype(np.float32), np.zeros(3, np.float32)])
    return keras.Model(inp, out)


def measure(size: int, sigma: float, runs: int) -> dict[str, Any]:
    """Per form: ms per int8 tile (median of `runs`); and the float outputs' largest square/separable gap."""
    from compile.quantize import Int8Runner, convert_int8

    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (16, size, size, 3)).astype(np.uint8)
    out: dict[str, Any] = {"size": size, "sigma_px": sigma, "runs": runs, "ms_per_tile": {}}
    floats = {}
    with tempfile.TemporaryDirectory() as tmp:
        for form in FORMS:
            model = front(form, size, sigma)
            floats[form] = np.asarray(model.predict_on_batch(images[:4].astype(np.float32)))
            path = convert_int8(model, (im for im in images), Path(tmp) / f"{form}.tflite")
            runner = Int8Runner(path)
            runner.scores(images[0])
            times = []
            for i in range(runs):
                t0 = time.perf_counter()
                runner.scores(images[i % len(images)])
                times.append(time.perf_counter() - t0)
            out["ms_per_tile"][form] = round(1000.0 * float(np.median(times)), 3)
    out["float_max_abs_diff_square_vs_separable"] = float(np.abs(floats["square"] - floats["separable"]).max())
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.lowpass_cost", description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=96, help="model input px (the quick profile's 96)")
    ap.add_argument("--sigma", type=float, default=1.5, help="Gaussian sigma in model px (the quick profile's 1.5)")
    ap.add_argument("--runs", type=int, default=100, help="timed tiles per form")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    res = measure(args.size, args.sigma, args.runs)
    for form, ms in res["ms_per_tile"].items():
        print(f"{form:10s} {ms:8.2f} ms per int8 tile")
    print(f"float outputs, square vs separable: largest difference {res['float_max_abs_diff_square_vs_separable']:.2e}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
