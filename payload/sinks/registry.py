"""The sinks the payload knows, in the order each record passes through them.

`build_sinks` builds every sink the config enables: each factory reads its own config section (and
the map kind) and returns None when it is off. Order matters: crops first (they add the crop's path to
the record), then detections.jsonl (the source of truth), then the layers built from it, then the live
alerts, then the mosaic (it reads only frames), then the end-of-flight products of the finished map:
the prescription and the ground map's layers (a ground map), the site products (rack faces). They
close in reverse order, so the products are written first, before detections.jsonl is closed.
Adding a sink: a module in payload/sinks/ with a class implementing DetectionSink (base.py) and a
`from_context` factory, its line here, its settings in payload/settings/ (a module of its own, or a
field of SinksSection) and, for a section of its own, its field in payload/config.py PayloadConfig.
"""

from __future__ import annotations

from collections.abc import Sequence

from payload.geo.diseasemap import MAPINFO_SCHEMA, is_look, mapinfo_record
from payload.geo.mapkind import MapKind
from payload.sinks.alerts import AlertsSink
from payload.sinks.base import DetectionSink, SinkContext, SinkFactory
from payload.sinks.crops import CropsSink
from payload.sinks.jsonl import DetectionsJsonl
from payload.sinks.layers import LayersSink
from payload.sinks.maplayers import MapLayersSink
from payload.sinks.mosaic import MosaicSink
from payload.sinks.prescription import PrescriptionSink
from payload.sinks.sitelayers import SiteLayersSink

SINKS: dict[str, SinkFactory] = {
    "crops": CropsSink.from_context,
    "jsonl": DetectionsJsonl.from_context,
    "layers": LayersSink.from_context,
    "alerts": AlertsSink.from_context,
    "mosaic": MosaicSink.from_context,
    "prescription": PrescriptionSink.from_context,
    "maplayers": MapLayersSink.from_context,
    "sitelayers": SiteLayersSink.from_context,
}


def build_sinks(ctx: SinkContext) -> list[DetectionSink]:
    """The sinks the config enables, in SINKS order (each factory sees the ones built before it)."""
    out: list[DetectionSink] = []
    for name, factory in SINKS.items():
        sink = factory(ctx)
        if sink is not None:
            ctx.built[name] = sink
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
    jsonl = next((s for s in sinks if s.name == "jsonl"), None)
    if isinstance(jsonl, DetectionsJsonl) and not has_info:
        jsonl.write_record(mapinfo_record(dmap.sensor, dmap.cfg))
    return resumed
