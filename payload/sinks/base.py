"""The interface every sink implements, and what a sink is built from.

The geotagging handler (payload/pipeline/geotag.py) hands each frame's look record and each detection
record to its sinks in order, tells them about each newly confirmed zone, and ends every frame
(`on_snapshot`) and the run (`on_close`) with them in reverse order, so a sink that reads another's
output, such as the layers reading detections.jsonl, is done before the one it reads. End-of-flight
products (the map's layers and rasters, the prescription, the site products, the mosaic) are sinks
too: they write at `on_close`.

A sink registers itself with `@register_sink(priority, key=..., settings=...)`: its place in the order
(`priority`, lowest first) and, when it has one, the config section it reads (its settings class,
defined in its own module, and the section's YAML key). `payload/config.py` puts every registered
section into `PayloadConfig`; `payload.sinks.registry.build_sinks` builds the sinks the config enables.
A sink module imports only rooms below the config: it reads the config through `ConfigView`
(payload/settings/view.py), its own section by its settings class (`ctx.settings(AlertsSection)`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

from payload.geo.mapkind import MapKind
from payload.settings.view import ConfigView
from payload.types import FrameResult, StatusSender


class DetectionSink(Protocol):
    """Somewhere a flight's records go (a file, a layer, the ground station, an end-of-flight product).

    The lifecycle: `earlier` once at the start (a resumed folder); per frame `on_look` for its look
    record, `on_record` for each detection, `on_zone` for each newly confirmed zone and `on_snapshot`
    when the frame is done; `on_close` once at the end, after the map's final zones.
    """

    name: str

    def earlier(self) -> Iterable[dict[str, Any]]:
        """Records this sink already holds from an earlier run into the same folder (a restart after a
        crash), so the map can be rebuilt from their looks without alerting again; most sinks hold none."""
        ...

    def on_look(self, look: dict[str, Any], result: FrameResult) -> None:
        """The frame's look record (every tile, its scores and footprint, the pose trust), before any
        detection of the frame; the map is updated from it once every sink has it."""
        ...

    def on_record(self, det: dict[str, Any], result: FrameResult) -> None:
        """One detection (flagged tile) of `result`'s frame, in sink order: a sink may add keys that later
        sinks keep (the crops sink adds the crop's path before the JSONL sink writes the record)."""
        ...

    def on_zone(self, zone: dict[str, Any]) -> None:
        """A zone was confirmed for the first time (its feature: properties with id, label, peak_p, and
        WGS84 polygons or site terms)."""
        ...

    def on_snapshot(self) -> None:
        """The frame's records are all handed on (called every frame): periodic layers are rebuilt and
        queued messages sent when due."""
        ...

    def on_close(self) -> None:
        """The flight is over and the map holds its final zones: write the end-of-flight products, flush,
        release. Called once, last sink first."""
        ...


class SinkBase:
    """Do-nothing defaults, so a sink implements only the calls it cares about."""

    name = "sink"

    def earlier(self) -> Iterable[dict[str, Any]]:
        return ()

    def on_look(self, look: dict[str, Any], result: FrameResult) -> None:
        return None

    def on_record(self, det: dict[str, Any], result: FrameResult) -> None:
        return None

    def on_zone(self, zone: dict[str, Any]) -> None:
        return None

    def on_snapshot(self) -> None:
        return None

    def on_close(self) -> None:
        return None

    @classmethod
    def from_context(cls, ctx: SinkContext) -> DetectionSink | None:
        """The sink as the config wants it, or None when it is off."""
        raise NotImplementedError(cls.__name__)


def _always() -> bool:
    return True


@dataclass
class SinkContext:
    """What a sink may be built from: the config and the run's shared services (no globals)."""

    cfg: ConfigView
    out_dir: Path
    zones: Callable[[], Sequence[dict[str, Any]]]  # a snapshot of the current zones (features: plain data)
    status: StatusSender | None = None  # the ground-station link, when there is one
    crops_allowed: Callable[[], bool] = _always  # the free-disk guard's verdict (payload/ops/diskguard.py)
    clock: Callable[[], float] = time.monotonic  # flight time, for intervals
    built: dict[str, DetectionSink] = field(default_factory=dict)  # the sinks built before this one, by name
    map: MapKind | None = None  # the run's disease map (the product sinks write from it at close)
    model_sha256: str = ""  # the bundle's model, for what names it (the camera's model_name)
    # the bundle's decision thresholds per disease (the review sink's margin); empty when not known
    thresholds: Mapping[str, float] = field(default_factory=dict)

    def settings(self, kind: type[S]) -> S:
        """The config section a sink registered, by its settings class."""
        return self.cfg.section(kind)


SinkFactory = Callable[[SinkContext], "DetectionSink | None"]
S = TypeVar("S", bound=BaseModel)
B = TypeVar("B", bound=type[SinkBase])


@dataclass(frozen=True)
class SinkEntry:
    """A registered sink: its name, its place in the order, how it is built, and the config section it
    reads (`key` in the YAML, `settings` its class), if any."""

    name: str
    priority: int
    factory: SinkFactory
    key: str | None = None
    settings: type[BaseModel] | None = None


REGISTERED: dict[str, SinkEntry] = {}


def register_sink(priority: int, *, key: str | None = None,
                  settings: type[BaseModel] | None = None) -> Callable[[B], B]:
    """Class decorator: the sink joins the registry under its `name` (its `from_context` is its factory); records
    pass through the sinks in `priority` order, lowest first. `key`/`settings`: the config section it reads
    (several sinks may read one section: the first registered with it brings its class)."""

    def add(cls: B) -> B:
        name = cls.name
        if name in REGISTERED:
            raise ValueError(f"sink {name!r} registered twice")
        REGISTERED[name] = SinkEntry(name, priority, cls.from_context, key, settings)
        return cls

    return add


def registered_sinks() -> list[SinkEntry]:
    """Every registered sink, in priority order."""
    return sorted(REGISTERED.values(), key=lambda e: e.priority)


def registered_sections() -> dict[str, type[BaseModel]]:
    """The config sections the registered sinks read, YAML key -> settings class, in priority order."""
    out: dict[str, type[BaseModel]] = {}
    for e in registered_sinks():
        if e.key is not None and e.settings is not None:
            if out.setdefault(e.key, e.settings) is not e.settings:
                raise ValueError(f"config section {e.key!r} registered with two settings classes")
    return out
