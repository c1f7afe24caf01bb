"""The world's scenario sections (`crop:` and `light:`) and the disease stages both sides share.

Every field has a default, so a scenario that names only a crop kind gets a field an agronomist
would recognise; the crop's literature ranges live in flight_sim/world/crops.py (docs/WORLD.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from payload.configio import StrictModel

CropKind = Literal["wheat", "soybean", "cucurbit", "grapevine"]
Stage = Literal["early", "moderate", "late"]

# (incidence, severity) at a patch's centre: incidence is the share of leaves infected, severity the
# share of an infected leaf's area covered by lesions and their halo (or by mildew colonies/coating).
STAGES: dict[Stage, tuple[float, float]] = {
    "early": (0.3, 0.01),
    "moderate": (0.7, 0.08),
    "late": (1.0, 0.30),
}


class CropSection(StrictModel):
    """The crop: kind, row direction, and optional overrides of the kind's typical sizes."""

    kind: CropKind = "wheat"
    row_azimuth_deg: float = 0.0  # direction the rows run, degrees clockwise from north
    row_spacing_m: float | None = Field(default=None, gt=0.0)  # None: the kind's typical spacing
    # share of the row spacing the canopy spans across the rows (1 = closed canopy); None: the kind's typical
    canopy_closure: float | None = Field(default=None, gt=0.0, le=1.0)
    canopy_height_m: float | None = Field(default=None, gt=0.0)  # casts the row's shadow; None: typical
    leaf_scale: float = Field(default=1.0, ge=0.5, le=2.0)  # leaf size relative to the kind's typical
    soil_moisture: float = Field(default=0.3, ge=0.0, le=1.0)  # 0 dry (light) .. 1 wet (dark) soil


class LightSection(StrictModel):
    """Sun, sky, cloud shadows, haze and the light's colour, and how they drift over a flight."""

    sun_elevation_deg: float = Field(default=45.0, ge=2.0, le=90.0)
    sun_azimuth_deg: float = 135.0  # clockwise from north
    cloud_cover: float = Field(default=0.0, ge=0.0, le=1.0)  # share of the ground under cloud shadow
    # 1 - transmittance over a 100 m path (0 clear; 0.5 halves the ground's contrast 100 m away):
    # meteorological visibility = 3.912 * 100 m / -ln(1 - haze) (Koschmieder)
    haze: float = Field(default=0.0, ge=0.0, le=0.99)
    colour_temp_k: float = Field(default=5500.0, ge=2000.0, le=12000.0)  # of direct sunlight
    sun_elevation_rate_deg_s: float = 0.0  # drift over the flight (the sun moves about 0.004 deg/s)
    sun_azimuth_rate_deg_s: float = 0.0
    cloud_speed_m_s: float = Field(default=4.0, ge=0.0)  # cloud shadows drift with the wind
    cloud_direction_deg: float = 60.0  # direction the cloud shadows move towards, clockwise from north
    cloud_size_m: float = Field(default=150.0, gt=1.0)  # typical cloud shadow size


@dataclass(frozen=True)
class PatchSpec:
    """A disease patch as the world reads it, for callers without a scenario (benches, figures, tools).

    Scenarios bring their own patch objects; the world needs only these attributes.
    """

    cls: str  # "rust" | "powdery_mildew"
    east_m: float
    north_m: float
    radius_m: float
    stage: Stage = "moderate"
