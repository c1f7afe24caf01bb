"""The interface every detection sink implements, and what a sink is built from.

The geotagging handler (payload/pipeline/geotag.py) hands each detection record to its sinks in
order (and each frame's look record, every tile with its footprint), tells them about each newly
confirmed zone, and ends every frame and the run with them (in reverse
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
from payload.types import FrameResult, StatusSender


class DetectionSink(Protocol):
    """Somewhere detection records go (a file, a layer, the ground station)."""

    name: str

    def earlier(self) -> Iterable[dict[str, Any]]:
        """Records this sink already holds from an earlier run into the same folder (a restart after a
        crash), so the map can be rebuilt from their looks without alerting again; most sinks hold none."""
        ...

    def write_look(self, look: dict[str, Any], result: FrameResult) -> None:
        """The frame's look record (every tile, its scores and footprint, the pose trust), before any
        detection of the frame; the map is updated from it once every sink has it."""
        ...

    def write(self, det: dict[str, Any], result: FrameResult) -> None:
        """One detection of `result`'s frame. Called in sink order: a sink may add keys to `det` that
        later sinks keep (the crops sink adds the crop's path before the JSONL sink writes the record)."""
        ...

    def new_zone(self, zone: dict[str, Any]) -> None:
        """A zone was confirmed for the first time (its feature: properties with id, label, lat, lon,
        peak_p..., and WGS84 polygons)."""
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

    def write_look(self, look: dict[str, Any], result: FrameResult) -> None:
        return None

    def new_zone(self, zone: dict[str, Any]) -> None:
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
    zones: Callable[[], list[dict[str, Any]]]  # a snapshot of the current zones (features: plain data)
    status: StatusSender | None = None  # the ground-station link, when there is one
    crops_allowed: Callable[[], bool] = _always  # the free-disk guard's verdict (payload/ops/diskguard.py)
    clock: Callable[[], float] = time.monotonic  # flight time, for intervals
    built: dict[str, DetectionSink] = field(default_factory=dict)  # the sinks built before this one, by name


SinkFactory = Callable[[SinkContext], "DetectionSink | None"]
