"""The output layers' and crops' settings (`sinks:`), read by payload/sinks/layers.py and crops.py."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from payload.configio import StrictModel

LayerFormat = Literal["geojson", "kml", "csv"]


def _all_layer_formats() -> list[LayerFormat]:
    return ["geojson", "kml", "csv"]


class SinksSection(StrictModel):
    """Output layers besides detections.jsonl (which is always written)."""

    formats: list[LayerFormat] = Field(default_factory=_all_layer_formats)
    layers_interval_s: float = Field(default=5.0, ge=0, description="rewrite the layers at most this often")
    crops: bool = Field(default=False, description="save a JPEG of each flagged tile with EXIF GPS tags")
    crop_quality: int = Field(default=90, ge=10, le=100)
