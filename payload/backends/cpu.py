"""CPU backend: the plain int8 model on ai-edge-litert (or tflite-runtime), XNNPACK threads.

Never the `_edgetpu.tflite` file: its `edgetpu-custom-op` cannot run without the accelerator.
"""

from __future__ import annotations

import logging

from pydantic import Field

from payload.backends.base import Classifier, TFLiteClassifier, register_backend
from payload.backends.runtime import import_runtime
from payload.bundle import Bundle
from payload.configio import StrictModel
from payload.errors import BundleError

log = logging.getLogger("payload.backend")


class CpuSettings(StrictModel):
    """What the CPU backend reads from the config's `model` section."""

    num_threads: int = Field(default=2, ge=1, le=64)


class CpuClassifier(TFLiteClassifier):
    """The bundle's model_int8.tflite on the CPU."""

    def __init__(self, bundle: Bundle, num_threads: int = 2) -> None:
        runtime_name, rt = import_runtime()
        model = bundle.cpu_model
        try:
            interp = rt.Interpreter(model_path=str(model), num_threads=num_threads)
        except (ValueError, RuntimeError) as err:
            raise BundleError(
                f"{model}: the TFLite runtime cannot read this model ({err}); rebuild the bundle"
            ) from None
        super().__init__(interp, bundle, model, name=f"cpu ({runtime_name}, {num_threads} threads)")
        self.runtime = runtime_name
        self.num_threads = num_threads


def _open_cpu(bundle: Bundle, s: CpuSettings, isolate: bool) -> Classifier:
    clf = CpuClassifier(bundle, s.num_threads)
    log.info("backend cpu (requested by model.backend: cpu): %s running %s", clf.name, bundle.cpu_model.name)
    return clf


# the CPU always runs in-process (`isolate` is for the Edge TPU); it has nothing to fall back to
register_backend("cpu", settings=(CpuSettings,), opener=_open_cpu, falls_back_to_cpu=False, rank=2)
