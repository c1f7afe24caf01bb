"""Cameras by their intrinsics: sensor size and focal length, and a few documented scouting cameras.

A camera's ground resolution follows from its sensor, lens and output size (GSD = sensor width x
height / (focal length x image width)), not from a field-of-view number typed in by hand. The
payload (its `camera:` config) and the simulator (a scenario's `camera:`) both build their camera
model here, so the two always agree on the geometry.

Every preset names its source: a datasheet or the maker's specification page. A preset without
one is not allowed (tests/payload/test_camerapresets.py checks it). docs/WORLD.md has the table.

Output frames are the sensor's full width scaled to the output width (binned or scaled modes that
keep the full field of view, as the Raspberry Pi ISP does for 640x480 from a 4:3 sensor), with
square pixels and the principal point at the image centre; an output aspect wider than the
sensor's crops its top and bottom, one taller than the sensor's cannot be made and is an error.
Pure numpy-free arithmetic plus payload.geo.camera: a contract module (no I/O).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from payload.geo.camera import CameraModel

# the output may be this much taller (relative) than the sensor's aspect allows: rounding of sizes
ASPECT_TOLERANCE = 0.02


@dataclass(frozen=True)
class CameraPreset:
    """A camera as its datasheet gives it: active sensor area, lens focal length, native resolution."""

    name: str
    title: str
    sensor_width_mm: float
    sensor_height_mm: float
    focal_length_mm: float
    native_width: int
    native_height: int
    full_fov_scaled: bool  # a binned/scaled output mode keeps the full field of view
    scaled_mode: str  # which mode that is (or why there is none)
    source: str  # the datasheet / specification page the numbers come from

    @property
    def hfov_deg(self) -> float:
        """Horizontal field of view of the full sensor width."""
        return intrinsics_hfov_deg(self.sensor_width_mm, self.focal_length_mm)

    def camera(self, width: int, height: int, mount_rpy_deg: Sequence[float] = (0.0, 0.0, 0.0)) -> CameraModel:
        """The camera model of this preset's frames scaled to width x height."""
        return camera_from_intrinsics(width, height, self.sensor_width_mm, self.sensor_height_mm,
                                      self.focal_length_mm, mount_rpy_deg)


PRESETS: dict[str, CameraPreset] = {
    p.name: p
    for p in (
        CameraPreset(
            "rpi_cam_v2", "Raspberry Pi Camera Module 2 (Sony IMX219)", 3.68, 2.76, 3.04, 3280, 2464, True,
            "1640x1232 2x2 binned (full field of view); 640x480 is scaled from it by the ISP",
            "https://www.raspberrypi.com/documentation/accessories/camera.html (hardware specification: sensor "
            "image area 3.68 x 2.76 mm, focal length 3.04 mm, 3280 x 2464 px, horizontal FOV 62.2 deg)"),
        CameraPreset(
            "rpi_cam_v3", "Raspberry Pi Camera Module 3 (Sony IMX708, standard lens)", 6.45, 3.63, 4.74, 4608, 2592,
            True, "2304x1296 2x2 binned (full field of view); the sensor is 16:9, so a full-width output is 16:9 "
            "too (640x360, not 640x480)",
            "https://www.raspberrypi.com/documentation/accessories/camera.html (hardware specification: sensor "
            "image area 6.45 x 3.63 mm, focal length 4.74 mm, 4608 x 2592 px, horizontal FOV 66 deg)"),
        CameraPreset(
            "rpi_hq_6mm", "Raspberry Pi HQ Camera (Sony IMX477) with the 6 mm CS-mount wide-angle lens", 6.287, 4.712,
            6.0, 4056, 3040, True, "2028x1520 2x2 binned (full field of view)",
            "https://datasheets.raspberrypi.com/hq-camera/hq-camera-product-brief.pdf (sensor image area "
            "6.287 x 4.712 mm, 4056 x 3040 px, 1.55 um pixels); lens: "
            "https://www.raspberrypi.com/documentation/accessories/camera.html#recommended-lenses (6 mm wide angle, "
            "CS mount, 63 deg field angle)"),
        CameraPreset(
            "mavic3m_rgb", "DJI Mavic 3 Multispectral, RGB camera (4/3 CMOS, 20 MP)", 17.3, 13.0, 12.0, 5280, 3956,
            True, "the aircraft records full-frame stills; video and live view are scaled from the full sensor",
            "https://ag.dji.com/mavic-3-m/specs (RGB camera: 4/3 CMOS, 20 MP effective, FOV 84 deg, equivalent "
            "focal length 24 mm, 5280 x 3956 px); 4/3 active area 17.3 x 13.0 mm; focal length 12.0 mm from the "
            "84 deg diagonal field of view (21.6 mm diagonal)"),
        CameraPreset(
            "coral_camera", "Coral Camera (OmniVision OV5645)", 3.63, 2.72, 2.5, 2592, 1944, True,
            "1296x972 binned (full field of view); the sensor's own ISP scales further",
            "https://coral.ai/products/camera (OV5645, focal length 2.5 mm, field of view 84.0 deg diagonal); "
            "OV5645 product brief (https://www.ovt.com/products/ov5645/): 2592 x 1944 px of 1.4 um, 1/4 inch "
            "optical format, so 3.63 x 2.72 mm"),
    )
}


def intrinsics_hfov_deg(sensor_width_mm: float, focal_length_mm: float) -> float:
    """Horizontal field of view (degrees) of a sensor width behind a focal length."""
    if sensor_width_mm <= 0 or focal_length_mm <= 0:
        raise ValueError(f"sensor width and focal length must be positive, got {sensor_width_mm} mm and "
                         f"{focal_length_mm} mm")
    return math.degrees(2.0 * math.atan(sensor_width_mm / (2.0 * focal_length_mm)))


def max_output_height(width: int, sensor_width_mm: float, sensor_height_mm: float) -> int:
    """The tallest output a `width`-pixel frame spanning the sensor's width can have (square pixels)."""
    return int(math.floor(width * sensor_height_mm / sensor_width_mm * (1.0 + ASPECT_TOLERANCE)))


def camera_from_intrinsics(width: int, height: int, sensor_width_mm: float, sensor_height_mm: float,
                           focal_length_mm: float, mount_rpy_deg: Sequence[float] = (0.0, 0.0, 0.0)) -> CameraModel:
    """The ideal camera of width x height frames that span the sensor's full width (ValueError if too tall)."""
    if sensor_height_mm <= 0:
        raise ValueError(f"sensor height must be positive, got {sensor_height_mm} mm")
    top = max_output_height(width, sensor_width_mm, sensor_height_mm)
    if height > top:
        raise ValueError(
            f"a {width}x{height} output is taller than the {sensor_width_mm} x {sensor_height_mm} mm sensor's aspect: "
            f"at width {width} the height can be at most {top} px; lower the height or use a 4:3 sensor")
    return CameraModel.from_hfov(width, height, intrinsics_hfov_deg(sensor_width_mm, focal_length_mm),
                                 mount_rpy_deg)


def preset(name: str) -> CameraPreset:
    """The preset called `name` (KeyError listing the known names)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown camera preset {name!r}; known: {', '.join(PRESETS)}") from None


def gsd_m(cam: CameraModel, height_agl_m: float) -> float:
    """Metres of ground per pixel at the image centre, straight down from height_agl_m."""
    return height_agl_m / float(cam.K[0, 0])
