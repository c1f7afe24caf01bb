"""The disease map's settings (`map:`, and `site:` with its own plant-scale map), read by payload/geo/."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from payload.configio import StrictModel
from payload.sitefile import load_site


class MapSection(StrictModel):
    """The ground evidence grid, its zones and coverage (payload/geo/grid.py, zones.py, diseasemap.py; docs/MAPS.md)."""

    cell_m: float = Field(default=0.5, gt=0.05, le=10.0,
                          description="grid cell size in metres (about a tenth of a tile's ground size)")
    chunk_cells: int = Field(default=64, ge=8, le=1024,
                             description="cells per side of a lazily allocated chunk of the grid")
    prior_logodds: float = Field(default=-2.0, ge=-10.0, le=0.0,
                                 description="log-odds of each disease against healthy before any look (rare)")
    clamp_logodds: float = Field(default=8.0, gt=0.0, le=8.18,
                                 description="a cell's evidence stays within +-this, so it can change its mind")
    decorrelation_m: float = Field(
        default=1.0, gt=0.0,
        description="camera travel over which consecutive views count as one independent look: a frame's "
        "evidence is weighted by min(1, distance moved since the previous frame / this), so a hover adds "
        "almost nothing and the frame rate does not change the map",
    )
    explain_away: bool = Field(
        default=True,
        description="a disease call's evidence goes to the tile's cells by their current probability, not "
        "evenly: ground seen only beside a patch stops growing its zone (docs/MAPS.md)",
    )
    zone_threshold: float = Field(
        default=0.5, gt=0.0, lt=1.0,
        description="posterior probability of a disease from which a cell belongs to a zone (recall first)",
    )
    min_zone_area_m2: float = Field(default=1.0, ge=0.0, description="smaller connected areas are not zones")
    zones_every_frames: int = Field(default=10, ge=1, le=10000,
                                    description="zones are re-extracted (and new ones alerted) every this many frames")
    coverage_min_looks: int = Field(default=3, ge=1, le=15,
                                    description="the 'well seen' coverage layer: cells seen at least this often")
    pose_sigma_m: float = Field(default=1.0, ge=0.0,
                                description="1-sigma horizontal error of a trusted pose, added to each zone's "
                                "position uncertainty")
    rasters: bool = Field(default=True, description="write GeoTIFF rasters (probability per disease, look count) "
                          "at the end of the run and in `payload export`")


def _site_map_defaults() -> MapSection:
    """Map settings at the scale of plants on a shelf (a rack face is seen from 1-3 m, not 30 m)."""
    return MapSection(cell_m=0.06, decorrelation_m=0.25, min_zone_area_m2=0.03, pose_sigma_m=0.1,
                      zones_every_frames=10, rasters=False)


class SiteSection(StrictModel):
    """An indoor farm's layout (payload/geo/site.py, docs/INDOOR.md): rays meet rack faces, maps live on them."""

    file: Path = Field(description="site YAML file: racks (position, heading, length, shelves, bays), names")
    map: MapSection = Field(
        default_factory=_site_map_defaults,
        description="the evidence grid of each rack face (along, up metres): same model as `map`, plant scale",
    )

    @field_validator("file")
    @classmethod
    def _site_file_is_valid(cls, v: Path) -> Path:
        """Read the site file now, so a wrong rack is a config error naming the site file, not a mid-flight one."""
        path = v.expanduser().absolute()
        load_site(path)
        return path
