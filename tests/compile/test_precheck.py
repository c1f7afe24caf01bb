"""The Edge TPU pre-check flags what the compiler would reject, on tiny models built here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from compile import tflite_check
from compile.errors import ModelCheckError
from compile.tflite_check import check_model, format_report

ROOT = Path(__file__).resolve().parents[2]


def _tiny(activation: str = "relu", batch: int | None = 1):
    import keras

    inp = keras.Input((16, 16, 3), batch_size=batch)
    x = keras.layers.Conv2D(4, 3, padding="same")(inp)
    x = keras.layers.LeakyReLU()(x) if activation == "leaky" else keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(3, activation="softmax")(x)
    return keras.Model(inp, out)


def _convert(model, path: Path, quantize: bool = True, io_uint8: bool = True) -> Path:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if quantize:
        rng = np.random.default_rng(0)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([rng.uniform(0, 255, (1, 16, 16, 3)).astype(np.float32)]
                                               for _ in range(4))
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if io_uint8:
            conv.inference_input_type = tf.uint8
            conv.inference_output_type = tf.uint8
    path.write_bytes(conv.convert())
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("tiny_models")
    return {
        "good": _convert(_tiny(), d / "good.tflite"),
        "float": _convert(_tiny(), d / "float.tflite", quantize=False),
        "float_io": _convert(_tiny(), d / "float_io.tflite", io_uint8=False),
        "unsupported": _convert(_tiny("leaky"), d / "leaky.tflite"),
        "dynamic": _convert(_tiny(batch=None), d / "dynamic.tflite"),
    }


def test_good_tiny_model_passes(models) -> None:
    r = check_model(models["good"])
    assert r.ok, r.errors
    assert r.inputs[0].dtype == "UINT8" and r.outputs[0].dtype == "UINT8"
    assert {op.op for op in r.ops} >= {"CONV_2D", "MEAN", "FULLY_CONNECTED", "SOFTMAX"}
    assert all(op.version >= 1 for op in r.ops)


def test_float_model_is_flagged(models) -> None:
    r = check_model(models["float"])
    text = " ".join(r.errors)
    assert "float model" in text and "representative dataset" in text
    assert "input 'serving_default" in text or "is FLOAT32" in text
    assert r.first_cpu_op == 0


def test_float_io_is_flagged(models) -> None:
    r = check_model(models["float_io"])
    text = " ".join(r.errors)
    assert "FLOAT32: float I/O" in text and "inference_input_type=tf.uint8" in text
    assert "inference_output_type=tf.uint8" in text
    assert "float model" not in text  # the inside is quantized


def test_unsupported_op_cuts_the_graph(models) -> None:
    r = check_model(models["unsupported"])
    leaky = next(op for op in r.ops if op.op == "LEAKY_RELU")
    assert not leaky.on_tpu and r.first_cpu_op == leaky.index
    assert all(op.on_tpu for op in r.ops[: leaky.index]) and not any(op.on_tpu for op in r.ops[leaky.index :])
    assert any("LEAKY_RELU is not supported" in e and "will run on the CPU" in e for e in r.errors)
    assert "LEAKY_RELU(v" in format_report(r)


def test_dynamic_shape_is_flagged(models) -> None:
    r = check_model(models["dynamic"])
    assert any("dynamic shape" in e and "batch 1" in e for e in r.errors), r.errors


def test_op_version_newer_than_the_compiler_knows(models, monkeypatch: pytest.MonkeyPatch) -> None:
    conv_version = next(op.version for op in check_model(models["good"]).ops if op.op == "CONV_2D")
    monkeypatch.setitem(tflite_check.EDGETPU_MAX_VERSION, "CONV_2D", conv_version - 1)
    r = check_model(models["good"])
    assert any(f"CONV_2D version {conv_version} is newer" in e for e in r.errors), r.errors


def test_not_a_model(tmp_path: Path) -> None:
    bad = tmp_path / "x.tflite"
    bad.write_bytes(b"not a flatbuffer at all")
    with pytest.raises(ModelCheckError, match="not a TFLite flatbuffer"):
        check_model(bad)
    with pytest.raises(ModelCheckError, match="no such model file"):
        check_model(tmp_path / "missing.tflite")


def test_check_cli_exit_codes(models, tmp_path: Path) -> None:
    def run(path: Path) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "compile", "check", str(path)], capture_output=True,
                              text=True, timeout=120, cwd=ROOT)

    ok = run(models["good"])
    assert ok.returncode == 0 and "result: OK" in ok.stdout, ok.stderr
    bad = run(models["float_io"])
    assert bad.returncode == 1 and "NOT READY" in bad.stdout and "float I/O" in bad.stdout
    junk = tmp_path / "junk.tflite"
    junk.write_text("hello")
    err = run(junk)
    assert err.returncode == 2 and "Traceback" not in err.stderr and "not a TFLite flatbuffer" in err.stderr


def test_check_does_not_import_tensorflow(models) -> None:
    code = (
        "import sys; from compile.tflite_check import check_model; "
        f"r = check_model({str(models['good'])!r}); assert r.ok; "
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
