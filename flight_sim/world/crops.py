"""Each crop kind's physical sizes and colours, as the world draws them (sources: docs/WORLD.md).

Lengths are metres, angles degrees, reflectances linear RGB (share of light reflected in the
camera's red, green and blue bands). A leaf is drawn as seen from above: an ellipse with the leaf's
projected length and width, in one of two overlapping layers (the upper layer sunlit, the lower one
partly shaded by it); the canopy spans a band of each row, soil lies between the bands.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from flight_sim.world.config import CropKind, CropSection

RGB = tuple[float, float, float]


@dataclass(frozen=True)
class CropParams:
    """The sizes and colours one crop kind is drawn with."""

    row_spacing_m: float
    closure: float  # share of the row spacing the canopy band spans
    height_m: float  # canopy top above the soil (the row's shadow length is height / tan(sun elevation))
    leaf_length_m: float  # projected onto the ground (an erect cereal leaf looks shorter than it is)
    leaf_width_m: float
    inclination_deg: tuple[float, float]  # leaf inclination from horizontal: mean, half-range (uniform)
    leaf_angle_deg: tuple[float, float]  # leaf azimuth relative to the row: mean, half-range per row and layer
    reflectance: RGB  # healthy upper leaf surface
    rust_form: str  # "stripes" (pustules in lines along veins, cereals) or "clusters" (broad leaves)
    lobes: int  # lobes on the leaf outline (0 = entire margin)
    irregularity_m: float  # along-row scale over which the canopy band's width varies (plant to plant)
    leaf_twist_deg: float  # each leaf turned in the ground plane by up to this (round leaves: any angle)


CROPS: dict[CropKind, CropParams] = {
    "wheat": CropParams(
        row_spacing_m=0.175, closure=0.9, height_m=0.8, leaf_length_m=0.20, leaf_width_m=0.015,
        inclination_deg=(60.0, 20.0), leaf_angle_deg=(0.0, 70.0), reflectance=(0.045, 0.095, 0.032),
        rust_form="stripes", lobes=0, irregularity_m=0.12, leaf_twist_deg=0.0),
    "soybean": CropParams(
        row_spacing_m=0.76, closure=0.8, height_m=0.8, leaf_length_m=0.085, leaf_width_m=0.055,
        inclination_deg=(35.0, 25.0), leaf_angle_deg=(0.0, 90.0), reflectance=(0.050, 0.115, 0.030),
        rust_form="clusters", lobes=0, irregularity_m=0.15, leaf_twist_deg=30.0),
    "cucurbit": CropParams(
        row_spacing_m=1.8, closure=0.6, height_m=0.35, leaf_length_m=0.20, leaf_width_m=0.20,
        inclination_deg=(25.0, 20.0), leaf_angle_deg=(0.0, 90.0), reflectance=(0.048, 0.110, 0.030),
        rust_form="clusters", lobes=5, irregularity_m=0.4, leaf_twist_deg=180.0),
    "grapevine": CropParams(
        row_spacing_m=2.5, closure=0.3, height_m=1.9, leaf_length_m=0.15, leaf_width_m=0.15,
        inclination_deg=(40.0, 25.0), leaf_angle_deg=(0.0, 90.0), reflectance=(0.055, 0.115, 0.035),
        rust_form="clusters", lobes=5, irregularity_m=0.5, leaf_twist_deg=180.0),
}

GAP_REFLECTANCE: RGB = (0.030, 0.050, 0.020)  # deep canopy: lower leaves and soil in the canopy's shade
SOIL_DRY: RGB = (0.25, 0.19, 0.13)
SOIL_WET: RGB = (0.11, 0.085, 0.06)
HEADLAND: RGB = (0.20, 0.17, 0.12)  # the track around the field: compacted bare soil


def crop_params(crop: CropSection) -> CropParams:
    """The kind's typical parameters with the scenario's overrides applied."""
    p = CROPS[crop.kind]
    p = replace(p, leaf_length_m=p.leaf_length_m * crop.leaf_scale, leaf_width_m=p.leaf_width_m * crop.leaf_scale)
    if crop.row_spacing_m is not None:
        p = replace(p, row_spacing_m=crop.row_spacing_m)
    if crop.canopy_closure is not None:
        p = replace(p, closure=crop.canopy_closure)
    if crop.canopy_height_m is not None:
        p = replace(p, height_m=crop.canopy_height_m)
    return p


def soil_reflectance(moisture: float) -> RGB:
    """Soil darkens as it wets (linear in the moisture share between the dry and wet reflectance)."""
    m = float(moisture)
    return tuple(d + (w - d) * m for d, w in zip(SOIL_DRY, SOIL_WET, strict=True))  # type: ignore[return-value]
