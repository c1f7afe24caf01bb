"""The backends the payload knows, which one the config gets, and when the CPU takes over.

The one list of backend names (config validation, the CLI's choices and selection all read
`BACKEND_NAMES`) and the whole fallback policy live here:
- at start, `auto` tries the Edge TPU and falls back to the CPU (a drone without its accelerator
  still scouts, slower); `edgetpu` refuses to take off without it; `cpu` never touches it;
- in flight, a backend other than the CPU that fails during inference hands over to the CPU,
  whether the config said auto or edgetpu (edgetpu only means "do not take off without it"). The
  scheduler calls the factory `cpu_fallback` returns; it holds no policy of its own.
Adding a backend: its module in this package, its name in `BackendName`, a branch in `open_classifier`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Literal, get_args

from payload.backends.base import Classifier
from payload.backends.cpu import CpuClassifier
from payload.backends.edgetpu import EdgeTpuClassifier, EdgeTpuUnavailable
from payload.bundle import Bundle

log = logging.getLogger("payload.backend")

BackendName = Literal["auto", "edgetpu", "cpu"]
BACKEND_NAMES: tuple[str, ...] = get_args(BackendName)


def open_classifier(
    bundle: Bundle, backend: BackendName = "auto", device: str | None = None, num_threads: int = 2,
    *, isolate: bool = False,
) -> Classifier:
    """Open the backend for `bundle` according to the selection rule; raises UserError subclasses.

    `isolate` runs the Edge TPU in a watched child process (payload/backends/isolated.py): a USB
    Edge TPU can abort the process natively, and `payload run` must survive that. The CPU backend
    always runs in-process.
    """
    clf: Classifier
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


def cpu_fallback(
    bundle: Bundle, backend: BackendName, classifier: Classifier, num_threads: int
) -> Callable[[], Classifier] | None:
    """What replaces `classifier` if it fails during inference: a CPU classifier, or None.

    The Edge TPU runs in a watched child process in flight (a USB abort must not end the flight);
    when it fails for good, the CPU takes over and re-runs the frame in flight. A CPU backend has
    nothing to fall back to.
    """
    if backend == "cpu" or isinstance(classifier, CpuClassifier):
        return None

    def fallback() -> Classifier:
        return CpuClassifier(bundle, num_threads)

    return fallback
