"""The simulated camera: the frame the payload's camera would capture at the vehicle's TRUE pose.

Rendering inverts nothing of its own: every frame pixel is sent through the payload's camera
model (`payload.geo.camera.pixels_to_ground_offsets`) at the true pose to a point on the field, and
the field raster is sampled there with cv2.remap. A geometry error in the model would therefore
show up in the payload's geotags and in the simulator alike, which is what the geometry tests
check against `ground_to_pixel`. The pixel grid is precomputed; per frame it costs one vectorised
call of the camera model, one remap and (for the stream) one JPEG encode.

On a scenario with terrain (flight_sim/terrain.py) the field is draped on the terrain: the rays of a
grid of pixels every `TERRAIN_STEP_PX` are cut with the terrain's height field
(payload/geo/surface.py, the surface the payload's DEM becomes) and the ground point of every other
pixel is interpolated between them. Marching every pixel's ray would cost seconds a frame; the
ground a smooth terrain shows varies smoothly across the image (tests/flight_sim/test_terrain.py
bounds the interpolation error). A ray that leaves the terrain's extent shows sky.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from compile.synthetic import CLASSES
from flight_sim.field import LABEL_OUTSIDE, SOIL_RGB, Field
from flight_sim.scenario import Scenario
from payload.geo.camera import CameraModel, pixels_to_ground_offsets, pixels_to_surface_local
from payload.geo.frames import geodetic_to_enu
from payload.geo.surface import HeightField
from payload.pipeline.tiling import grid
from payload.types import Pose

SKY_RGB = (170, 200, 230)
TERRAIN_STEP_PX = 8  # on terrain, rays are cut exactly every this many pixels and interpolated between


@dataclass(frozen=True)
class GroundMap:
    """Where each frame pixel looks: field raster coordinates (cv2.remap maps), NaN-free."""

    map_x: np.ndarray  # (H, W) float32 raster column, pixel centres at integers
    map_y: np.ndarray  # (H, W) float32 raster row
    sky: np.ndarray  # (H, W) bool: the ray misses the ground


class FieldRenderer:
    """Renders a Field through a CameraModel; the field is flat at the origin's altitude, or draped on `terrain`."""

    def __init__(self, field: Field, cam: CameraModel, origin_lat: float, origin_lon: float, origin_alt: float,
                 terrain: HeightField | None = None) -> None:
        self.field = field
        self.cam = cam
        self.origin = (float(origin_lat), float(origin_lon), float(origin_alt))
        self.terrain = terrain
        if terrain is not None:
            # the coarse grid includes both edges' pixel centres; full-resolution pixels are looked up in it
            step = TERRAIN_STEP_PX
            cu = np.linspace(0.5, cam.width - 0.5, int(math.ceil((cam.width - 1) / step)) + 1)
            cv = np.linspace(0.5, cam.height - 0.5, int(math.ceil((cam.height - 1) / step)) + 1)
            cuu, cvv = np.meshgrid(cu, cv)
            self._coarse_uv = np.stack([cuu.ravel(), cvv.ravel()], axis=1)
            self._coarse_shape = (len(cv), len(cu))
            fx = (np.arange(cam.width, dtype=np.float64)) / (cam.width - 1) * (len(cu) - 1)
            fy = (np.arange(cam.height, dtype=np.float64)) / (cam.height - 1) * (len(cv) - 1)
            mx, my = np.meshgrid(fx, fy)
            self._up_x = mx.astype(np.float32)
            self._up_y = my.astype(np.float32)
        u = np.arange(cam.width, dtype=np.float64) + 0.5  # pixel centres in the continuous convention
        v = np.arange(cam.height, dtype=np.float64) + 0.5
        uu, vv = np.meshgrid(u, v)
        self._uv = np.stack([uu.ravel(), vv.ravel()], axis=1)
        self._rgb = np.ascontiguousarray(field.rgb)
        self._labels = np.ascontiguousarray(field.labels)
        self._soil = None if field.soil is None else np.ascontiguousarray(field.soil)

    @classmethod
    def for_scenario(cls, s: Scenario, field: Field) -> FieldRenderer:
        """The renderer for a scenario's camera (nadir mount) over its field (on its terrain, if it has one)."""
        from flight_sim.terrain import scenario_surface

        cam = CameraModel.from_hfov(s.camera.width, s.camera.height, s.camera.hfov_deg)
        return cls(field, cam, s.origin.lat, s.origin.lon, s.origin.alt, scenario_surface(s))

    def camera_en_agl(self, pose: Pose) -> tuple[float, float, float]:
        """The camera's east, north from the field origin and its height above the field."""
        e, n, u = geodetic_to_enu(pose.lat_deg, pose.lon_deg, pose.alt_m, *self.origin)
        return float(e), float(n), float(u)

    def ground_offsets(self, pose: Pose) -> np.ndarray:
        """(H*W, 2) east/north metres from the field origin seen by each pixel (NaN above the horizon)."""
        e, n, agl = self.camera_en_agl(pose)
        if self.terrain is not None:
            return self._terrain_offsets(pose, e, n, agl)
        off = pixels_to_ground_offsets(self.cam, self._uv, pose.roll_rad, pose.pitch_rad, pose.yaw_rad, agl)
        off[:, 0] += e
        off[:, 1] += n
        return off

    def _terrain_offsets(self, pose: Pose, e: float, n: float, up: float) -> np.ndarray:
        assert self.terrain is not None
        hits = pixels_to_surface_local(self.cam, self._coarse_uv, [e, n, up], pose.roll_rad, pose.pitch_rad,
                                       pose.yaw_rad, self.terrain)
        rows, cols = self._coarse_shape
        out = np.empty((self.cam.height * self.cam.width, 2))
        for k in (0, 1):
            coarse = hits.enu[:, k].reshape(rows, cols).astype(np.float32)
            # NaN (sky, off the terrain) spreads to the pixels next to it: they show sky too
            full = cv2.remap(coarse, self._up_x, self._up_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            out[:, k] = full.ravel()
        return out

    def ground_map(self, pose: Pose) -> GroundMap:
        """Field raster coordinates of every frame pixel at `pose`."""
        en = self.ground_offsets(pose)
        col, row = self.field.en_to_colrow(en[:, 0], en[:, 1])
        sky = ~np.isfinite(col) | ~np.isfinite(row)
        col = np.where(sky, -1e6, col).astype(np.float32).reshape(self.cam.height, self.cam.width)
        row = np.where(sky, -1e6, row).astype(np.float32).reshape(self.cam.height, self.cam.width)
        return GroundMap(col, row, sky.reshape(self.cam.height, self.cam.width))

    def render(self, pose: Pose, gm: GroundMap | None = None) -> np.ndarray:
        """The RGB frame (H, W, 3) uint8 at `pose`: field texture, soil outside it, sky above the horizon."""
        gm = gm or self.ground_map(pose)
        out = cv2.remap(
            self._rgb, gm.map_x, gm.map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=SOIL_RGB
        )
        if self._soil is not None:
            h, w = self._rgb.shape[:2]
            outside = (gm.map_x < -0.5) | (gm.map_x > w - 0.5) | (gm.map_y < -0.5) | (gm.map_y > h - 0.5)
            outside &= ~gm.sky
            if outside.any():
                period = 2.0 * (self._soil.shape[0] - 1)  # mirror-tiled: continuous, no seams

                def fold(a: np.ndarray) -> np.ndarray:
                    return (period / 2 - np.abs(np.mod(a, period) - period / 2)).astype(np.float32)

                soil = cv2.remap(self._soil, fold(gm.map_x), fold(gm.map_y), cv2.INTER_LINEAR)
                out[outside] = soil[outside]
        if gm.sky.any():
            out[gm.sky] = SKY_RGB
        return out

    def render_labels(self, pose: Pose, gm: GroundMap | None = None) -> np.ndarray:
        """The true class index of every frame pixel (255 outside the field or above the horizon)."""
        gm = gm or self.ground_map(pose)
        out = cv2.remap(
            self._labels,
            gm.map_x,
            gm.map_y,
            cv2.INTER_NEAREST,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=LABEL_OUTSIDE,
        )
        out[gm.sky] = LABEL_OUTSIDE
        return out


def tile_truth(
    labels: np.ndarray, rows: int, cols: int, overlap: float = 0.0, min_share: float = 0.25
) -> list[list[str]]:
    """The true class of each tile of the payload's grid (payload.pipeline.tiling.grid), from a rendered label frame.

    A tile is the disease class covering the largest share of it when that share is at least
    `min_share` (a classifier should flag it), else "healthy"; "-" when over half of it is
    outside the field or sky. The tile-evaluation tool compares the classifier with this per-tile
    truth, so it must cover exactly the pixels the payload's tiler crops.
    """
    h, w = labels.shape
    out: list[list[str]] = [["" for _ in range(cols)] for _ in range(rows)]
    for b in grid(w, h, rows, cols, overlap):
        tile = labels[b.y : b.y + b.h, b.x : b.x + b.w]
        n = tile.size
        counts = np.bincount(tile.ravel(), minlength=256)
        if counts[LABEL_OUTSIDE] > n / 2:
            out[b.row][b.col] = "-"
            continue
        diseases = [(counts[i], CLASSES[i]) for i in range(1, len(CLASSES))]
        best_n, best = max(diseases)
        out[b.row][b.col] = best if best_n >= min_share * n else CLASSES[0]
    return out


class SensorNoise:
    """Read noise added to rendered frames, drawn from a small precomputed bank (cheap per frame)."""

    def __init__(self, shape: tuple[int, int, int], sigma: float, seed: int, bank: int = 4) -> None:
        rng = np.random.default_rng(seed)
        self.sigma = float(sigma)
        self._bank = [rng.normal(0.0, sigma, shape).astype(np.int16) for _ in range(bank)] if sigma > 0 else []
        self._i = 0

    def apply(self, img: np.ndarray) -> np.ndarray:
        if not self._bank:
            return img
        noise = self._bank[self._i % len(self._bank)]
        self._i += 1
        return np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def footprint_size_m(cam: CameraModel, height_agl_m: float) -> tuple[float, float]:
    """Ground width and height a nadir ideal camera covers from `height_agl_m` (analytic)."""
    fx, fy = cam.K[0, 0], cam.K[1, 1]
    return height_agl_m * cam.width / fx, height_agl_m * cam.height / fy


def hfov_footprint_width_m(hfov_deg: float, height_agl_m: float) -> float:
    """2 h tan(hfov / 2): the analytic ground width of a nadir frame."""
    return 2.0 * height_agl_m * math.tan(math.radians(hfov_deg) / 2.0)
