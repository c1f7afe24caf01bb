"""The field report's settings (`report:`), read by payload/report/html.py."""

from __future__ import annotations

from pydantic import Field

from payload.configio import StrictModel


class ReportSection(StrictModel):
    """report.html, the field report written at the end of the run and by `payload export` (payload/report/)."""

    enabled: bool = True
    crops_per_zone: int = Field(default=6, ge=0, le=50, description="evidence crops shown for each zone")
    crop_px: int = Field(default=112, ge=32, le=512, description="longer side of a crop in the report")
    map_max_px: int = Field(default=1600, ge=256, le=8192,
                            description="longer side of the mosaic and probability images embedded in the map")
