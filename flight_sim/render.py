"""The simulated camera: the frame the payload's camera would capture at the vehicle's TRUE pose.

Rendering inverts nothing of its own: every frame pixel is sent through the payload's camera
model (`payload.geo.camera.pixels_to_ground_offsets`) at the true pose to a point on the ground,
and the procedural world (flight_sim/world) is shaded there. A geometry error in the model would
therefore show up in the payload's geotags and in the simulator alike, which is what the geometry
tests check against `ground_to_pixel`.

Each pixel integrates the ground it covers: its footprint (the square root of that area, from the
Jacobian of the pixel -> ground map by finite differences) is the world's area-filter width, so an
oblique view or a slope gets the wider filter it needs and lesions far below the footprint shift a
pixel's colour instead of aliasing into dots. Then haze over the camera-to-ground path
(world.apply_haze) and the camera's own effects (flight_sim/camerafx.py: lagging auto exposure
and white balance, motion blur along the ground's image motion, read noise).

On a scenario with terrain (flight_sim/terrain.py) the world is draped on the terrain: the rays of
a grid of pixels every `TERRAIN_STEP_PX` are cut with the terrain's height field
(payload/geo/surface.py, the surface the payload's DEM becomes) and the ground point of every other
pixel is interpolated between them. Marching every pixel's ray would cost seconds a frame; the
ground a smooth terrain shows varies smoothly across the image (tests/flight_sim/test_terrain.py
bounds the interpolation error). A ray that leaves the terrain's extent shows sky.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from flight_sim.camerafx import CameraEffects
from flight_sim.scenario import Scenario
from flight_sim.world import LABEL_OUTSIDE, World, apply_haze
from payload.bundle import CLASSES
from payload.geo.camera import (
    CameraModel,
    ground_offsets_to_pixels,
    pixels_to_ground_offsets,
    pixels_to_surface_local,
)
from payload.geo.frames import geodetic_to_enu
from payload.geo.surface import HeightField
from payload.pipeline.tiling import grid
from payload.types import Pose, TileBox

SKY_RGB = (170.0, 200.0, 230.0)
TERRAIN_STEP_PX = 8  # on terrain, rays are cut exactly every this many pixels and interpolated between
MOTION_DT_S = 0.05  # the ground's image motion is measured over this much flight time


@dataclass(frozen=True)
class GroundMap:
    """Where each frame pixel looks: ground east/north (m from the field origin) and the footprint there."""

    east: np.ndarray  # (H, W) float64, NaN for sky
    north: np.ndarray  # (H, W)
    footprint_m: np.ndarray  # (H, W) float32 side of the ground area one pixel covers
    path_m: np.ndarray  # (H, W) float32 camera-to-ground distance (haze)
    sky: np.ndarray  # (H, W) bool: the ray misses the ground


@dataclass(frozen=True)
class SceneFrame:
    """One frame's scene before the camera: radiance, and the truth the world gives with it."""

    radiance: np.ndarray  # (H, W, 3) float32 scene radiance (after haze)
    labels: np.ndarray  # (H, W) uint8 class index, LABEL_OUTSIDE outside the field or sky
    leaf: np.ndarray  # (H, W) float32 leaf share of each pixel
    diseased: np.ndarray  # (H, W) float32 symptom share of each pixel


def pixel_footprint(east: np.ndarray, north: np.ndarray) -> np.ndarray:
    """sqrt(|det J|) of the pixel -> ground map by central differences (one-sided at the edges).

    The determinant of the 2x2 Jacobian d(east, north)/d(u, v) is the ground area one pixel
    covers; its square root is the footprint's side. NaN where a neighbour is sky.
    """
    de_du = np.gradient(east, axis=1)
    dn_du = np.gradient(north, axis=1)
    de_dv = np.gradient(east, axis=0)
    dn_dv = np.gradient(north, axis=0)
    return np.sqrt(np.abs(de_du * dn_dv - de_dv * dn_du)).astype(np.float32)


class WorldRenderer:
    """Renders a World through a CameraModel; the ground is flat at the origin's altitude, or `terrain`."""

    def __init__(self, world: World, cam: CameraModel, origin_lat: float, origin_lon: float, origin_alt: float,
                 terrain: HeightField | None = None, haze: float = 0.0, fx: CameraEffects | None = None,
                 exposure_s: float = 0.0) -> None:
        self.world = world
        self.cam = cam
        self.origin = (float(origin_lat), float(origin_lon), float(origin_alt))
        self.terrain = terrain
        self.haze = float(haze)
        self.fx = fx
        self.exposure_s = float(exposure_s)
        if terrain is not None:
            # the coarse grid includes both edges' pixel centres; full-resolution pixels are looked up in it
            step = TERRAIN_STEP_PX
            cu = np.linspace(0.5, cam.width - 0.5, int(math.ceil((cam.width - 1) / step)) + 1)
            cv = np.linspace(0.5, cam.height - 0.5, int(math.ceil((cam.height - 1) / step)) + 1)
            cuu, cvv = np.meshgrid(cu, cv)
            self._coarse_uv = np.stack([cuu.ravel(), cvv.ravel()], axis=1)
            self._coarse_shape = (len(cv), len(cu))
            fx_ = (np.arange(cam.width, dtype=np.float64)) / (cam.width - 1) * (len(cu) - 1)
            fy_ = (np.arange(cam.height, dtype=np.float64)) / (cam.height - 1) * (len(cv) - 1)
            mx, my = np.meshgrid(fx_, fy_)
            self._up_x = mx.astype(np.float32)
            self._up_y = my.astype(np.float32)
        u = np.arange(cam.width, dtype=np.float64) + 0.5  # pixel centres in the continuous convention
        v = np.arange(cam.height, dtype=np.float64) + 0.5
        uu, vv = np.meshgrid(u, v)
        self._uv = np.stack([uu.ravel(), vv.ravel()], axis=1)

    @classmethod
    def for_scenario(cls, s: Scenario, world: World | None = None, effects: bool = True) -> WorldRenderer:
        """The renderer for a scenario's camera (nadir mount) over its world (on its terrain, if it has one)."""
        from flight_sim.terrain import scenario_surface

        c = s.camera
        fx = CameraEffects((c.height, c.width), c.noise_sigma, s.seed, c.auto_exposure,
                           wb_temp_k=c.white_balance_k) if effects else None
        return cls(world or build_world(s), c.model(), s.origin.lat, s.origin.lon, s.origin.alt,
                   scenario_surface(s), s.light.haze, fx, c.exposure_s)

    def camera_en_agl(self, pose: Pose) -> tuple[float, float, float]:
        """The camera's east, north from the field origin and its height above the origin."""
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

    def _ground_height(self, east: np.ndarray, north: np.ndarray) -> np.ndarray | float:
        if self.terrain is None:
            return 0.0
        return np.asarray(self.terrain.height_at(east, north), dtype=np.float64)

    def ground_map(self, pose: Pose) -> GroundMap:
        """Ground point, footprint and path length of every frame pixel at `pose`."""
        h, w = self.cam.height, self.cam.width
        en = self.ground_offsets(pose)
        east, north = en[:, 0].reshape(h, w), en[:, 1].reshape(h, w)
        sky = ~np.isfinite(east) | ~np.isfinite(north)
        fp = pixel_footprint(east, north)
        # a pixel beside the horizon has no finite neighbour: its own distance bounds the footprint
        fp = np.where(np.isfinite(fp), fp, np.float32(1.0))
        ce, cn, cu = self.camera_en_agl(pose)
        e0, n0 = np.where(sky, ce, east), np.where(sky, cn, north)
        dz = cu - self._ground_height(e0, n0)
        path = np.sqrt((e0 - ce) ** 2 + (n0 - cn) ** 2 + dz**2).astype(np.float32)
        return GroundMap(east, north, fp, path, sky)

    def scene(self, pose: Pose, t_s: float = 0.0, gm: GroundMap | None = None) -> SceneFrame:
        """The scene radiance and the world's truth in every pixel at `pose` (before the camera's effects)."""
        gm = gm or self.ground_map(pose)
        h, w = gm.sky.shape
        ground = ~gm.sky
        shaded = self.world.shade(gm.east[ground], gm.north[ground], gm.footprint_m[ground], t_s)
        radiance = np.empty((h, w, 3), np.float32)
        radiance[:] = SKY_RGB
        labels = np.full((h, w), LABEL_OUTSIDE, np.uint8)
        leaf = np.zeros((h, w), np.float32)
        diseased = np.zeros((h, w), np.float32)
        rgb = shaded.rgb
        if self.haze > 0:
            rgb = apply_haze(rgb, self.haze, gm.path_m[ground])
        radiance[ground] = rgb
        labels[ground] = shaded.labels
        leaf[ground] = shaded.leaf
        diseased[ground] = shaded.diseased
        return SceneFrame(radiance, labels, leaf, diseased)

    def image_motion(self, pose: Pose, pose_later: Pose, dt_s: float) -> tuple[float, float]:
        """Pixels per second the ground at the image centre moves across the image (from two poses)."""
        h, w = self.cam.height, self.cam.width
        centre = np.array([[w / 2.0, h / 2.0]])
        e, n, agl = self.camera_en_agl(pose)
        off = pixels_to_ground_offsets(self.cam, centre, pose.roll_rad, pose.pitch_rad, pose.yaw_rad, agl)
        if not np.all(np.isfinite(off)):
            return 0.0, 0.0
        g = off[0] + [e, n]
        e2, n2, agl2 = self.camera_en_agl(pose_later)
        uv = ground_offsets_to_pixels(self.cam, (g - [e2, n2])[None, :], pose_later.roll_rad, pose_later.pitch_rad,
                                      pose_later.yaw_rad, agl2)
        if not np.all(np.isfinite(uv)):
            return 0.0, 0.0
        return float((uv[0, 0] - centre[0, 0]) / dt_s), float((uv[0, 1] - centre[0, 1]) / dt_s)

    def render(self, pose: Pose, t_s: float = 0.0, pose_later: Pose | None = None) -> np.ndarray:
        """The RGB frame (H, W, 3) uint8 at `pose`: the world through haze and the camera's effects.

        `pose_later` (the pose MOTION_DT_S later) gives the motion blur; without it the frame is sharp.
        """
        sc = self.scene(pose, t_s)
        if self.fx is None:
            return np.clip(sc.radiance, 0, 255).astype(np.uint8)
        blur = (0.0, 0.0)
        if pose_later is not None and self.exposure_s > 0:
            vu, vv = self.image_motion(pose, pose_later, MOTION_DT_S)
            blur = (vu * self.exposure_s, vv * self.exposure_s)
        return self.fx.apply(sc.radiance, t_s, blur, sc.labels != LABEL_OUTSIDE)

    def render_at(self, pose_at: Callable[[float], Pose], t_s: float) -> np.ndarray:
        """The frame at timeline time t_s (blur from the timeline's motion)."""
        return self.render(pose_at(t_s), t_s, pose_at(t_s + MOTION_DT_S))

    def render_labels(self, pose: Pose, gm: GroundMap | None = None) -> np.ndarray:
        """The true class index of every frame pixel (255 outside the field or above the horizon).

        Only the ground points are needed, not the shading: truth beside every rendered frame
        (`flight-sim render`, tile evaluation) costs a projection, not a second render.
        """
        gm = gm or self.ground_map(pose)
        labels = np.full(gm.sky.shape, LABEL_OUTSIDE, np.uint8)
        ground = ~gm.sky
        labels[ground] = self.world.labels(gm.east[ground], gm.north[ground])
        return labels


def build_world(s: Scenario) -> World:
    """The scenario's procedural world (deterministic for its seed; nothing is rasterised up front)."""
    return World(s.crop, s.light, s.patches, s.field.width_m, s.field.height_m, s.seed)


@dataclass(frozen=True)
class TileShares:
    """One tile's truth: region share per class, outside share, diseased share of leaf area and of ground."""

    region: dict[str, float]
    outside: float
    diseased_of_leaf: float
    diseased_of_ground: float


def tile_shares(labels: np.ndarray, leaf: np.ndarray, diseased: np.ndarray,
                boxes: Sequence[TileBox]) -> list[TileShares]:
    """Per payload tile: which classes' regions it holds and how much of its leaf area and ground is diseased.

    Region shares come from the label frame (the infected region, incidence > 0); the diseased
    shares are what the symptoms really cover: sum(diseased) / sum(leaf) and sum(diseased) / pixels.
    """
    out = []
    for b in boxes:
        lab = labels[b.y : b.y + b.h, b.x : b.x + b.w]
        n = max(lab.size, 1)
        counts = np.bincount(lab.ravel(), minlength=256)
        region = {c: float(counts[i]) / n for i, c in enumerate(CLASSES)}
        d = float(diseased[b.y : b.y + b.h, b.x : b.x + b.w].sum())
        lf = float(leaf[b.y : b.y + b.h, b.x : b.x + b.w].sum())
        out.append(TileShares(region, float(counts[LABEL_OUTSIDE]) / n, d / lf if lf > 0 else 0.0, d / n))
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


def footprint_size_m(cam: CameraModel, height_agl_m: float) -> tuple[float, float]:
    """Ground width and height a nadir ideal camera covers from `height_agl_m` (analytic)."""
    fx, fy = cam.K[0, 0], cam.K[1, 1]
    return height_agl_m * cam.width / fx, height_agl_m * cam.height / fy


def hfov_footprint_width_m(hfov_deg: float, height_agl_m: float) -> float:
    """2 h tan(hfov / 2): the analytic ground width of a nadir frame."""
    return 2.0 * height_agl_m * math.tan(math.radians(hfov_deg) / 2.0)
