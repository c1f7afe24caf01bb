"""The interface every detection sink implements, and what a sink is built from.

The geotagging handler (payload/pipeline/geotag.py) hands each detection record to its sinks in
order, tells them about each new hotspot, and ends every frame and the run with them (in reverse
order, so a sink that reads another's output, such as the layers reading detections.jsonl, is
done before the one it reads). The sinks are built by `payload.sinks.registry.build_sinks`, which
config selects from; adding a sink is a module in this package plus a line in the registry.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from payload.config import PayloadConfig
from payload.geo.hotspots import Hotspot
from payload.types import FrameResult, StatusSender


class DetectionSink(Protocol):
    """Somewhere detection records go (a file, a layer, the ground station)."""

    name: str

    def earlier(self) -> Iterable[dict[str, Any]]:
        """Detections this sink already holds from an earlier run into the same folder (a restart after
        a crash), so the hotspots can be rebuilt from them without alerting again; most sinks hold none."""
        ...

    def write(self, det: dict[str, Any], result: FrameResult) -> None:
        """One detection of `result`'s frame. Called in sink order: a sink may add keys to `det` that
        later sinks keep (the crops sink adds the crop's path before the JSONL sink writes the record)."""
        ...

    def new_hotspot(self, hotspot: Hotspot) -> None:
        """A hotspot was confirmed by the detection just written."""
        ...

    def end_frame(self) -> None:
        """The frame's detections are all written (called for every frame, with or without any)."""
        ...

    def close(self) -> None:
        """Flush and release; called once at the end of the run."""
        ...


class SinkBase:
    """Do-nothing defaults, so a sink implements only the calls it cares about."""

    name = "sink"

    def earlier(self) -> Iterable[dict[str, Any]]:
        return ()

    def write(self, det: dict[str, Any], result: FrameResult) -> None:
        return None

    def new_hotspot(self, hotspot: Hotspot) -> None:
        return None

    def end_frame(self) -> None:
        return None

    def close(self) -> None:
        return None


def _always() -> bool:
    return True


@dataclass
class SinkContext:
    """What a sink may be built from: the config and the run's shared services (no globals)."""

    cfg: PayloadConfig
    out_dir: Path
    hotspots: Callable[[], list[Hotspot]]  # a snapshot of the current hotspots
    status: StatusSender | None = None  # the ground-station link, when there is one
    crops_allowed: Callable[[], bool] = _always  # the free-disk guard's verdict (payload/ops/diskguard.py)
    clock: Callable[[], float] = time.monotonic  # flight time, for intervals
    built: dict[str, DetectionSink] = field(default_factory=dict)  # the sinks built before this one, by name


SinkFactory = Callable[[SinkContext], "DetectionSink | None"]
