"""How sightings are placed and trusted (`geotag:`), read by payload/geo/ and the preflight."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from payload.configio import StrictModel
from payload.demfile import check_dem


class GeotagSection(StrictModel):
    """How detections are placed on the ground and when a pose is not trusted."""

    ground: Literal["home", "agl", "dem"] = Field(
        default="home", description="home: flat ground at home altitude; agl: fixed height_agl_m below the camera; "
        "dem: the terrain model in `dem` (docs/TERRAIN.md)"
    )
    height_agl_m: float | None = Field(default=None, gt=0, description="needed when ground is agl")
    dem: Path | None = Field(
        default=None, description="ground: dem: a single-band GeoTIFF of ground heights in metres above mean sea "
        "level (the autopilot's altitude datum), any CRS, covering the flight and its camera footprints")
    dem_vertical_offset_m: float = Field(
        default=0.0, ge=-200.0, le=200.0, description="added to every DEM height to bring it to the autopilot's "
        "altitude datum (e.g. minus the geoid undulation for a DSM in ellipsoidal heights)")
    dem_cell_m: float | None = Field(
        default=None, gt=0.1, le=100.0, description="grid the DEM is resampled to in the local frame (default: "
        "its own resolution)")
    max_pose_age_s: float = Field(default=0.5, gt=0, description="older poses are flagged pose_stale")
    min_height_agl_m: float = Field(
        default=5.0, ge=0, description="below this (take-off, landing) sightings are flagged below_min_height"
    )
    min_fix_type: int = Field(default=3, ge=0, le=6, description="GPS fix below this is flagged (3 = 3D)")
    max_hdop: float = Field(default=5.0, gt=0, description="HDOP above this is flagged")
    max_estimator_variance: float = Field(
        default=0.5, gt=0,
        description="local frame: an EKF_STATUS_REPORT/ESTIMATOR_STATUS position or velocity variance above "
        "this (normalised; 1 = failing) flags the pose estimator_unhealthy",
    )
    max_place_sigma_m: float = Field(
        default=4.0, gt=0,
        description="a look whose camera axis's ground-position 1-sigma (payload/geo/placeerror.py) exceeds this "
        "is flagged place_uncertain and kept out of the map (a sighting too, by its own tile's): about half a "
        "tile's ground at survey height",
    )
    max_tilt_deg: float = Field(
        default=35.0, gt=0, le=90,
        description="a camera axis further than this from straight down flags the frame tilt_high (kept out of "
        "the map): a fixed-wing survey banks to about 30 degrees in its turns")
    max_rate_dps: float = Field(
        default=60.0, gt=0,
        description="an attitude rate above this (deg/s, over the samples around the frame) flags the frame "
        "rate_high (kept out of the map)")
    require_estimator_report: bool = Field(
        default=False,
        description="local frame: flag poses while no estimator report has been heard (off: absence is not "
        "evidence of a bad estimate; many autopilots do not stream it unless asked)",
    )


    @field_validator("dem")
    @classmethod
    def _dem_is_readable(cls, v: Path | None) -> Path | None:
        """Read the DEM's header now, so a wrong file is a config error naming it, not a mid-flight one."""
        if v is None:
            return None
        return check_dem(v).path

    @model_validator(mode="after")
    def _dem_when_ground_is_dem(self) -> GeotagSection:
        if self.ground == "dem" and self.dem is None:
            raise ValueError("ground is 'dem' but 'geotag.dem' (the terrain GeoTIFF) is not given; add it")
        return self
