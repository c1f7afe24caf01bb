"""The detection sinks the payload knows, in the order each record passes through them.

`build_sinks` builds every sink the config enables: each factory reads its own config section and
returns None when it is off. Order matters: crops first (they add the crop's path to the record),
then detections.jsonl (the source of truth), then the layers built from it, then the live alerts, then the mosaic
(it reads only frames; closing first, it writes its files before the others finish).
Adding a sink: a module in payload/sinks/ with a class implementing DetectionSink (base.py) and a
`from_context` factory, its line here, and its settings in payload/config.py SinksSection.
"""

from __future__ import annotations

from payload.sinks.alerts import AlertsSink
from payload.sinks.base import DetectionSink, SinkContext, SinkFactory
from payload.sinks.crops import CropsSink
from payload.sinks.jsonl import DetectionsJsonl
from payload.sinks.layers import LayersSink
from payload.sinks.mosaic import MosaicSink

SINKS: dict[str, SinkFactory] = {
    "crops": CropsSink.from_context,
    "jsonl": DetectionsJsonl.from_context,
    "layers": LayersSink.from_context,
    "alerts": AlertsSink.from_context,
    "mosaic": MosaicSink.from_context,
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
