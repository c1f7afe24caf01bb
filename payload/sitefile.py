"""The site file of an indoor farm: racks of shelves in a local frame, and the names growers use for them.

Indoors a sighting's useful address is "rack B, bay 4, shelf 2", not a latitude. The site file
says where each rack stands in the local frame the autopilot's estimator flies in (metres east and
north of the EKF origin, the floor at up = 0), which of its long sides carry plants facing an
aisle, and how it is divided: shelves by height, bays by length. The payload turns rays into
sightings on the rack faces with it (payload/geo/site.py) and the simulator builds its farm from
the same file, so the file is the one truth both agree on (docs/INDOOR.md has the format).

A core module (a config file's model, like payload/settings/'s sections) so that the payload
config can check a site file when it is loaded: a rack that makes no sense is an error naming
the site file, the field and the value, before any flight.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

from pydantic import Field

from payload.configio import StrictModel, load_config
from payload.errors import ConfigError

Side = Literal["left", "right"]


class SiteOrigin(StrictModel):
    """Where the local frame's origin is on Earth (the EKF origin); optional: indoors it is often unknown."""

    lat: float = Field(ge=-90.0, le=90.0, description="degrees WGS84")
    lon: float = Field(ge=-180.0, le=180.0, description="degrees WGS84")
    alt: float = Field(default=0.0, ge=-500.0, le=9000.0, description="metres above mean sea level of the floor")


class Rack(StrictModel):
    """One rack: a box standing on the floor, its long sides (faces) holding shelves of plants."""

    name: str = Field(min_length=1, max_length=8, pattern=r"^[A-Za-z0-9_-]+$",
                      description="what growers call it (A, B, R12): used in alerts, so short")
    position_m: tuple[float, float] = Field(
        description="east, north metres of the START of the rack's centre line (floor level) in the local frame")
    heading_deg: float = Field(ge=-360.0, le=360.0,
                               description="direction from the rack's start to its end, degrees clockwise from north")
    length_m: float = Field(gt=0.2, le=500.0)
    depth_m: float = Field(default=0.6, gt=0.0, le=10.0,
                           description="front to back; faces are depth/2 from the centre line")
    height_m: float = Field(gt=0.1, le=30.0, description="top of the rack above the floor")
    faces: list[Side] = Field(
        default_factory=lambda: list[Side](("left", "right")), min_length=1, max_length=2,
        description="sides carrying plants that face an aisle, as seen walking from the rack's start to its end")
    shelf_heights_m: list[float] = Field(
        min_length=1, description="heights of the shelf surfaces above the floor, bottom first (shelf 1 = lowest)")
    bay_width_m: float = Field(gt=0.05, le=100.0, description="bays are numbered from 1 at the rack's start")
    plant_spacing_m: float = Field(default=0.2, gt=0.01, le=10.0,
                                   description="plants are numbered from 1 at the rack's start, this far apart")

    @property
    def bays(self) -> int:
        return max(1, math.ceil(self.length_m / self.bay_width_m - 1e-9))


class SiteLayout(StrictModel):
    """The whole site file."""

    name: str = Field(default="site", min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$",
                      description="the local frame's name, written into every local record")
    origin: SiteOrigin | None = Field(
        default=None, description="the EKF origin on Earth, if known: enables WGS84 layers")
    racks: list[Rack] = Field(min_length=1)

    def rack(self, name: str) -> Rack:
        """The rack of that name (KeyError naming the known ones)."""
        for r in self.racks:
            if r.name == name:
                return r
        raise KeyError(f"no rack {name!r} in site {self.name!r} (racks: {', '.join(r.name for r in self.racks)})")


def check_site(site: SiteLayout, source: str) -> SiteLayout:
    """Checks across fields; ConfigError naming the file, the field and the value of each problem."""
    problems: list[str] = []
    seen: set[str] = set()
    for i, r in enumerate(site.racks):
        where = f"racks[{i}]"
        if r.name in seen:
            problems.append(f"field '{where}.name': value {r.name!r} is used by another rack; names must be unique")
        seen.add(r.name)
        h = r.shelf_heights_m
        if any(b <= a for a, b in zip(h, h[1:], strict=False)):
            problems.append(f"field '{where}.shelf_heights_m': value {h} must rise strictly from the bottom shelf up")
        if h[0] < 0 or h[-1] >= r.height_m:
            problems.append(f"field '{where}.shelf_heights_m': value {h} must lie between the floor (0) and the "
                            f"rack's height_m ({r.height_m})")
        if r.bay_width_m > r.length_m + 1e-9:
            problems.append(f"field '{where}.bay_width_m': value {r.bay_width_m} is longer than the rack "
                            f"(length_m {r.length_m})")
        if len(set(r.faces)) != len(r.faces):
            problems.append(f"field '{where}.faces': value {r.faces} names a side twice")
        if not all(math.isfinite(x) for x in r.position_m):
            problems.append(f"field '{where}.position_m': value {list(r.position_m)} must be finite metres")
    if problems:
        raise ConfigError(f"{source}: invalid site file\n" + "\n".join(f"  - {m}" for m in problems))
    return site


def load_site(path: str | Path) -> SiteLayout:
    """Load and check a site YAML file (ConfigError naming the file, field, value and rule)."""
    return check_site(load_config(path, SiteLayout), str(path))
