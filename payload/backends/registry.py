"""The backends the payload knows, which one the config gets, and when the CPU takes over.

Each backend registers itself in its own module (`register_backend` in base.py: its name, the settings
classes it reads from the config's `model` section, its opener, whether the CPU takes over when it fails
in flight, its rank); the import list below is the one place that names the backend modules, so
importing this module registers them all. `BACKENDS` is what registered, in rank order; `BACKEND_NAMES`
(the CLI's `--backend` choices) and `ModelSection` (the config's `model` section: `bundle`, `backend`
checked against the registered names, then every registered settings class's fields, in the order the
backends list them) follow from it. `BackendName` is the same names as a Literal, so mypy checks every
name in the code; `tests/payload/test_backends.py` keeps the two equal. The whole fallback policy lives
in the backends' registrations and here:
- at start, `auto` tries the Edge TPU and falls back to the CPU (a drone without its accelerator
  still scouts, slower); `edgetpu` refuses to take off without it; `cpu` never touches it;
- in flight, a backend registered with `falls_back_to_cpu` that fails during inference hands over to the
  CPU, whether the config said auto or edgetpu (edgetpu only means "do not take off without it"). The
  scheduler calls the factory `cpu_fallback` returns; it holds no policy of its own.
Adding a backend: its module in this package (the classifier, its settings class, `register_backend`),
its line in the import list below and its name in `BackendName`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field, create_model

# the backend modules, one line each: importing one registers its backend (base.py `register_backend`)
from payload.backends import (
    auto,  # noqa: F401 - registers itself
    cpu,  # noqa: F401 - registers itself
    edgetpu,  # noqa: F401 - registers itself
)
from payload.backends.base import BackendEntry, Classifier, registered_backends
from payload.backends.cpu import CpuClassifier, CpuSettings
from payload.backends.edgetpu import EdgeTpuSettings
from payload.bundle import Bundle
from payload.configio import StrictModel

# the registered names, for mypy; a test keeps it equal to BACKEND_NAMES (same names, same order)
BackendName = Literal["auto", "edgetpu", "cpu"]

BACKENDS: dict[str, BackendEntry] = registered_backends()
BACKEND_NAMES: tuple[str, ...] = tuple(BACKENDS)


class _Bundle(StrictModel):
    bundle: Path = Field(description="folder written by `make edgetpu` (model_card.json inside)")


def _settings_classes() -> list[type[BaseModel]]:
    """Every registered settings class once, in the order the backends (by rank) list them."""
    out: list[type[BaseModel]] = []
    for entry in BACKENDS.values():
        out.extend(s for s in entry.settings if s not in out)
    return out


def _assemble() -> tuple[type[BaseModel], type[BaseModel]]:
    """BackendSettings (every registered settings class) and ModelSection (the bundle, the backend's name,
    then the settings' fields: pydantic takes the fields of the last base first, hence the reversal)."""
    if not BACKENDS:
        raise RuntimeError("no backend registered")
    settings = create_model("BackendSettings", __base__=tuple(reversed(_settings_classes())), __module__=__name__,
                            __doc__="Every backend's settings: the YAML keeps them in one flat `model` section.")
    names: Any = Literal[BACKEND_NAMES]  # the registered names, as the config checks them
    selection = create_model("_Selection", __base__=_Bundle, __module__=__name__, backend=(names, "auto"))
    section = create_model("ModelSection", __base__=(settings, selection), __module__=__name__,
                           __doc__="Which model bundle to run and on what.")
    return settings, section


if TYPE_CHECKING:
    # what the payload's code may read by name (the selection and the settings it passes to open_classifier)
    class BackendSettings(CpuSettings, EdgeTpuSettings):
        """Every backend's settings: the YAML keeps them in one flat `model` section."""

    class ModelSection(BackendSettings, _Bundle):
        """Which model bundle to run and on what."""

        backend: BackendName = "auto"
else:
    BackendSettings, ModelSection = _assemble()


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


def cpu_fallback(
    bundle: Bundle, backend: BackendName, classifier: Classifier, num_threads: int
) -> Callable[[], Classifier] | None:
    """What replaces `classifier` if it fails during inference: a CPU classifier, or None.

    The Edge TPU runs in a watched child process in flight (a USB abort must not end the flight);
    when it fails for good, the CPU takes over and re-runs the frame in flight. A backend registered
    without `falls_back_to_cpu` (the CPU) has nothing to fall back to, nor has a classifier that is
    already the CPU's (auto without its Edge TPU).
    """
    entry = BACKENDS.get(backend)
    if (entry is not None and not entry.falls_back_to_cpu) or isinstance(classifier, CpuClassifier):
        return None

    def fallback() -> Classifier:
        return CpuClassifier(bundle, num_threads)

    return fallback
