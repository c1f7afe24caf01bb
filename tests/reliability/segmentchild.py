"""Child-side factory of an Edge TPU pipeline stage for the tests: the payload's real `EdgeTpuSegment`, with the
runtime double (tests/payload/doubles.py) installed in the child first, since a spawned child sees none of the
parent's monkeypatches. The segment files are the compiler double's, real TFLite graphs, so each stage
really computes its part of the model.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

from payload.backends.edgetpu import EdgeTpuSegment
from tests.payload import doubles


class KillingSegment(EdgeTpuSegment):
    """A segment whose child SIGKILLs itself on its Nth item, once (a marker file), as a USB abort would end it."""

    def __init__(self, bundle: Any, k: int, device: str | None, kill_at: int, marker: str) -> None:
        super().__init__(bundle, k, device)
        self.kill_at, self.marker, self.items = kill_at, Path(marker), 0

    def classify_batch(self, x: Any) -> Any:
        self.items += 1
        if self.items == self.kill_at:
            try:
                fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:
                os.close(fd)
                os.kill(os.getpid(), signal.SIGKILL)
        return super().classify_batch(x)


def _install_doubles() -> None:
    sys.modules["pycoral"] = None  # type: ignore[assignment]
    sys.modules["pycoral.utils"] = None  # type: ignore[assignment]
    sys.modules["pycoral.utils.edgetpu"] = None  # type: ignore[assignment]
    sys.modules["ai_edge_litert.interpreter"] = doubles.fake_runtime("ai_edge_litert", doubles.Calls())


def segment_with_runtime_double(bundle: Any, k: int, device: str | None) -> EdgeTpuSegment:
    """Segment k on `device` through the load_delegate double."""
    _install_doubles()
    return EdgeTpuSegment(bundle, k, device)


def killing_segment(kill_stage: int, kill_at: int, marker: str) -> Any:
    """A factory like `segment_with_runtime_double` whose stage `kill_stage` dies once on its item `kill_at`."""
    import functools

    return functools.partial(_killing, kill_stage, kill_at, marker)


def _killing(kill_stage: int, kill_at: int, marker: str, bundle: Any, k: int, device: str | None) -> EdgeTpuSegment:
    _install_doubles()
    if k == kill_stage:
        return KillingSegment(bundle, k, device, kill_at, marker)
    return EdgeTpuSegment(bundle, k, device)
