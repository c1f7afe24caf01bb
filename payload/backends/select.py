"""Pick the backend the config asks for, and say in the log exactly why it is that one.

`auto` tries the Edge TPU and falls back to the CPU (a drone without its accelerator still scouts,
slower); `edgetpu` refuses to fly without it; `cpu` never touches it.
"""

from __future__ import annotations

import logging
from typing import Literal

from payload.backends.base import Classifier
from payload.backends.cpu import CpuClassifier
from payload.backends.edgetpu import EdgeTpuClassifier, EdgeTpuUnavailable
from payload.bundle import Bundle

log = logging.getLogger("payload.backend")

BackendChoice = Literal["auto", "edgetpu", "cpu"]


def open_classifier(
    bundle: Bundle, backend: BackendChoice = "auto", device: str | None = None, num_threads: int = 2,
    *, isolate: bool = False,
) -> Classifier:
    """Open the backend for `bundle` according to the selection rule; raises UserError subclasses.

    `isolate` runs the Edge TPU in a watched child process (payload/backends/isolated.py): a USB
    Edge TPU can abort the process natively, and `payload run` must survive that. The CPU backend
    always runs in-process.
    """
    if backend == "cpu":
        clf = CpuClassifier(bundle, num_threads)
        log.info("backend cpu (requested by model.backend: cpu): %s running %s", clf.name, bundle.cpu_model.name)
        return clf
    if backend == "edgetpu":
        try:
            clf = _open_edgetpu(bundle, device, isolate)
        except EdgeTpuUnavailable as err:
            raise EdgeTpuUnavailable(
                f"Edge TPU required (model.backend: edgetpu) but not usable: {err}; "
                "or set model.backend: auto to fall back to the CPU"
            ) from None
        log.info("backend edgetpu (requested by model.backend: edgetpu): %s running %s", clf.name,
                 _tpu_model_name(bundle))
        return clf
    if backend != "auto":
        raise ValueError(f"unknown backend {backend!r}")
    try:
        clf = _open_edgetpu(bundle, device, isolate)
    except EdgeTpuUnavailable as err:
        cpu = CpuClassifier(bundle, num_threads)
        log.warning("backend auto: Edge TPU not used: %s; falling back to %s running %s", err, cpu.name,
                    bundle.cpu_model.name)
        return cpu
    log.info("backend auto: Edge TPU loaded: %s running %s", clf.name, _tpu_model_name(bundle))
    return clf


def _open_edgetpu(bundle: Bundle, device: str | None, isolate: bool) -> Classifier:
    if not isolate:
        return EdgeTpuClassifier(bundle, device)
    from payload.backends.isolated import open_edgetpu_isolated

    return open_edgetpu_isolated(bundle, device)


def _tpu_model_name(bundle: Bundle) -> str:
    return bundle.edgetpu_model.name if bundle.edgetpu_model else "?"
