"""Full-integer post-training quantization and running the int8 model the way the drone does.

The converter is given a fixed batch-1 signature (the Edge TPU needs static shapes) and a
representative set drawn from the training split. Two pixels of every representative image are
set to 0 and 255 so that the calibrated input range is exactly 0-255: the uint8 input then has
scale 1 and zero point 0, and raw camera pixels can be fed as they are.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from payload.bundle import dequantize  # the drone's own dequantization: scores match in flight

log = logging.getLogger(__name__)


def representative_batches(images: Iterable[np.ndarray]) -> Iterator[list[np.ndarray]]:
    """Float32 batch-1 samples for the converter, with the full 0-255 input range pinned."""
    for img in images:
        x = np.asarray(img, dtype=np.float32).copy()
        x[0, 0, :] = 0.0
        x[0, 1, :] = 255.0
        yield [x[None, ...]]


def convert_int8(model, images: Iterable[np.ndarray], out_path: Path) -> Path:
    """Write a uint8-in/uint8-out TFLITE_BUILTINS_INT8 model of the Keras `model`."""
    import tensorflow as tf

    if model.input_shape[0] != 1:
        raise ValueError("convert_int8 needs a batch-1 model (compile.model.export_model)")
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: representative_batches(images)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.uint8
    # Keras' export prints every captured variable to stdout; keep the build's output readable
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        flat = converter.convert()
    log.debug("converter output:\n%s", captured.getvalue())
    out_path.write_bytes(flat)
    return out_path


class Int8Runner:
    """The int8 model in ai-edge-litert, fed raw uint8 RGB and returning 0-1 scores."""

    def __init__(self, path: Path, num_threads: int = 2) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    @property
    def input_quantization(self) -> tuple[float, int]:
        scale, zp = self.input["quantization"]
        return float(scale), int(zp)

    def scores(self, img: np.ndarray) -> np.ndarray:
        """Dequantized softmax scores of one uint8 HxWx3 RGB image."""
        scale, zp = self.input_quantization
        x = np.asarray(img)
        if (scale, zp) != (1.0, 0):  # only if calibration did not pin 0-255
            x = np.clip(np.round(x.astype(np.float32) / scale + zp), 0, 255)
        self.interpreter.set_tensor(self.input["index"], x.astype(np.uint8)[None, ...])
        self.interpreter.invoke()
        raw = self.interpreter.get_tensor(self.output["index"])[0]
        o_scale, o_zp = self.output["quantization"]
        return dequantize(raw, float(o_scale), int(o_zp))
