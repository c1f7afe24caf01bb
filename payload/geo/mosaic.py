"""The quick mosaic: the flight's own frames laid on flat ground and composited, most-nadir pixel first.

A frame seen from a known pose maps to flat ground by a homography (docs/MAPS.md "Mosaic"). The
payload already projects every tile corner through the camera model for the look record, so the
homography is fitted to those correspondences (pixel corner -> ground east/north): it is exactly
the camera model's projection for a pinhole, the least-squares best one with lens distortion, and
the mosaic lands where the disease map put the same tiles.

Compositing: each canvas pixel keeps the view that saw it closest to straight down (the smallest
off-nadir angle: least relief displacement and the finest ground sample); ties go to the newest
frame. The canvas is a set of square tiles created only where a frame lands (like the evidence
grid's chunks), held by a `TileStore`, so a 100 ha flight costs only the tiles kept in memory when
the store spills the others (payload/sinks/mosaic.py). Numpy and OpenCV only; no files here.

Canvas pixels: column j covers east [j, j+1) * m_per_px and row i covers north
(-(i+1), -i] * m_per_px of the origin, i.e. rows grow southwards so tiles are north-up images.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Protocol

import cv2
import numpy as np

from payload.geo.frames import LocalFrame

TILE_PX = 256
CHANNELS = 4  # R, G, B and the view's nadir key
EMPTY = 255  # the key of a canvas pixel no frame has painted
KEY_PER_TAN = 100.0  # key = 100 tan(off-nadir angle): steps of 0.01, about 0.6 degrees near nadir
MAX_WINDOW_PX = 4096  # a frame spreading wider than this on the canvas is too oblique to help the picture

TileKey = tuple[int, int]


def homography_from_points(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 3x3 homography H with dst ~ H src for (N, 2) point pairs, N >= 4 (normalised DLT, least squares).

    Normalising both sets (centroid at 0, mean distance sqrt(2)) keeps the fit well conditioned when
    pixels are hundreds and metres are tens (Hartley and Zisserman, algorithm 4.2).
    """
    s = np.asarray(src, dtype=np.float64).reshape(-1, 2)
    d = np.asarray(dst, dtype=np.float64).reshape(-1, 2)
    if len(s) != len(d) or len(s) < 4:
        raise ValueError(f"a homography needs at least 4 point pairs, got {len(s)} and {len(d)}")
    if not (np.all(np.isfinite(s)) and np.all(np.isfinite(d))):
        raise ValueError("homography points must be finite")

    def norm(p: np.ndarray) -> np.ndarray:
        c = p.mean(axis=0)
        scale = math.sqrt(2.0) / max(float(np.mean(np.linalg.norm(p - c, axis=1))), 1e-12)
        return np.array([[scale, 0.0, -scale * c[0]], [0.0, scale, -scale * c[1]], [0.0, 0.0, 1.0]])

    ts, td = norm(s), norm(d)
    sn = (ts @ np.c_[s, np.ones(len(s))].T).T
    dn = (td @ np.c_[d, np.ones(len(d))].T).T
    x, y, u, v = sn[:, 0], sn[:, 1], dn[:, 0], dn[:, 1]
    one, zero = np.ones_like(x), np.zeros_like(x)
    a = np.empty((2 * len(x), 9))
    a[0::2] = np.stack([-x, -y, -one, zero, zero, zero, u * x, u * y, u], axis=1)
    a[1::2] = np.stack([zero, zero, zero, -x, -y, -one, v * x, v * y, v], axis=1)
    # the 9x9 normal matrix has the same singular vectors: one small SVD instead of a (2N x 2N) one,
    # which costs tens of milliseconds per frame on a busy 2-core computer
    _, sv2, vt = np.linalg.svd(a.T @ a)
    sv = np.sqrt(np.maximum(sv2, 0.0))
    if sv[-2] < 1e-6 * sv[0]:  # exact degeneracy shows as ~sqrt(machine epsilon) through the normal matrix
        raise ValueError("the points do not determine a homography (collinear or repeated)")
    hn = vt[-1].reshape(3, 3)
    h = np.linalg.inv(td) @ hn @ ts
    return h / h[2, 2]


def apply_homography(h: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """(N, 2) points through a homography (NaN where a point maps to infinity)."""
    p = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
    q = (np.asarray(h, dtype=np.float64) @ np.c_[p, np.ones(len(p))].T).T
    with np.errstate(divide="ignore", invalid="ignore"):
        return q[:, :2] / q[:, 2:3]


def nadir_key(east: np.ndarray, north: np.ndarray, vehicle_en: tuple[float, float], height_agl_m: float) -> np.ndarray:
    """The compositing key of ground points seen from a camera height_agl_m above vehicle_en (uint8; smaller wins).

    100 x the tangent of the ray's angle from the vertical, so 0 is straight below the camera;
    saturates at 254 (EMPTY, 255, marks an unpainted pixel).
    """
    if not height_agl_m > 0:
        raise ValueError(f"the camera must be above the ground, got height {height_agl_m}")
    de = np.asarray(east, dtype=np.float32) - np.float32(vehicle_en[0])
    dn = np.asarray(north, dtype=np.float32) - np.float32(vehicle_en[1])
    tan = np.hypot(de, dn) * np.float32(KEY_PER_TAN / height_agl_m)
    return np.minimum(np.rint(tan), EMPTY - 1).astype(np.uint8)


def composite(dst: np.ndarray, src_rgb: np.ndarray, src_key: np.ndarray) -> None:
    """Paint src into dst (an (h, w, 4) RGB+key block, in place) where src is painted and at least as nadir.

    `src_key` is EMPTY where the frame did not reach; ties go to src (the newer frame), so a pass
    flown again later refreshes the picture.
    """
    take = (src_key != EMPTY) & (src_key <= dst[..., 3])
    np.copyto(dst[..., :3], src_rgb, where=take[..., None])
    np.copyto(dst[..., 3], src_key, where=take)


def new_tile(tile_px: int = TILE_PX) -> np.ndarray:
    """An unpainted tile: black with the EMPTY key."""
    t = np.zeros((tile_px, tile_px, CHANNELS), dtype=np.uint8)
    t[..., 3] = EMPTY
    return t


class TileStore(Protocol):
    """Where the canvas keeps its tiles (in memory, or spilling cold tiles to disk)."""

    def get(self, key: TileKey) -> np.ndarray:
        """The tile (created unpainted when new); the array stays valid until the next `trim`."""
        ...

    def keys(self) -> Iterable[TileKey]:
        """Every tile ever created."""
        ...

    def trim(self) -> None:
        """Release memory between frames (a spilling store writes cold tiles out here)."""
        ...


class MemoryTiles:
    """Every tile in memory: for tests and small fields; memory grows with the area flown."""

    def __init__(self, tile_px: int = TILE_PX) -> None:
        self.tile_px = tile_px
        self.tiles: dict[TileKey, np.ndarray] = {}

    def get(self, key: TileKey) -> np.ndarray:
        t = self.tiles.get(key)
        if t is None:
            t = self.tiles[key] = new_tile(self.tile_px)
        return t

    def keys(self) -> Iterable[TileKey]:
        return list(self.tiles)

    def trim(self) -> None:
        return None


class MosaicCanvas:
    """Frames composited onto a north-up canvas of m_per_px pixels in the local frame `origin`."""

    def __init__(self, origin: LocalFrame, m_per_px: float, store: TileStore | None = None,
                 tile_px: int = TILE_PX) -> None:
        if not m_per_px > 0:
            raise ValueError(f"m_per_px must be positive, got {m_per_px}")
        self.origin = origin
        self.m_per_px = float(m_per_px)
        self.tile_px = int(tile_px)
        self.store: TileStore = store if store is not None else MemoryTiles(self.tile_px)
        self.frames = 0
        self.skipped = 0

    def add_frame(self, pixels: np.ndarray, src_uv: np.ndarray, dst_en: np.ndarray,
                  vehicle_en: tuple[float, float], height_agl_m: float) -> bool:
        """Composite one RGB frame given point pairs (frame pixels -> ground east/north metres).

        Pixels are continuous, (0, 0) the top-left corner of the top-left pixel (payload/geo/camera.py).
        Returns False (and counts it) when the frame would spread over more than MAX_WINDOW_PX.
        """
        h_img = homography_from_points(src_uv, dst_en)
        hgt, wid = pixels.shape[:2]
        corners = apply_homography(h_img, np.array([[0.0, 0.0], [wid, 0.0], [wid, hgt], [0.0, hgt]]))
        if not np.all(np.isfinite(corners)):
            self.skipped += 1
            return False
        res = self.m_per_px
        j0 = math.floor(corners[:, 0].min() / res)
        j1 = math.ceil(corners[:, 0].max() / res)
        i0 = math.floor(-corners[:, 1].max() / res)
        i1 = math.ceil(-corners[:, 1].min() / res)
        w, h = j1 - j0, i1 - i0
        if w <= 0 or h <= 0 or w > MAX_WINDOW_PX or h > MAX_WINDOW_PX:
            self.skipped += 1
            return False
        # shrink the frame to about the canvas's pixel size first: warpPerspective interpolates
        # linearly, so a frame much finer than the canvas would alias
        gsd = math.sqrt(abs(_area(corners)) / float(wid * hgt))
        scale = min(1.0, gsd / res)
        if scale < 0.999:
            ws, hs = max(2, round(wid * scale)), max(2, round(hgt * scale))
            src = cv2.resize(pixels, (ws, hs), interpolation=cv2.INTER_AREA)
        else:
            ws, hs, src = wid, hgt, pixels
        # cv2 indexes pixel centres at integers; frame pixels and canvas cells are continuous here
        to_src = np.array([[ws / wid, 0.0, -0.5], [0.0, hs / hgt, -0.5], [0.0, 0.0, 1.0]])
        to_dst = np.array([[1.0 / res, 0.0, -j0 - 0.5], [0.0, -1.0 / res, -i0 - 0.5], [0.0, 0.0, 1.0]])
        m = to_dst @ h_img @ np.linalg.inv(to_src)
        rgb = cv2.warpPerspective(np.ascontiguousarray(src), m, (w, h), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REPLICATE)
        inside = cv2.warpPerspective(np.full((hs, ws), 255, np.uint8), m, (w, h), flags=cv2.INTER_NEAREST,
                                     borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        east = (j0 + np.arange(w) + 0.5) * res
        north = -(i0 + np.arange(h) + 0.5) * res
        key = nadir_key(east[None, :], north[:, None], vehicle_en, height_agl_m)
        key[inside == 0] = EMPTY
        self._paint(i0, j0, rgb, key)
        self.frames += 1
        self.store.trim()
        return True

    def _paint(self, i0: int, j0: int, rgb: np.ndarray, key: np.ndarray) -> None:
        t = self.tile_px
        h, w = key.shape
        for ti in range(i0 // t, (i0 + h - 1) // t + 1):
            for tj in range(j0 // t, (j0 + w - 1) // t + 1):
                a0, a1 = max(i0, ti * t), min(i0 + h, (ti + 1) * t)
                b0, b1 = max(j0, tj * t), min(j0 + w, (tj + 1) * t)
                k = key[a0 - i0:a1 - i0, b0 - j0:b1 - j0]
                if not (k != EMPTY).any():
                    continue
                tile = self.store.get((ti, tj))
                composite(tile[a0 - ti * t:a1 - ti * t, b0 - tj * t:b1 - tj * t],
                          rgb[a0 - i0:a1 - i0, b0 - j0:b1 - j0], k)

    def tile_bounds(self) -> tuple[int, int, int, int] | None:
        """(row0, row1, col0, col1) canvas pixel bounds of the tiles (None: nothing painted)."""
        ks = list(self.store.keys())
        if not ks:
            return None
        a = np.array(ks, dtype=np.int64)
        t = self.tile_px
        return (int(a[:, 0].min() * t), int((a[:, 0].max() + 1) * t),
                int(a[:, 1].min() * t), int((a[:, 1].max() + 1) * t))

    def pixel_en(self, row: float, col: float) -> tuple[float, float]:
        """East, north metres of canvas position (row, col) (continuous: integers are pixel corners)."""
        return col * self.m_per_px, -row * self.m_per_px


def _area(q: np.ndarray) -> float:
    x, y = q[:, 0], q[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
