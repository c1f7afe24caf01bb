"""The backends the payload knows, which one the config gets, and when the CPU takes over.

`BACKENDS` is the one table of backends: each name with the settings it reads from the config's
`model` section (each backend's settings class lives in its own module) and how it is opened.
`BackendName` is the same list as a Literal, so mypy checks every name in the code and the config
validates it; `tests/payload/test_backends.py` keeps the two equal. The whole fallback policy
lives here too:
- at start, `auto` tries the Edge TPU and falls back to the CPU (a drone without its accelerator
  still scouts, slower); `edgetpu` refuses to take off without it; `cpu` never touches it;
- in flight, a backend other than the CPU that fails during inference hands over to the CPU,
  whether the config said auto or edgetpu (edgetpu only means "do not take off without it"). The
  scheduler calls the factory `cpu_fallback` returns; it holds no policy of its own.
Adding a backend: its module in this package (the classifier and its settings class), its name in
`BackendName`, its settings class among `BackendSettings`' bases and its row in `BACKENDS`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from pydantic import BaseModel, Field

from payload.backends.base import Classifier
from payload.backends.cpu import CpuClassifier, CpuSettings
from payload.backends.edgetpu import EdgeTpuClassifier, EdgeTpuSettings, EdgeTpuUnavailable
from payload.bundle import Bundle
from payload.configio import StrictModel

log = logging.getLogger("payload.backend")

BackendName = Literal["auto", "edgetpu", "cpu"]
BACKEND_NAMES: tuple[str, ...] = get_args(BackendName)


class BackendSettings(CpuSettings, EdgeTpuSettings):
    """Every backend's settings: the YAML keeps them in one flat `model` section."""


class _Selection(StrictModel):
    bundle: Path = Field(description="folder written by `make edgetpu` (model_card.json inside)")
    backend: BackendName = "auto"


class ModelSection(BackendSettings, _Selection):
    """Which model bundle to run and on what."""


Opener = Callable[[Bundle, BackendSettings, bool], Classifier]


@dataclass(frozen=True)
class Backend:
    """A backend as the registry knows it: the settings it reads and how it is opened (`isolate`: the
    Edge TPU in a watched child process)."""

    settings: tuple[type[BaseModel], ...]
    open: Opener


def _open_cpu(bundle: Bundle, s: BackendSettings, isolate: bool) -> Classifier:
    clf = CpuClassifier(bundle, s.num_threads)
    log.info("backend cpu (requested by model.backend: cpu): %s running %s", clf.name, bundle.cpu_model.name)
    return clf


def _open_edgetpu_required(bundle: Bundle, s: BackendSettings, isolate: bool) -> Classifier:
    try:
        clf = _open_edgetpu(bundle, s.device, isolate)
    except EdgeTpuUnavailable as err:
        raise EdgeTpuUnavailable(
            f"Edge TPU required (model.backend: edgetpu) but not usable: {err}; "
            "or set model.backend: auto to fall back to the CPU"
        ) from None
    log.info("backend edgetpu (requested by model.backend: edgetpu): %s running %s", clf.name,
             _tpu_model_name(bundle))
    return clf


def _open_auto(bundle: Bundle, s: BackendSettings, isolate: bool) -> Classifier:
    try:
        clf = _open_edgetpu(bundle, s.device, isolate)
    except EdgeTpuUnavailable as err:
        cpu = CpuClassifier(bundle, s.num_threads)
        log.warning("backend auto: Edge TPU not used: %s; falling back to %s running %s", err, cpu.name,
                    bundle.cpu_model.name)
        return cpu
    log.info("backend auto: Edge TPU loaded: %s running %s", clf.name, _tpu_model_name(bundle))
    return clf


BACKENDS: dict[str, Backend] = {
    "auto": Backend((EdgeTpuSettings, CpuSettings), _open_auto),
    "edgetpu": Backend((EdgeTpuSettings,), _open_edgetpu_required),
    "cpu": Backend((CpuSettings,), _open_cpu),
}


def open_classifier(
    bundle: Bundle, backend: BackendName = "auto", device: str | None = None, num_threads: int = 2,
    *, isolate: bool = False,
) -> Classifier:
    """Open the backend for `bundle` according to the selection rule; raises UserError subclasses.

    `isolate` runs the Edge TPU in a watched child process (payload/backends/isolated.py): a USB
    Edge TPU can abort the process natively, and `payload run` must survive that. The CPU backend
    always runs in-process.
    """
    entry = BACKENDS.get(backend)
    if entry is None:
        raise ValueError(f"unknown backend {backend!r}")
    # not validated again: the config has checked them, and the CLI's values go to the backend as given
    settings = BackendSettings.model_construct(device=device, num_threads=num_threads)
    return entry.open(bundle, settings, isolate)


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
