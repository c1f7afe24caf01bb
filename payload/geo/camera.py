"""Camera geometry: pixels <-> points on the ground, for a camera carried by the vehicle.

Pure numpy (plus payload.geo.frames for lat/lon <-> local ENU); no I/O and no clocks, so the simulator can
render with exactly the model the payload inverts (docs/CONTRACTS.md section 2).

The ground is flat at `ground_alt_m` when a float is given (the historic assumption, computed exactly
as it always was), or any `payload.geo.surface.Surface` anchored to the Earth (`surface.frame`): a
terrain model (DEM), a tilted plane. The camera only makes rays (`pixels_to_rays_enu`); the surface
says where they end (docs/TERRAIN.md).

Frames
- World: local tangent plane East-North-Up whose origin is the ground point under the camera.
- Vehicle body: Forward-Right-Down, attitude Z-Y-X (yaw, pitch, roll) relative to North-East-Down
  as MAVLink ATTITUDE reports it (radians).
- Camera: OpenCV convention, x right in the image, y down in the image, z along the optical axis.
- Mount: the camera's orientation relative to the body, as Z-Y-X (yaw, pitch, roll) in degrees
  applied to the nadir mount. With mount (0, 0, 0) the optical axis is body-down, the top of the
  image is body-forward and image u grows to body-right. A positive mount pitch tilts the view
  forward of nadir, a positive mount roll tilts it to the left (the same sense as the body's).
- Pixels: continuous (u, v); (0, 0) is the top-left corner of the top-left pixel, the image
  centre is (W/2, H/2). OpenCV calibrations use pixel-centre integers, so `from_calibration`
  shifts the principal point by +0.5 px.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from payload.geo.frames import LocalFrame, enu_to_geodetic, geodetic_to_enu
from payload.geo.surface import GroundSurface, Surface, SurfaceHits
from payload.types import Pose

# What the ray of a pixel is cut with: flat ground at this altitude (m, as the pose's alt_m), or a surface
Ground = float | Surface

# Camera axes (x right, y down, z optical) expressed in the body frame for the nadir mount:
# x -> body right, y -> body backward (image top is forward), z -> body down.
_NADIR_BODY_FROM_CAM = np.array(
    [
        [0.0, -1.0, 0.0],
        [1.0, 0.0, 0.0],
        [0.0, 0.0, 1.0],
    ]
)

_UNDISTORT_ITERATIONS = 40


def rot_zyx(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """Rotation taking body-frame vectors to the parent frame for Z-Y-X (yaw, pitch, roll) angles."""
    cr, sr = math.cos(roll), math.sin(roll)
    cp, sp = math.cos(pitch), math.sin(pitch)
    cy, sy = math.cos(yaw), math.sin(yaw)
    rz = np.array([[cy, -sy, 0.0], [sy, cy, 0.0], [0.0, 0.0, 1.0]])
    ry = np.array([[cp, 0.0, sp], [0.0, 1.0, 0.0], [-sp, 0.0, cp]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, cr, -sr], [0.0, sr, cr]])
    return rz @ ry @ rx


@dataclass(frozen=True)
class CameraModel:
    """Pinhole intrinsics, optional OpenCV distortion and the camera's mount on the body."""

    width: int
    height: int
    K: np.ndarray
    dist: np.ndarray = field(default_factory=lambda: np.zeros(0))
    mount_rpy_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"camera size must be positive, got {self.width}x{self.height}")
        k = np.asarray(self.K, dtype=float)
        if k.shape != (3, 3) or k[0, 0] <= 0 or k[1, 1] <= 0:
            raise ValueError(f"K must be a 3x3 camera matrix with positive focal lengths, got {k.tolist()}")
        d = np.asarray(self.dist, dtype=float).ravel()
        if d.size not in (0, 4, 5, 8) or not np.all(np.isfinite(d)):
            raise ValueError(f"distortion must hold 0, 4, 5 or 8 finite OpenCV coefficients, got {d.tolist()}")
        object.__setattr__(self, "K", k)
        object.__setattr__(self, "dist", d)
        object.__setattr__(self, "mount_rpy_deg", tuple(float(a) for a in self.mount_rpy_deg))

    @classmethod
    def from_hfov(
        cls, width: int, height: int, hfov_deg: float, mount_rpy_deg: Sequence[float] = (0.0, 0.0, 0.0)
    ) -> CameraModel:
        """An ideal camera (square pixels, centred principal point, no distortion) from its width's FOV."""
        if not 0.0 < hfov_deg < 180.0:
            raise ValueError(f"horizontal field of view must be between 0 and 180 degrees, got {hfov_deg}")
        f = (width / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)
        k = np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])
        return cls(int(width), int(height), k, np.zeros(0), tuple(mount_rpy_deg))  # type: ignore[arg-type]

    @classmethod
    def from_calibration(
        cls,
        width: int,
        height: int,
        K: Sequence[Sequence[float]] | np.ndarray,
        dist: Sequence[float] | np.ndarray = (),
        mount_rpy_deg: Sequence[float] = (0.0, 0.0, 0.0),
    ) -> CameraModel:
        """A camera from an OpenCV calibration (K with pixel-centre integers, dist k1 k2 p1 p2 [k3 [k4 k5 k6]])."""
        k = np.array(K, dtype=float).reshape(3, 3).copy()
        k[0, 2] += 0.5  # OpenCV: pixel (0,0) centre is at 0; here its top-left corner is.
        k[1, 2] += 0.5
        return cls(int(width), int(height), k, np.asarray(dist, dtype=float), tuple(mount_rpy_deg))  # type: ignore[arg-type]

    @property
    def hfov_deg(self) -> float:
        """Horizontal field of view of the undistorted pinhole (for logs and reports)."""
        return math.degrees(2.0 * math.atan((self.width / 2.0) / self.K[0, 0]))

    def body_from_cam(self) -> np.ndarray:
        """Rotation taking camera-frame vectors into the body frame (mount included)."""
        r, p, y = (math.radians(a) for a in self.mount_rpy_deg)
        return rot_zyx(r, p, y) @ _NADIR_BODY_FROM_CAM

    def with_mount(self, mount_rpy_deg: Sequence[float]) -> CameraModel:
        """The same camera on another mount (used for gimbal angles reported in flight)."""
        return CameraModel(self.width, self.height, self.K, self.dist, tuple(mount_rpy_deg))  # type: ignore[arg-type]


# ---------------------------------------------------------------- distortion (OpenCV model)


def _dist8(dist: np.ndarray) -> np.ndarray:
    d = np.zeros(8)
    d[: dist.size] = dist
    return d


def _distort(cam: CameraModel, xy: np.ndarray) -> np.ndarray:
    """Normalised undistorted coordinates -> distorted ones (OpenCV's projectPoints model)."""
    if cam.dist.size == 0 or not np.any(cam.dist):
        return xy
    k1, k2, p1, p2, k3, k4, k5, k6 = _dist8(cam.dist)
    x, y = xy[:, 0], xy[:, 1]
    r2 = x * x + y * y
    radial = (1 + r2 * (k1 + r2 * (k2 + r2 * k3))) / (1 + r2 * (k4 + r2 * (k5 + r2 * k6)))
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return np.stack([xd, yd], axis=1)


def _undistort(cam: CameraModel, xyd: np.ndarray) -> np.ndarray:
    """Distorted normalised coordinates -> undistorted, by the fixed-point iteration OpenCV uses."""
    if cam.dist.size == 0 or not np.any(cam.dist):
        return xyd
    k1, k2, p1, p2, k3, k4, k5, k6 = _dist8(cam.dist)
    xd, yd = xyd[:, 0], xyd[:, 1]
    x, y = xd.copy(), yd.copy()
    for _ in range(_UNDISTORT_ITERATIONS):
        r2 = x * x + y * y
        icdist = (1 + r2 * (k4 + r2 * (k5 + r2 * k6))) / (1 + r2 * (k1 + r2 * (k2 + r2 * k3)))
        dx = 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
        dy = p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
        x = (xd - dx) * icdist
        y = (yd - dy) * icdist
    return np.stack([x, y], axis=1)


# ---------------------------------------------------------------- local metric geometry


def _ned_from_cam(cam: CameraModel, roll: float, pitch: float, yaw: float) -> np.ndarray:
    return rot_zyx(roll, pitch, yaw) @ cam.body_from_cam()


def _normalised_from_pixels(cam: CameraModel, uv: np.ndarray) -> np.ndarray:
    """(N,2) pixels -> (N,2) undistorted normalised image coordinates (x right, y down, z = 1)."""
    uv = np.asarray(uv, dtype=float).reshape(-1, 2)
    ki = np.linalg.inv(cam.K)
    u, v = uv[:, 0], uv[:, 1]
    xy = np.empty_like(uv)
    # column arithmetic rather than (N,2)@(2,2): no BLAS threads fighting over a shared CPU
    xy[:, 0] = ki[0, 0] * u + ki[0, 1] * v + ki[0, 2]
    xy[:, 1] = ki[1, 0] * u + ki[1, 1] * v + ki[1, 2]
    return _undistort(cam, xy)


def pixels_to_rays_cam(cam: CameraModel, uv: np.ndarray) -> np.ndarray:
    """(N,2) pixels -> (N,3) camera-frame ray directions with z = 1."""
    xy = _normalised_from_pixels(cam, uv)
    return np.concatenate([xy, np.ones((xy.shape[0], 1))], axis=1)


def pixels_to_ground_offsets(
    cam: CameraModel, uv: np.ndarray, roll: float, pitch: float, yaw: float, height_agl_m: float
) -> np.ndarray:
    """(N,2) pixels -> (N,2) east, north metres from the ground point under the camera.

    Flat ground `height_agl_m` below the camera; rows whose ray does not reach the ground (at or
    above the horizon) are NaN.
    """
    xy = _normalised_from_pixels(cam, uv)
    x, y = xy[:, 0], xy[:, 1]
    r = _ned_from_cam(cam, roll, pitch, yaw)
    down = r[2, 0] * x + r[2, 1] * y + r[2, 2]
    out = np.empty_like(xy)
    if not height_agl_m > 0:
        out.fill(np.nan)
        return out
    with np.errstate(divide="ignore", invalid="ignore"):
        t = height_agl_m / down
    t[~(down > 1e-12)] = np.nan
    out[:, 0] = (r[1, 0] * x + r[1, 1] * y + r[1, 2]) * t
    out[:, 1] = (r[0, 0] * x + r[0, 1] * y + r[0, 2]) * t
    return out


def ground_offsets_to_pixels(
    cam: CameraModel, en: np.ndarray, roll: float, pitch: float, yaw: float, height_agl_m: float
) -> np.ndarray:
    """(N,2) east, north ground offsets -> (N,2) pixels (u, v); NaN rows behind the camera.

    The inverse of `pixels_to_ground_offsets`; points outside the image still get their
    (out-of-range) pixel coordinates so that callers can decide what is visible.
    """
    en = np.asarray(en, dtype=float).reshape(-1, 2)
    # flat ground is the general case with every point height_agl_m below the camera
    return enu_offsets_to_pixels(cam, np.column_stack([en, np.full(len(en), -float(height_agl_m))]), roll, pitch, yaw)


def pixels_to_rays_enu(cam: CameraModel, uv: np.ndarray, roll: float, pitch: float, yaw: float) -> np.ndarray:
    """(N, 2) pixels -> (N, 3) unit ray directions in local East-North-Up (any surface cuts them)."""
    xy = _normalised_from_pixels(cam, uv)
    x, y = xy[:, 0], xy[:, 1]
    r = _ned_from_cam(cam, roll, pitch, yaw)
    out = np.empty((xy.shape[0], 3))
    out[:, 0] = r[1, 0] * x + r[1, 1] * y + r[1, 2]  # east
    out[:, 1] = r[0, 0] * x + r[0, 1] * y + r[0, 2]  # north
    out[:, 2] = -(r[2, 0] * x + r[2, 1] * y + r[2, 2])  # up
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def enu_offsets_to_pixels(cam: CameraModel, enu: np.ndarray, roll: float, pitch: float, yaw: float) -> np.ndarray:
    """(N, 3) points east, north, up of the camera -> (N, 2) pixels (NaN rows behind the camera).

    The general inverse of `pixels_to_rays_enu` (points at any height); like `ground_offsets_to_pixels`,
    points outside the image keep their out-of-range pixel coordinates.
    """
    p = np.asarray(enu, dtype=float).reshape(-1, 3)
    e, n, d = p[:, 0], p[:, 1], -p[:, 2]
    r = _ned_from_cam(cam, roll, pitch, yaw)
    z = r[0, 2] * n + r[1, 2] * e + r[2, 2] * d
    with np.errstate(divide="ignore", invalid="ignore"):
        iz = 1.0 / z
    iz[~(z > 1e-12)] = np.nan
    xy = np.empty((p.shape[0], 2))
    xy[:, 0] = (r[0, 0] * n + r[1, 0] * e + r[2, 0] * d) * iz
    xy[:, 1] = (r[0, 1] * n + r[1, 1] * e + r[2, 1] * d) * iz
    xy = _distort(cam, xy)
    k = cam.K
    uv = np.empty_like(xy)
    uv[:, 0] = k[0, 0] * xy[:, 0] + k[0, 1] * xy[:, 1] + k[0, 2]
    uv[:, 1] = k[1, 0] * xy[:, 0] + k[1, 1] * xy[:, 1] + k[1, 2]
    return uv


def pixels_to_surface_local(
    cam: CameraModel, uv: np.ndarray, cam_enu: Sequence[float] | np.ndarray, roll: float, pitch: float, yaw: float,
    surface: Surface,
) -> SurfaceHits:
    """Cut the rays of pixels `uv` from a camera at `cam_enu` (the surface's local frame) with the surface."""
    return surface.intersect(np.asarray(cam_enu, dtype=float), pixels_to_rays_enu(cam, uv, roll, pitch, yaw))


def _anchor(surface: Surface) -> LocalFrame:
    if surface.frame is None:
        raise ValueError(f"{surface.name} has no geodetic anchor (frame=None): it cannot place lat/lon poses")
    return surface.frame


def camera_enu(pose: Pose, surface: Surface) -> np.ndarray:
    """The camera's east, north, up in the surface's local frame."""
    e, n, u = _anchor(surface).to_enu(pose.lat_deg, pose.lon_deg, pose.alt_m)
    return np.array([float(e), float(n), float(u)])


def pixels_to_surface(cam: CameraModel, uv: np.ndarray, pose: Pose, surface: Surface) -> SurfaceHits:
    """Cut the rays of pixels `uv` at a geodetic pose with a surface anchored to the Earth (its local frame)."""
    return pixels_to_surface_local(cam, uv, camera_enu(pose, surface), pose.roll_rad, pose.pitch_rad,
                                   pose.yaw_rad, surface)


def hits_to_latlon_alt(hits: SurfaceHits, surface: Surface) -> np.ndarray:
    """(N, 3) lat, lon (degrees), alt (m) of surface hits (NaN rows where a ray did not hit)."""
    lat, lon, alt = _anchor(surface).to_geodetic(hits.enu[:, 0], hits.enu[:, 1], hits.enu[:, 2])
    return np.stack([np.asarray(lat, dtype=float), np.asarray(lon, dtype=float), np.asarray(alt, dtype=float)],
                    axis=1)


# ---------------------------------------------------------------- geodetic wrappers


def _height_agl(pose: Pose, ground_alt_m: float) -> float:
    return float(pose.alt_m) - float(ground_alt_m)


def pixels_to_latlon(cam: CameraModel, uv: np.ndarray, pose: Pose, ground_alt_m: Ground) -> np.ndarray:
    """(N,2) pixels -> (N,2) lat, lon degrees on flat ground at `ground_alt_m` or on a surface (NaN where missed)."""
    if isinstance(ground_alt_m, Surface):
        return hits_to_latlon_alt(pixels_to_surface(cam, uv, pose, ground_alt_m), ground_alt_m)[:, :2]
    en = pixels_to_ground_offsets(cam, uv, pose.roll_rad, pose.pitch_rad, pose.yaw_rad, _height_agl(pose, ground_alt_m))
    lat, lon, _ = enu_to_geodetic(
        en[:, 0], en[:, 1], np.zeros(en.shape[0]), pose.lat_deg, pose.lon_deg, float(ground_alt_m)
    )
    return np.stack([np.asarray(lat, dtype=float), np.asarray(lon, dtype=float)], axis=1)


def latlon_to_pixels(cam: CameraModel, latlon: np.ndarray, pose: Pose, ground_alt_m: Ground) -> np.ndarray:
    """(N,2) lat, lon degrees on the ground -> (N,2) pixels (NaN behind the camera).

    On a ground surface the point is lifted to the ground's height there (NaN where that is unknown);
    whether terrain between hides it is not checked (a nadir camera over fields rarely has that case).
    """
    latlon = np.asarray(latlon, dtype=float).reshape(-1, 2)
    if isinstance(ground_alt_m, Surface):
        if not isinstance(ground_alt_m, GroundSurface):
            raise TypeError(f"{ground_alt_m.name} is not a ground surface: a lat/lon names no point on it")
        fr = _anchor(ground_alt_m)
        e, n, _ = fr.to_enu(latlon[:, 0], latlon[:, 1], fr.alt0)
        e, n = np.asarray(e, dtype=float), np.asarray(n, dtype=float)
        up = ground_alt_m.height_at(e, n)
        c = camera_enu(pose, ground_alt_m)
        rel = np.stack([e - c[0], n - c[1], up - c[2]], axis=1)
        return enu_offsets_to_pixels(cam, rel, pose.roll_rad, pose.pitch_rad, pose.yaw_rad)
    e, n, _ = geodetic_to_enu(
        latlon[:, 0], latlon[:, 1], float(ground_alt_m), pose.lat_deg, pose.lon_deg, float(ground_alt_m)
    )
    en = np.stack([np.asarray(e, dtype=float), np.asarray(n, dtype=float)], axis=1)
    return ground_offsets_to_pixels(
        cam, en, pose.roll_rad, pose.pitch_rad, pose.yaw_rad, _height_agl(pose, ground_alt_m)
    )


def pixel_to_ground(
    cam: CameraModel, u: float, v: float, pose: Pose, ground_alt_m: Ground
) -> tuple[float, float] | None:
    """The lat, lon seen at pixel (u, v), or None when that ray does not reach the ground."""
    ll = pixels_to_latlon(cam, np.array([[u, v]]), pose, ground_alt_m)[0]
    if not np.all(np.isfinite(ll)):
        return None
    return float(ll[0]), float(ll[1])


def ground_to_pixel(
    cam: CameraModel, lat: float, lon: float, pose: Pose, ground_alt_m: Ground
) -> tuple[float, float] | None:
    """The pixel where ground point (lat, lon) appears, or None when it is behind the camera."""
    uv = latlon_to_pixels(cam, np.array([[lat, lon]]), pose, ground_alt_m)[0]
    if not np.all(np.isfinite(uv)):
        return None
    return float(uv[0]), float(uv[1])


def box_corners(x: float, y: float, w: float, h: float) -> np.ndarray:
    """Pixel corners of a box, clockwise from top-left as seen in the image."""
    return np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], dtype=float)


def footprint(
    cam: CameraModel, pose: Pose, ground_alt_m: Ground, box: tuple[float, float, float, float] | None = None
) -> list[tuple[float, float]] | None:
    """Corner lat, lon polygon of the image (or of pixel box x, y, w, h) on the ground.

    Corners in image order top-left, top-right, bottom-right, bottom-left. None when a corner's ray
    does not reach the ground: the area is unbounded and no polygon would be honest.
    """
    corners = box_corners(0, 0, cam.width, cam.height) if box is None else box_corners(*box)
    ll = pixels_to_latlon(cam, corners, pose, ground_alt_m)
    if not np.all(np.isfinite(ll)):
        return None
    return [(float(a), float(b)) for a, b in ll]


def ground_sample_distance(cam: CameraModel, height_agl_m: float) -> float:
    """Metres of ground per pixel at the image centre of a nadir view (height / focal length)."""
    return float(height_agl_m) / float(cam.K[0, 0])


def gimbal_mount_rpy_deg(
    gimbal_roll_deg: float, gimbal_pitch_deg: float, gimbal_yaw_deg: float
) -> tuple[float, float, float]:
    """MAVLink gimbal angles (pitch -90 = straight down, 0 = forward) as this module's mount angles.

    MOUNT_STATUS reports body-relative angles for a non-stabilised mount; mount pitch here is 0 at
    nadir, so it is the gimbal's pitch + 90 degrees.
    """
    return (float(gimbal_roll_deg), float(gimbal_pitch_deg) + 90.0, float(gimbal_yaw_deg))
