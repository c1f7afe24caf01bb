"""Build a tiny model bundle in the CONTRACTS format (section 1) for the payload tests.

A real quick bundle (a small CNN) takes ~2 minutes to build; the payload tests only need a model
with the same interface (uint8 RGB [1,H,W,3] in, uint8 [1,C] softmax out, full-int8 ops), so this
builds a few conv layers at 32x32 with TensorFlow (tests may import TF; payload/ never does).

The weights are random but the model is made to react to colour: a frame that is mostly red gets a
different top class from a mostly green one often enough for the tests that need distinct labels.

Run directly to write a bundle: `python -m tests.payload.tinymodel OUT_DIR`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np

CLASSES = ("healthy", "rust", "powdery_mildew")
SIZE = 32


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build_tflite(size: int = SIZE, n_classes: int = len(CLASSES), *, float_input: bool = False,
                 float_output: bool = False, quantized: bool = True, batch_size: int | None = None) -> bytes:
    """Return a full-int8 TFLite classifier (uint8 in/out unless `float_input`/`float_output`).

    `quantized=False` gives the plain float32 conversion: the model edgetpu_compiler refuses;
    `batch_size=1` fixes the batch dimension, as the Edge TPU needs (the default leaves it dynamic).
    """
    import tensorflow as tf

    tf.random.set_seed(0)
    rng = np.random.default_rng(0)
    inputs = tf.keras.Input((size, size, 3), batch_size=batch_size)
    x = tf.keras.layers.Rescaling(1.0 / 255.0)(inputs)
    x = tf.keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    x = tf.keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    outputs = tf.keras.layers.Dense(n_classes, activation="softmax")(x)
    model = tf.keras.Model(inputs, outputs)

    def representative():
        for _ in range(16):
            yield [rng.integers(0, 256, (1, size, size, 3)).astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if not quantized:
        return conv.convert()
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if not float_input:
        conv.inference_input_type = tf.uint8
    if not float_output:
        conv.inference_output_type = tf.uint8
    return conv.convert()


def build_plain_float_tflite(size: int = SIZE, n_classes: int = len(CLASSES)) -> bytes:
    """The model a newcomer converts first: Conv2D, Flatten, Dense, batch None, float32 throughout.

    `TFLiteConverter.from_keras_model` with no options; the dynamic batch makes Flatten a
    SHAPE/STRIDED_SLICE/PACK/RESHAPE chain on int32, so not every op is float, yet edgetpu_compiler
    refuses it as "Model not quantized" all the same.
    """
    import tensorflow as tf

    tf.random.set_seed(0)
    inputs = tf.keras.Input((size, size, 3))
    x = tf.keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    x = tf.keras.layers.Flatten()(x)
    outputs = tf.keras.layers.Dense(n_classes, activation="softmax")(x)
    return tf.lite.TFLiteConverter.from_keras_model(tf.keras.Model(inputs, outputs)).convert()


def build_nan_tflite(size: int = SIZE, n_classes: int = len(CLASSES)) -> bytes:
    """A model with the payload's interface (uint8 [1,H,W,3] in, [1,C] out) whose every score is NaN.

    It passes every check that reads the file (hashes, shapes, dtypes) and fails only when it runs:
    the case the payload's load-time probe exists for. Float output: log of a negative number.
    """
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([1, size, size, 3], tf.uint8)])
    def nan_scores(x: tf.Tensor) -> tf.Tensor:
        mean = tf.reduce_mean(tf.cast(x, tf.float32), axis=[1, 2])  # (1, 3)
        logits = tf.tile(mean[:, :1], [1, n_classes])
        return tf.math.log(-1.0 - logits)  # NaN for every pixel value

    conv = tf.lite.TFLiteConverter.from_concrete_functions([nan_scores.get_concrete_function()], nan_scores)
    return conv.convert()


def write_bundle(
    out: Path,
    model_bytes: bytes,
    *,
    classes: tuple[str, ...] = CLASSES,
    size: int = SIZE,
    edgetpu_copy: bool = False,
) -> Path:
    """Write a bundle folder around `model_bytes` with labels, report and a model card with sha256s.

    `edgetpu_copy` also writes `model_int8_edgetpu.tflite` (a byte copy: there is no compiler
    here; the Edge TPU tests run it through a test double of the delegate).
    """
    out.mkdir(parents=True, exist_ok=True)
    (out / "model_int8.tflite").write_bytes(model_bytes)
    (out / "labels.txt").write_text("\n".join(classes) + "\n", encoding="utf-8")
    (out / "report").mkdir(exist_ok=True)
    (out / "report" / "metrics.json").write_text(json.dumps({"accuracy": None}), encoding="utf-8")
    if edgetpu_copy:
        (out / "model_int8_edgetpu.tflite").write_bytes(model_bytes)
        (out / "model_int8_edgetpu.log").write_text(
            "Edge TPU Compiler version 16.0.384591198\n(test copy, not compiled)\n", encoding="utf-8"
        )
    files = {}
    for p in sorted(out.rglob("*")):
        if p.is_file() and p.name != "model_card.json":
            rel = p.relative_to(out).as_posix()
            files[rel] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
    diseases = [c for c in classes if c != "healthy"]
    card = {
        "format_version": 1,
        "created_utc": "2026-11-25T10:00:00Z",
        "profile": "tiny-test",
        "classes": list(classes),
        "healthy_class": "healthy",
        "disease_classes": diseases,
        "input": {"height": size, "width": size, "channels": 3, "dtype": "uint8", "color": "RGB"},
        "thresholds": {c: 0.3 for c in diseases},
        "files": files,
        "edgetpu": {
            "compiled": edgetpu_copy,
            "cpu_only": False,
            "reason": None if edgetpu_copy else "edgetpu_compiler not found",
            "summary": None,
        },
        "metrics": {"float": {}, "int8": {}, "agreement": None},
        "training": {"note": "random weights, payload tests only"},
        "tools": {"tensorflow": None, "python": sys.version.split()[0], "edgetpu_compiler": None},
    }
    (out / "model_card.json").write_text(json.dumps(card, indent=2), encoding="utf-8")
    return out


def rewrite_card(bundle: Path, **changes: object) -> None:
    """Change top-level keys of a bundle's model card (for tests of bad bundles)."""
    card = json.loads((bundle / "model_card.json").read_text())
    card.update(changes)
    (bundle / "model_card.json").write_text(json.dumps(card, indent=2))


def rehash(bundle: Path) -> None:
    """Recompute every listed file's sha256 (after a test edited a file on purpose)."""
    card = json.loads((bundle / "model_card.json").read_text())
    for rel in card["files"]:
        p = bundle / rel
        card["files"][rel] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
    (bundle / "model_card.json").write_text(json.dumps(card, indent=2))


def copy_bundle(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


if __name__ == "__main__":
    if sys.argv[1:2] == ["--tflite"]:  # the model file only (for a venv without TensorFlow: tests/payload/conftest.py)
        Path(sys.argv[2]).parent.mkdir(parents=True, exist_ok=True)
        Path(sys.argv[2]).write_bytes(build_tflite())
        sys.exit(0)
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "build/tiny_bundle")
    write_bundle(target, build_tflite(), edgetpu_copy="--edgetpu" in sys.argv)
    print(target)
