"""Find a TFLite runtime without TensorFlow: ai-edge-litert first, then the old tflite-runtime.

Both expose the same `Interpreter` / `load_delegate` API. tflite-runtime stops at 2.14 and runs
int8 6-9x slower, so it is only a fallback for boards where ai-edge-litert has no wheel.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from payload.errors import UserError

RUNTIME_MODULES = ("ai_edge_litert.interpreter", "tflite_runtime.interpreter")


class RuntimeMissingError(UserError):
    """No TFLite runtime imports on this machine."""


def import_runtime() -> tuple[str, ModuleType]:
    """Return (package name, interpreter module) of the first runtime that imports, in RUNTIME_MODULES order."""
    failures = []
    for name in RUNTIME_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError as err:
            failures.append(f"{name}: {err}")
            continue
        return name.split(".")[0], module
    raise RuntimeMissingError(
        "no TFLite runtime could be imported (" + "; ".join(failures) + "); "
        "install one with `pip install ai-edge-litert` (or tflite-runtime on boards without it)"
    )
