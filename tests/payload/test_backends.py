"""Backends: CPU, Edge TPU through doubles of pycoral / load_delegate, fallback order, selection and its log."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from payload.backends import open_classifier
from payload.backends.cpu import CpuClassifier
from payload.backends.edgetpu import EdgeTpuClassifier, EdgeTpuUnavailable, check_device, delegate_library
from payload.backends.runtime import RuntimeMissingError, import_runtime
from payload.bundle import load_bundle
from payload.errors import BundleError
from tests.payload import doubles, tinymodel
from tests.payload.doubles import Calls

RNG = np.random.default_rng(1)


def tiles(n: int = 4) -> np.ndarray:
    return RNG.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def test_cpu_scores_are_the_dequantized_interpreter_output(tiny_bundle_dir: Path) -> None:
    bundle = load_bundle(tiny_bundle_dir)
    clf = CpuClassifier(bundle, num_threads=1)
    batch = tiles(3)
    scores = clf.classify_batch(batch)
    assert scores.dtype == np.float32 and scores.shape == (3, 3)
    ref = Interpreter(model_path=str(bundle.cpu_model))
    ref.allocate_tensors()
    out = ref.get_output_details()[0]
    scale, zero = out["quantization"]
    assert out["dtype"] == np.uint8 and scale > 0
    for i in range(3):
        ref.set_tensor(ref.get_input_details()[0]["index"], batch[i : i + 1])
        ref.invoke()
        raw = ref.get_tensor(out["index"])[0]
        np.testing.assert_allclose(scores[i], (raw.astype(np.float32) - zero) * scale, rtol=0, atol=1e-7)
    assert np.all(scores >= 0) and np.all(scores <= 1)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=0.03)
    assert clf.name == "cpu (ai_edge_litert, 1 threads)"


def test_dequantize_known_values(tiny_bundle_dir: Path) -> None:
    clf = CpuClassifier(load_bundle(tiny_bundle_dir))
    clf._out_scale, clf._out_zero = 0.5, 10  # as another converter could write them
    got = clf.dequantize(np.array([[10, 12, 210]], dtype=np.uint8))
    np.testing.assert_allclose(got, [[0.0, 1.0, 100.0]])
    clf._out_scale, clf._out_zero = 1.0 / 256, 0
    np.testing.assert_allclose(clf.dequantize(np.array([[0, 128, 255]], np.uint8)), [[0.0, 0.5, 255 / 256]])


def test_classify_batch_refuses_wrong_tiles(tiny_bundle_dir: Path) -> None:
    clf = CpuClassifier(load_bundle(tiny_bundle_dir))
    with pytest.raises(ValueError, match="uint8"):
        clf.classify_batch(tiles(1).astype(np.float32))
    with pytest.raises(ValueError, match="32, 32"):
        clf.classify_batch(np.zeros((1, 16, 16, 3), np.uint8))


def test_model_with_float_input_is_refused(tmp_path: Path) -> None:
    bundle = tinymodel.write_bundle(tmp_path / "f", tinymodel.build_tflite(float_input=True))
    with pytest.raises(BundleError, match=r"model input is float32 \[1, 32, 32, 3\].*uint8"):
        CpuClassifier(load_bundle(bundle))


def test_label_count_differs_from_output_size(bundle_copy: Path) -> None:
    (bundle_copy / "labels.txt").write_text("healthy\nrust\npowdery_mildew\nblight\n")
    tinymodel.rewrite_card(bundle_copy, classes=["healthy", "rust", "powdery_mildew", "blight"])
    tinymodel.rehash(bundle_copy)
    bundle = load_bundle(bundle_copy)
    with pytest.raises(BundleError, match=r"output has shape \[1, 3\] but labels.txt has 4 classes"):
        CpuClassifier(bundle)


def test_corrupt_model_file_with_matching_hash(bundle_copy: Path) -> None:
    (bundle_copy / "model_int8.tflite").write_bytes(b"this is not a flatbuffer" * 10)
    tinymodel.rehash(bundle_copy)
    with pytest.raises(BundleError, match="model_int8.tflite: the TFLite runtime cannot read this model"):
        CpuClassifier(load_bundle(bundle_copy))


# --- runtime fallback order --------------------------------------------------------------------------------


def test_ai_edge_litert_comes_first() -> None:
    name, module = import_runtime()
    assert name == "ai_edge_litert" and module.__name__ == "ai_edge_litert.interpreter"


def test_tflite_runtime_is_the_fallback(monkeypatch: pytest.MonkeyPatch, tiny_bundle_dir: Path) -> None:
    calls = Calls()
    doubles.install_runtime(monkeypatch, "ai_edge_litert", None)
    doubles.install_runtime(monkeypatch, "tflite_runtime", doubles.fake_runtime("tflite_runtime", calls))
    clf = CpuClassifier(load_bundle(tiny_bundle_dir), num_threads=3)
    assert clf.runtime == "tflite_runtime" and "tflite_runtime" in clf.name
    assert calls.interpreters == [
        {"runtime": "tflite_runtime", "model_path": str(tiny_bundle_dir / "model_int8.tflite"), "num_threads": 3,
         "delegates": None}
    ]
    assert clf.classify_batch(tiles(1)).shape == (1, 3)


def test_no_runtime_at_all(monkeypatch: pytest.MonkeyPatch, tiny_bundle_dir: Path) -> None:
    doubles.install_runtime(monkeypatch, "ai_edge_litert", None)
    doubles.install_runtime(monkeypatch, "tflite_runtime", None)
    with pytest.raises(RuntimeMissingError, match="pip install ai-edge-litert"):
        CpuClassifier(load_bundle(tiny_bundle_dir))


# --- Edge TPU ----------------------------------------------------------------------------------------------


def test_edgetpu_through_load_delegate(monkeypatch: pytest.MonkeyPatch, tiny_tpu_bundle_dir: Path) -> None:
    calls = Calls()
    doubles.no_pycoral(monkeypatch)
    doubles.install_runtime(monkeypatch, "ai_edge_litert", doubles.fake_runtime("ai_edge_litert", calls))
    bundle = load_bundle(tiny_tpu_bundle_dir)
    clf = EdgeTpuClassifier(bundle, device="usb:0")
    assert calls.load_delegate == [(delegate_library(), {"device": "usb:0"})]
    (only,) = calls.interpreters
    assert only["model_path"].endswith("model_int8_edgetpu.tflite")
    assert only["delegates"][0].library == delegate_library()
    assert clf.classify_batch(tiles(2)).shape == (2, 3)
    assert "edgetpu (ai_edge_litert load_delegate" in clf.name and "usb:0" in clf.name
    EdgeTpuClassifier(bundle)  # first found: no device option at all
    assert calls.load_delegate[-1] == (delegate_library(), {})


def test_edgetpu_delegate_through_tflite_runtime(monkeypatch: pytest.MonkeyPatch, tiny_tpu_bundle_dir: Path) -> None:
    calls = Calls()
    doubles.no_pycoral(monkeypatch)
    doubles.install_runtime(monkeypatch, "ai_edge_litert", None)
    doubles.install_runtime(monkeypatch, "tflite_runtime", doubles.fake_runtime("tflite_runtime", calls))
    clf = EdgeTpuClassifier(load_bundle(tiny_tpu_bundle_dir), device="pci")
    assert calls.load_delegate == [(delegate_library(), {"device": "pci"})]
    assert "tflite_runtime load_delegate" in clf.name


def test_pycoral_is_preferred_when_it_imports(monkeypatch: pytest.MonkeyPatch, tiny_tpu_bundle_dir: Path) -> None:
    calls = Calls()
    doubles.install_pycoral(monkeypatch, calls)
    doubles.install_runtime(monkeypatch, "ai_edge_litert", doubles.fake_runtime("ai_edge_litert", calls))
    clf = EdgeTpuClassifier(load_bundle(tiny_tpu_bundle_dir), device="usb")
    assert calls.make_interpreter == [(str(tiny_tpu_bundle_dir / "model_int8_edgetpu.tflite"), "usb")]
    assert calls.load_delegate == []
    assert "pycoral make_interpreter" in clf.name


def test_pycoral_failure_is_explained(monkeypatch: pytest.MonkeyPatch, tiny_tpu_bundle_dir: Path) -> None:
    doubles.install_pycoral(monkeypatch, Calls(), error=doubles.NO_DEVICE)
    with pytest.raises(EdgeTpuUnavailable, match="delegate did not load.*payload devices"):
        EdgeTpuClassifier(load_bundle(tiny_tpu_bundle_dir))


def test_the_real_runtime_raises_oserror_without_libedgetpu(monkeypatch: pytest.MonkeyPatch,
                                                            tiny_tpu_bundle_dir: Path) -> None:
    """No double: this machine has no libedgetpu, and the message must say how to install it."""
    doubles.no_pycoral(monkeypatch)
    with pytest.raises(EdgeTpuUnavailable) as info:
        EdgeTpuClassifier(load_bundle(tiny_tpu_bundle_dir))
    msg = str(info.value)
    assert "could not be loaded (OSError" in msg and "libedgetpu1-std" in msg


@pytest.mark.parametrize(
    ("error", "why"),
    [(doubles.MISSING_LIB, "could not be loaded (OSError"), (doubles.NO_DEVICE, "delegate did not load")],
)
def test_auto_falls_back_to_cpu_and_logs_why(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tiny_tpu_bundle_dir: Path,
    error: BaseException, why: str
) -> None:
    calls = Calls()
    doubles.no_pycoral(monkeypatch)
    doubles.install_runtime(monkeypatch, "ai_edge_litert", doubles.fake_runtime("ai_edge_litert", calls, error))
    with caplog.at_level(logging.INFO, logger="payload.backend"):
        clf = open_classifier(load_bundle(tiny_tpu_bundle_dir), "auto", "usb:1", num_threads=2)
    assert isinstance(clf, CpuClassifier)
    assert calls.load_delegate == [(delegate_library(), {"device": "usb:1"})]
    assert calls.interpreters[-1]["model_path"].endswith("model_int8.tflite")  # never the _edgetpu file on CPU
    (rec,) = [r for r in caplog.records if r.name == "payload.backend"]
    assert rec.levelno == logging.WARNING
    text = rec.getMessage()
    assert text.startswith("backend auto: Edge TPU not used:") and why in text
    assert "falling back to cpu (ai_edge_litert, 2 threads) running model_int8.tflite" in text


def test_auto_uses_the_edgetpu_when_it_loads(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
                                             tiny_tpu_bundle_dir: Path) -> None:
    doubles.no_pycoral(monkeypatch)
    doubles.install_runtime(monkeypatch, "ai_edge_litert", doubles.fake_runtime("ai_edge_litert", Calls()))
    with caplog.at_level(logging.INFO, logger="payload.backend"):
        clf = open_classifier(load_bundle(tiny_tpu_bundle_dir), "auto")
    assert isinstance(clf, EdgeTpuClassifier)
    assert "backend auto: Edge TPU loaded" in caplog.text and "model_int8_edgetpu.tflite" in caplog.text


def test_auto_without_edgetpu_model_says_so(caplog: pytest.LogCaptureFixture, tiny_bundle_dir: Path) -> None:
    with caplog.at_level(logging.INFO, logger="payload.backend"):
        clf = open_classifier(load_bundle(tiny_bundle_dir), "auto")
    assert isinstance(clf, CpuClassifier)
    assert "bundle has no model_int8_edgetpu.tflite (edgetpu_compiler not found)" in caplog.text


def test_edgetpu_required_fails_clearly(monkeypatch: pytest.MonkeyPatch, tiny_tpu_bundle_dir: Path,
                                        tiny_bundle_dir: Path) -> None:
    doubles.no_pycoral(monkeypatch)
    doubles.install_runtime(monkeypatch, "ai_edge_litert",
                            doubles.fake_runtime("ai_edge_litert", Calls(), doubles.MISSING_LIB))
    with pytest.raises(EdgeTpuUnavailable, match=r"Edge TPU required \(model.backend: edgetpu\).*OSError"):
        open_classifier(load_bundle(tiny_tpu_bundle_dir), "edgetpu")
    with pytest.raises(EdgeTpuUnavailable, match="bundle has no model_int8_edgetpu.tflite"):
        open_classifier(load_bundle(tiny_bundle_dir), "edgetpu")


def test_cpu_never_touches_the_delegate(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
                                        tiny_tpu_bundle_dir: Path) -> None:
    calls = Calls()
    doubles.install_pycoral(monkeypatch, calls)
    doubles.install_runtime(monkeypatch, "ai_edge_litert", doubles.fake_runtime("ai_edge_litert", calls))
    with caplog.at_level(logging.INFO, logger="payload.backend"):
        clf = open_classifier(load_bundle(tiny_tpu_bundle_dir), "cpu", num_threads=1)
    assert isinstance(clf, CpuClassifier)
    assert calls.load_delegate == [] and calls.make_interpreter == []
    assert calls.interpreters[0]["model_path"].endswith("model_int8.tflite")
    assert "backend cpu (requested by model.backend: cpu)" in caplog.text


def test_library_names_and_device_strings() -> None:
    assert delegate_library("Linux") == "libedgetpu.so.1"
    assert delegate_library("Darwin") == "libedgetpu.1.dylib"
    assert delegate_library("Windows") == "edgetpu.dll"
    with pytest.raises(EdgeTpuUnavailable, match="no Edge TPU runtime exists for Plan9"):
        delegate_library("Plan9")
    for ok in ("usb", "usb:0", "pci", "pci:3", ":1"):
        assert check_device(ok) == ok
    assert check_device("") is None and check_device(None) is None
    for bad in ("gpu", "usb0", "usb:", ":"):
        with pytest.raises(EdgeTpuUnavailable, match="not a valid Edge TPU device"):
            check_device(bad)


class QuantInterpreter:
    """An interpreter double whose uint8 input has scale 0.5, zero point 10 (pixels must be requantized)."""

    def __init__(self) -> None:
        self.seen: list[np.ndarray] = []

    def allocate_tensors(self) -> None:
        pass

    def get_input_details(self) -> list[dict]:
        return [{"index": 0, "shape": np.array([1, 32, 32, 3]), "dtype": np.uint8, "quantization": (0.5, 10)}]

    def get_output_details(self) -> list[dict]:
        return [{"index": 1, "shape": np.array([1, 3]), "dtype": np.uint8, "quantization": (1 / 255, 0)}]

    def set_tensor(self, index: int, value: np.ndarray) -> None:
        self.seen.append(value.copy())

    def invoke(self) -> None:
        pass

    def get_tensor(self, index: int) -> np.ndarray:
        return np.array([[0, 51, 255]], np.uint8)


def test_input_quantization_is_honoured_without_float_maths_per_pixel(tiny_bundle_dir: Path) -> None:
    from payload.backends.base import TFLiteClassifier

    interp = QuantInterpreter()
    clf = TFLiteClassifier(interp, load_bundle(tiny_bundle_dir), Path("model.tflite"), "test")
    batch = np.zeros((2, 32, 32, 3), np.uint8)
    batch[0, 0, 0] = (0, 100, 255)
    scores = clf.classify_batch(batch)
    np.testing.assert_allclose(scores, [[0.0, 0.2, 1.0]] * 2, atol=1e-6)
    # seen[0] is the load-time probe (mid-grey 128 -> 128 / 0.5 + 10, clipped): it goes through the table too
    assert len(interp.seen) == 3 and (interp.seen[0] == 255).all()
    assert interp.seen[1].dtype == np.uint8
    # real value = 0.5 * (q - 10)  =>  q = p / 0.5 + 10, clipped to 0-255
    assert tuple(interp.seen[1][0, 0, 0]) == (10, 210, 255)
    assert (interp.seen[2] == 10).all()


def test_backend_table_and_names_agree() -> None:
    """`BackendName` (what mypy checks) names the registered backends (what opens, what the config and the CLI
    accept), in the same order, and every setting a backend reads is part of the config's `model` section."""
    from typing import get_args

    from payload.backends.registry import BACKEND_NAMES, BACKENDS, BackendName, BackendSettings, ModelSection

    assert get_args(BackendName) == BACKEND_NAMES == tuple(BACKENDS), (
        "a backend registered (register_backend) but not in BackendName, or the other way round")
    assert get_args(ModelSection.model_fields["backend"].annotation) == BACKEND_NAMES
    for entry in BACKENDS.values():
        for settings in entry.settings:
            assert issubclass(BackendSettings, settings) and set(settings.model_fields) <= set(
                ModelSection.model_fields)


def test_model_section_keeps_its_field_order() -> None:
    """The `model` section is assembled from the registered settings; its keys keep the order the schema and
    the error lists have always had."""
    from payload.backends.registry import ModelSection

    assert list(ModelSection.model_fields) == ["bundle", "backend", "device", "num_threads"]


def test_only_the_cpu_has_nothing_to_fall_back_to() -> None:
    from payload.backends.registry import BACKENDS

    assert {name: e.falls_back_to_cpu for name, e in BACKENDS.items()} == {
        "auto": True, "edgetpu": True, "cpu": False}
