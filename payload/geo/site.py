"""Rack faces of an indoor farm as planes in the local frame, rays cut with them, and site addresses.

A sideways camera in an aisle sees the vertical face of a rack, not the floor: a ray from the
camera is cut with every rack face (a finite vertical rectangle) and the floor, and the nearest
hit from the front wins. A hit on a face that carries plants is a sighting at (along, up) metres
on that face, which the site file's divisions turn into rack / bay / shelf (`address`). Faces
without plants (the back of a single-sided rack) and the floor only occlude.

Local frame: metres east, north, up of the EKF origin (payload/types.py PoseEstimate.enu_m); the
camera's orientation comes from payload/geo/camera.py (the model the simulator renders with), so
this module adds only the surface. Pure numpy; the simulator renders with it (a contract module).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from payload.geo.camera import CameraModel, pixels_to_rays_cam, rot_zyx
from payload.geo.surface import Planes, RectPlane
from payload.sitefile import Rack, SiteLayout

FLOOR = -2  # face index of a ray that meets the floor first
MISS = -1  # face index of a ray that meets nothing (above the horizon, between racks into the distance)


@dataclass(frozen=True)
class RackFace:
    """One long side of a rack: a vertical rectangle from along 0..length and up 0..height.

    `p0` is the face's bottom corner at the rack's start, `along` the unit vector from the rack's
    start to its end, `normal` the outward unit normal (towards the aisle). All in local ENU metres.
    """

    rack: Rack
    side: str
    p0: np.ndarray
    along: np.ndarray
    normal: np.ndarray
    has_plants: bool

    @property
    def id(self) -> str:
        """'B:left': the face's key in records, maps and file names."""
        return f"{self.rack.name}:{self.side}"

    @property
    def length_m(self) -> float:
        return float(self.rack.length_m)

    @property
    def height_m(self) -> float:
        return float(self.rack.height_m)

    def point(self, along_m: Any, up_m: Any) -> np.ndarray:
        """ENU point(s) of face coordinates (broadcast; last axis 3)."""
        a = np.asarray(along_m, dtype=float)[..., None]
        u = np.asarray(up_m, dtype=float)[..., None]
        return self.p0 + a * self.along + u * np.array([0.0, 0.0, 1.0])

    def coords(self, enu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(along, up) of ENU points on (or projected onto) the face."""
        d = np.asarray(enu, dtype=float) - self.p0
        return d @ self.along, d[..., 2]


def rack_faces(rack: Rack) -> list[RackFace]:
    """Both long sides of a rack (those not listed in `faces` carry no plants and only occlude)."""
    h = math.radians(rack.heading_deg)
    along = np.array([math.sin(h), math.cos(h), 0.0])
    right = np.array([math.cos(h), -math.sin(h), 0.0])  # to the right of the heading, horizontal
    start = np.array([rack.position_m[0], rack.position_m[1], 0.0])
    out = []
    for side, sign in (("left", -1.0), ("right", 1.0)):
        normal = sign * right
        out.append(RackFace(rack, side, start + normal * rack.depth_m / 2.0, along, normal, side in rack.faces))
    return out


def site_faces(site: SiteLayout) -> list[RackFace]:
    """Every rack side of the site, plant-bearing or not, in the site file's order."""
    return [f for r in site.racks for f in rack_faces(r)]


def face_planes(faces: Sequence[RackFace], floor: bool = True) -> Planes:
    """The rack faces as a `Planes` surface (payload/geo/surface.py): plane i is face i, named by its id,
    u along the rack from its start, v up, the front towards the aisle; with `floor`, the floor at up 0.

    The same cut as `intersect_faces` through the one Surface interface (piece = face index or FLOOR,
    plane_uv = (along, up)), so a site is one more surface the camera's rays can end on.
    """
    up = np.array([0.0, 0.0, 1.0])
    planes = [RectPlane(f.p0, f.along, up, f.length_m, f.height_m, normal=f.normal, name=f.id) for f in faces]
    return Planes(planes, floor_up_m=0.0 if floor else None)


def site_planes(site: SiteLayout, floor: bool = True) -> Planes:
    """Every rack face of a site file's layout (`site_faces` order) as a `Planes` surface, over its floor."""
    return face_planes(site_faces(site), floor)


@dataclass(frozen=True)
class FaceHits:
    """Where N rays end: face index into the face list (MISS, FLOOR), range t and the hit's face coordinates."""

    face: np.ndarray  # (N,) int
    t: np.ndarray  # (N,) metres along the (unit) ray; inf for a miss
    along: np.ndarray  # (N,) NaN unless a face was hit
    up: np.ndarray  # (N,)


def intersect_faces(faces: Sequence[RackFace], origin: np.ndarray, dirs: np.ndarray) -> FaceHits:
    """Cut rays from `origin` (3,) along `dirs` (N, 3) with the faces and the floor (up = 0).

    A face counts only from its front (the ray travels against its outward normal): from the aisle
    one sees a face, never a face through the rack behind it. The nearest hit wins.
    """
    o = np.asarray(origin, dtype=float).reshape(3)
    d = np.asarray(dirs, dtype=float).reshape(-1, 3)
    d = d / np.linalg.norm(d, axis=1, keepdims=True)
    n = len(d)
    best_t = np.full(n, np.inf)
    best_f = np.full(n, MISS, dtype=np.int64)
    best_a = np.full(n, np.nan)
    best_u = np.full(n, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        for i, f in enumerate(faces):
            den = d @ f.normal
            t = ((f.p0 - o) @ f.normal) / den
            ok = (den < -1e-12) & (t > 1e-9) & (t < best_t)
            if not ok.any():
                continue
            p = o + t[:, None] * d
            a, u = f.coords(p)
            ok &= (a >= 0.0) & (a <= f.length_m) & (u >= 0.0) & (u <= f.height_m)
            best_t = np.where(ok, t, best_t)
            best_f = np.where(ok, i, best_f)
            best_a = np.where(ok, a, best_a)
            best_u = np.where(ok, u, best_u)
        tf = -o[2] / d[:, 2]
        floor = (d[:, 2] < -1e-12) & (tf > 0) & (tf < best_t)
    best_t = np.where(floor, tf, best_t)
    best_f = np.where(floor, FLOOR, best_f)
    best_a = np.where(floor, np.nan, best_a)
    best_u = np.where(floor, np.nan, best_u)
    return FaceHits(best_f, best_t, best_a, best_u)


def camera_rays_enu(cam: CameraModel, uv: np.ndarray, roll: float, pitch: float, yaw: float) -> np.ndarray:
    """(N, 2) pixels -> (N, 3) unit ray directions in local ENU, through the payload's camera model."""
    rc = pixels_to_rays_cam(cam, uv)
    ned = rc @ (rot_zyx(roll, pitch, yaw) @ cam.body_from_cam()).T
    enu = np.stack([ned[:, 1], ned[:, 0], -ned[:, 2]], axis=1)
    return enu / np.linalg.norm(enu, axis=1, keepdims=True)


@dataclass(frozen=True)
class SiteAddress:
    """Where on the farm a point of a rack face is, in the grower's terms (1-based bay, shelf and plant)."""

    rack: str
    face: str
    bay: int
    shelf: int | None  # None below the lowest shelf
    plant: int
    along_m: float
    up_m: float
    two_sided: bool = False  # the rack has plants on both sides: the text names the side

    def as_dict(self) -> dict[str, Any]:
        return {"rack": self.rack, "face": self.face, "bay": self.bay, "shelf": self.shelf, "plant": self.plant,
                "along_m": round(self.along_m, 3), "up_m": round(self.up_m, 3)}

    def text(self) -> str:
        """'rack B bay 4 shelf 2' (the face is named only for a rack with plants on both sides)."""
        shelf = "floor" if self.shelf is None else f"shelf {self.shelf}"
        return f"rack {self.rack}{self._side()} bay {self.bay} {shelf}"

    def _side(self) -> str:
        return f"/{self.face[0].upper()}" if self.two_sided else ""


def address(rack: Rack, side: str, along_m: float, up_m: float) -> SiteAddress:
    """The rack/bay/shelf/plant of face coordinates (along from the rack's start, up from the floor).

    Bay k spans along [(k-1) w, k w); shelf k spans up from shelf_heights[k-1] to the next shelf (the
    top shelf to the rack's top); plant k is centred at (k - 1/2) x spacing. Values are clipped into
    the rack so a hit on its very edge keeps an address.
    """
    a = min(max(float(along_m), 0.0), rack.length_m)
    bay = min(int(a // rack.bay_width_m) + 1, rack.bays)
    hs = rack.shelf_heights_m
    shelf = None if up_m < hs[0] else int(np.searchsorted(np.asarray(hs), float(up_m), side="right"))
    n_plants = max(1, math.ceil(rack.length_m / rack.plant_spacing_m - 1e-9))
    plant = min(int(a // rack.plant_spacing_m) + 1, n_plants)
    return SiteAddress(rack.name, side, bay, shelf, plant, float(along_m), float(up_m), len(rack.faces) == 2)


def face_by_id(faces: Sequence[RackFace], face_id: str) -> RackFace:
    """The face with that id ('B:left'), KeyError when the site has none."""
    for f in faces:
        if f.id == face_id:
            return f
    raise KeyError(f"no rack face {face_id!r} in this site")


@dataclass(frozen=True)
class Placement:
    """Where pixels of one frame land in the local frame: on a plant face (face id, along, up), or not.

    `enu` holds the hit points (NaN where a ray meets nothing); `face` the index into the faces
    given (MISS, FLOOR, or a face that carries no plants, which `on_plants` tells apart).
    """

    enu: np.ndarray  # (N, 3)
    face: np.ndarray  # (N,)
    along: np.ndarray
    up: np.ndarray
    on_plants: np.ndarray  # (N,) bool


def place_pixels(
    faces: Sequence[RackFace], cam: CameraModel, uv: np.ndarray, cam_enu: Sequence[float],
    roll: float, pitch: float, yaw: float,
) -> Placement:
    """Cut the rays of pixels `uv` from a camera at `cam_enu` with the site (faces, then floor)."""
    o = np.asarray(cam_enu, dtype=float)
    d = camera_rays_enu(cam, uv, roll, pitch, yaw)
    hits = intersect_faces(faces, o, d)
    enu = o + np.where(np.isfinite(hits.t), hits.t, np.nan)[:, None] * d
    plants = np.array([f.has_plants for f in faces] + [False, False], dtype=bool)
    on = plants[np.where(hits.face >= 0, hits.face, len(faces) + (hits.face == FLOOR))]
    return Placement(enu, hits.face, hits.along, hits.up, on & (hits.face >= 0))
