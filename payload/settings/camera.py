"""The camera's settings (`camera:`): intrinsics and mount, read by payload/geo/."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from payload.configio import StrictModel

# The names of payload/geo/camerapresets.py PRESETS (settings sit below geo in the rooms, so they cannot
# import them; tests/payload/test_camerapresets.py keeps the two lists equal)
CameraPresetName = Literal["rpi_cam_v2", "rpi_cam_v3", "rpi_hq_6mm", "mavic3m_rgb", "coral_camera"]


MAX_LATENCY_S = 2.0  # a network camera's worst exposure-to-delivery delay is well under a second


class CameraSection(StrictModel):
    """The camera's intrinsics and mount (payload/geo/camera.py, payload/geo/camerapresets.py).

    The geometry is given one way: a calibration (`K`), a documented `preset`, or the datasheet's
    `sensor_width_mm`/`sensor_height_mm`/`focal_length_mm` (the frame spans the sensor's full width);
    with none of them, the field of view `hfov_deg` (the historic default, which each of them overrides).
    """

    hfov_deg: float = Field(default=62.2, gt=0, lt=180, description="horizontal field of view (ideal camera)")
    preset: CameraPresetName | None = Field(
        default=None, description="a documented camera (payload/geo/camerapresets.py, docs/WORLD.md); overrides "
        "hfov_deg")
    sensor_width_mm: float | None = Field(default=None, gt=0, le=100, description="active sensor area width")
    sensor_height_mm: float | None = Field(default=None, gt=0, le=100, description="active sensor area height")
    focal_length_mm: float | None = Field(default=None, gt=0, le=1000, description="lens focal length")
    exposure_s: float | None = Field(
        default=None, gt=0, le=1.0, description="exposure time (motion blur = speed x exposure / GSD); for the record")
    width: int | None = Field(default=None, ge=1, description="calibrated image width; null = frame width")
    height: int | None = Field(default=None, ge=1, description="calibrated image height; null = frame height")
    K: list[list[float]] | None = Field(default=None, description="OpenCV 3x3 camera matrix; overrides hfov_deg")
    dist: list[float] = Field(default_factory=list, description="OpenCV distortion k1 k2 p1 p2 [k3 [k4 k5 k6]]")
    mount_rpy_deg: tuple[float, float, float] = Field(
        default=(0.0, 0.0, 0.0), description="mount roll, pitch, yaw from nadir (pitch + = looks forward)"
    )
    use_gimbal: bool = Field(default=False, description="take the mount angles from MOUNT_STATUS when present")
    latency_s: float = Field(
        default=0.0, description="exposure to delivery: each frame's capture stamp is moved back by it, so the pose "
        "looked up is the one at exposure (docs/TELEMETRY.md, 'Frame time'); 0 = stamped when read")

    @field_validator("latency_s")
    @classmethod
    def _latency(cls, v: float) -> float:
        """A negative latency would stamp frames after they were read, and a huge one is a unit slip (ms for s)."""
        if not v >= 0.0:
            raise ValueError("camera.latency_s is the time from exposure to delivery and cannot be negative (or "
                             "NaN); measure it (python -m tools.latency FLIGHT_DIR) or leave it at 0")
        if v > MAX_LATENCY_S:
            raise ValueError(f"camera.latency_s is in seconds; {v} s is more than any camera's {MAX_LATENCY_S} s "
                             "(was it given in milliseconds?)")
        return v

    @model_validator(mode="after")
    def _one_geometry(self) -> CameraSection:
        """Two geometries at once would leave one silently unused: say which to drop."""
        given = [n for n in ("sensor_width_mm", "sensor_height_mm", "focal_length_mm") if getattr(self, n) is not None]
        if given and len(given) < 3:
            missing = sorted({"sensor_width_mm", "sensor_height_mm", "focal_length_mm"} - set(given))
            raise ValueError(f"camera intrinsics need sensor_width_mm, sensor_height_mm and focal_length_mm together; "
                             f"add {', '.join(missing)} (or give a preset instead)")
        # like K, a preset or intrinsics override hfov_deg (the template config always carries one)
        ways = [w for w, on in (("preset", self.preset is not None), ("sensor_width_mm/focal_length_mm", bool(given)),
                                ("K", self.K is not None)) if on]
        if len(ways) > 1:
            raise ValueError(f"the camera is given {len(ways)} ways ({', '.join(ways)}); keep one of them")
        return self
