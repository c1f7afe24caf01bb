"""The sinks the payload knows, in the order each record passes through them.

Each sink registers itself (`register_sink` in base.py: its priority, and the config section it reads);
the import list below is the one place that names the sink modules, so importing this module registers
them all (and `payload/config.py`, which imports it, finds every sink's section). `build_sinks` builds
every sink the config enables: each factory reads its own config section (and the map kind) and returns
None when it is off. Order matters (priority, lowest first): crops first (they add the crop's path to
the record), then the review's kept tiles, then detections.jsonl (the source of truth), then the layers
built from it, then the live alerts, then the mosaic (it reads only frames), then the end-of-flight
products of the finished map: the prescription and the ground map's layers (a ground map), the site
products (rack faces). They close in reverse order, so the products are written first, before
detections.jsonl is closed. Adding a sink: its module in payload/sinks/ (the sink, its settings class,
`@register_sink`) and its line in the import list below.
"""

from __future__ import annotations

from collections.abc import Sequence

from payload.geo.diseasemap import MAPINFO_SCHEMA, is_look, mapinfo_record
from payload.geo.mapkind import MapKind

# the sink modules, one line each: importing one registers its sink (base.py `register_sink`)
from payload.sinks import (
    alerts,  # noqa: F401 - registers itself
    camproto,  # noqa: F401 - registers itself
    crops,  # noqa: F401 - registers itself
    jsonl,  # noqa: F401 - registers itself
    layers,  # noqa: F401 - registers itself
    maplayers,  # noqa: F401 - registers itself
    mosaic,  # noqa: F401 - registers itself
    prescription,  # noqa: F401 - registers itself
    review,  # noqa: F401 - registers itself
    sitelayers,  # noqa: F401 - registers itself
)
from payload.sinks.base import DetectionSink, SinkContext, SinkFactory, registered_sinks
from payload.sinks.jsonl import DetectionsJsonl


def sink_factories() -> dict[str, SinkFactory]:
    """Every registered sink's factory, by name, in priority order."""
    return {e.name: e.factory for e in registered_sinks()}


def build_sinks(ctx: SinkContext) -> list[DetectionSink]:
    """The sinks the config enables, in priority order (each factory sees the ones built before it)."""
    out: list[DetectionSink] = []
    for entry in registered_sinks():
        sink = entry.factory(ctx)
        if sink is not None:
            ctx.built[entry.name] = sink
            out.append(sink)
    return out


def replay_earlier(sinks: Sequence[DetectionSink], dmap: MapKind) -> int:
    """A restart after a crash continues the same files: earlier looks rebuild the map (without alerting
    again), earlier detections stay in the layers. Writes the map-info record when the file has none yet.
    Returns how many earlier detections there were."""
    resumed = 0
    has_info = False
    for sink in sinks:
        for rec in sink.earlier():
            if is_look(rec):
                dmap.add_look(rec)
            elif rec.get("schema") == MAPINFO_SCHEMA:
                has_info = True
            else:
                resumed += 1
    jsonl_sink = next((s for s in sinks if s.name == "jsonl"), None)
    if isinstance(jsonl_sink, DetectionsJsonl) and not has_info:
        jsonl_sink.write_record(mapinfo_record(dmap.sensor, dmap.cfg))
    return resumed
