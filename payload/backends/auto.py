"""The `auto` backend: the Edge TPU when it opens, else the CPU (a drone without its accelerator still
scouts, slower). It reads both backends' settings; in flight the CPU takes over when the Edge TPU fails.
"""

from __future__ import annotations

import logging
from typing import Protocol

from payload.backends.base import Classifier, register_backend
from payload.backends.cpu import CpuClassifier, CpuSettings
from payload.backends.devices import DeviceStringError
from payload.backends.edgetpu import EdgeTpuSettings, EdgeTpuUnavailable, open_edgetpu, tpu_model_name
from payload.bundle import Bundle

log = logging.getLogger("payload.backend")


class _AutoSettings(Protocol):
    """What `auto` reads: the Edge TPU's settings and the CPU's."""

    device: str | None
    num_threads: int


def _open_auto(bundle: Bundle, s: _AutoSettings, isolate: bool) -> Classifier:
    try:
        clf = open_edgetpu(bundle, s.device, isolate)
    except DeviceStringError:
        raise  # a typo in model.device is fixed on the ground, not flown around on the CPU
    except EdgeTpuUnavailable as err:
        cpu = CpuClassifier(bundle, s.num_threads)
        log.warning("backend auto: Edge TPU not used: %s; falling back to %s running %s", err, cpu.name,
                    bundle.cpu_model.name)
        return cpu
    log.info("backend auto: Edge TPU loaded: %s running %s", clf.name, tpu_model_name(bundle))
    return clf


register_backend("auto", settings=(EdgeTpuSettings, CpuSettings), opener=_open_auto, falls_back_to_cpu=True,
                 rank=0)
