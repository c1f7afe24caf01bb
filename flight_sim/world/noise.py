"""Procedural primitives evaluated per point: integer hashes, value noise, and analytic box filters.

Nothing here holds a raster: every function maps arrays of points to arrays of values, so the world
costs what the frame asks for. Hashes are 32-bit integer mixers (wrapping uint32 arithmetic), so a
cell's random values depend only on its integer coordinates and the seed: deterministic and
independent of which points happen to be asked about, or in which order.
"""

from __future__ import annotations

import math

import numpy as np

F32 = np.float32
U32 = np.uint32
INV_256 = F32(1.0 / 256.0)
INV_2_24 = F32(1.0 / (1 << 24))
SQRT3 = F32(np.sqrt(3.0))


def _mix(h: np.ndarray) -> np.ndarray:
    """Finalise a uint32 hash in place (the lowbias32 mixer: every input bit reaches every output bit)."""
    h ^= h >> U32(16)
    h *= U32(0x7FEB352D)
    h ^= h >> U32(15)
    h *= U32(0x846CA68B)
    h ^= h >> U32(16)
    return h


def _u32(a: np.ndarray) -> np.ndarray:
    """The bits of a 32-bit integer array as uint32 (a view, no copy)."""
    return a.view(U32) if a.dtype.itemsize == 4 and a.dtype.kind in "iu" else a.astype(np.int64).astype(U32)


def hash2(ix: np.ndarray, iy: np.ndarray, seed: int | np.ndarray) -> np.ndarray:
    """uint32 hash of two integer lattice coordinates (int32 arrays) and a seed (int or uint32 array)."""
    h = _u32(ix) * U32(0x8DA6B343)
    h ^= _u32(iy) * U32(0xD8163841)
    if isinstance(seed, np.ndarray):
        h ^= seed.astype(U32, copy=False)
    else:
        h ^= U32(seed & 0xFFFFFFFF)
    return _mix(h)


def hash1(ix: np.ndarray, seed: int) -> np.ndarray:
    """uint32 hash of one integer coordinate (int32 array) and a seed."""
    h = _u32(ix) * U32(0x9E3779B1)
    h ^= U32(seed & 0xFFFFFFFF)
    return _mix(h)


def byte_u(h: np.ndarray, k: int) -> np.ndarray:
    """The k-th byte of a hash as a uniform in [0, 1) with 256 levels (four cheap variates per hash)."""
    return ((h >> U32(8 * k)) & U32(255)).astype(F32) * INV_256 + F32(0.5 / 256.0)


def high_u(h: np.ndarray) -> np.ndarray:
    """The top 24 bits of a hash as a uniform in [0, 1) (for thresholds that need fine resolution)."""
    return (h >> U32(8)).astype(F32) * INV_2_24


NOISE_BASE_M = 1e-4  # the finest block of ground noise: 0.1 mm
NOISE_MAX = F32(np.sqrt(6.0))  # largest |value| of a ground-noise channel (two uniforms of unit variance)


class GroundNoise:
    """Unit-variance noise anchored to the ground, in blocks about one footprint wide.

    Sub-pixel features are summarised by their expected share plus noise with the spread a
    footprint's count of features has. That noise must belong to the ground, not to the pixel: the
    same ground seen in two frames (or by two overlapping footprints) shows the same texture. Each
    point takes the hash of its block on two power-of-two lattices around its footprint (cells in
    (w/2, w] and (w, 2w]) and mixes them with weights cos and sin of the footprint's position
    between them, so the variance stays 1 and the texture changes smoothly with the footprint.
    Each hash gives four channels (bytes); channels 4-7 come from a second mix of the same hashes.
    """

    def __init__(self, east_m: np.ndarray, north_m: np.ndarray, w: np.ndarray, seed: int) -> None:
        w0, w1 = float(w.min()), float(w.max())
        if w0 == w1:  # one footprint for all (a nadir frame): the levels are scalars
            lv = np.float32(math.log2(w0 / NOISE_BASE_M))
            level = np.floor(lv)
            t = float(lv - level) * math.pi / 2.0
            self.a = np.float32(math.cos(t))
            self.b = np.float32(math.sin(t))
        else:
            lv = np.log2(w * F32(1.0 / NOISE_BASE_M))
            level = np.floor(lv)
            ta = (lv - level) * F32(np.pi / 2.0)
            self.a = np.cos(ta)
            self.b = np.sin(ta)
        self.h = []
        for k in (0, 1):
            lk = level + F32(k)
            inv = np.exp2(-lk) * F32(1.0 / NOISE_BASE_M)  # 1 / cell size
            shift = lk * F32(0.3819660)  # each level's lattice offset from the others
            ix = np.floor(east_m * inv + shift).astype(np.int32)
            iy = np.floor(north_m * inv + shift).astype(np.int32)
            salt = np.asarray(lk).astype(np.int32).view(U32) * U32(0x9E3779B1) ^ U32(seed & 0xFFFFFFFF)
            self.h.append(hash2(ix, iy, salt if salt.ndim else int(salt)))
        self._more: list[np.ndarray] | None = None

    def channel(self, k: int) -> np.ndarray:
        """Channel k (0-7): zero mean, unit variance, |value| <= sqrt(6)."""
        if k < 4:
            h0, h1 = self.h
        else:
            if self._more is None:
                self._more = [_mix(h ^ U32(0x85EBCA6B)) for h in self.h]
            h0, h1 = self._more
        j = k % 4
        return unit_noise(h0, j) * self.a + unit_noise(h1, j) * self.b

    def take(self, idx: np.ndarray | slice) -> GroundNoise:
        """The noise at a subset of the points."""
        out = GroundNoise.__new__(GroundNoise)
        out.a = self.a[idx] if np.ndim(self.a) else self.a
        out.b = self.b[idx] if np.ndim(self.b) else self.b
        out.h = [h[idx] for h in self.h]
        out._more = None
        return out


def unit_noise(h: np.ndarray, k: int) -> np.ndarray:
    """Zero-mean, unit-variance noise from the k-th byte of a hash (uniform on [-sqrt 3, sqrt 3])."""
    return (byte_u(h, k) - F32(0.5)) * (F32(2.0) * SQRT3)


def smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    """0 below e0, 1 above e1, a C1 cubic between (the blend from drawn to statistical features)."""
    t = np.clip((x - F32(e0)) * F32(1.0 / (e1 - e0)), 0.0, 1.0)
    return t * t * (F32(3.0) - F32(2.0) * t)


def _lattice_u(i: np.ndarray, j: np.ndarray | None, seed: int) -> np.ndarray:
    """A cheap lattice hash as a uniform in [0, 1): enough mixing for smooth noise, half the cost of hash2."""
    h = _u32(i) * U32(0x9E3779B1)
    if j is not None:
        h += _u32(j) * U32(0x85EBCA77)
    h ^= U32(seed & 0xFFFFFFFF)
    h ^= h >> U32(15)
    h *= U32(0x2C1B3C6D)
    h ^= h >> U32(12)
    return (h >> U32(8)).astype(F32) * INV_2_24


def value_noise1(x: np.ndarray, seed: int) -> np.ndarray:
    """Smooth 1-D value noise in [0, 1) with unit cell size (x in cells)."""
    fx = np.floor(x)
    i = fx.astype(np.int32)
    t = x - fx
    t = t * t * (F32(3.0) - F32(2.0) * t)
    a = _lattice_u(i, None, seed)
    b = _lattice_u(i + 1, None, seed)
    return a + (b - a) * t


def value_noise2(x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """Smooth 2-D value noise in [0, 1) with unit cell size (x, y in cells)."""
    fx = np.floor(x)
    fy = np.floor(y)
    i = fx.astype(np.int32)
    j = fy.astype(np.int32)
    tx = x - fx
    ty = y - fy
    tx = tx * tx * (F32(3.0) - F32(2.0) * tx)
    ty = ty * ty * (F32(3.0) - F32(2.0) * ty)
    i1 = i + 1
    j1 = j + 1
    a = _lattice_u(i, j, seed)
    b = _lattice_u(i1, j, seed)
    c = _lattice_u(i, j1, seed)
    d = _lattice_u(i1, j1, seed)
    ab = a + (b - a) * tx
    cd = c + (d - c) * tx
    return ab + (cd - ab) * ty


def band_fraction(u: np.ndarray, width: np.ndarray, period: float, half_band: np.ndarray,
                  centre: float | np.ndarray = 0.0) -> np.ndarray:
    """Exact share of the interval [u - width/2, u + width/2] inside bands [c - h, c + h] repeating every `period`.

    The box filter of a row pattern, analytically: the band's cumulative length C(x) is a
    staircase plus a clamped ramp, and the share is (C(hi) - C(lo)) / width. Correct for any
    footprint, from far below the band width to many periods.
    """
    p = F32(period)
    band = np.minimum(F32(2.0) * half_band, p)
    shift = half_band - centre  # the band starts at 0 in shifted coordinates

    def cum(x: np.ndarray) -> np.ndarray:
        xs = x + shift
        k = np.floor(xs / p)
        return k * band + np.minimum(xs - k * p, band)

    half = F32(0.5) * width
    return np.clip((cum(u + half) - cum(u - half)) / np.maximum(width, F32(1e-9)), 0.0, 1.0)


def ramp_radius(r: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The radius at which a disc's linear anti-aliasing ramp (width w) must sit to keep its true area.

    A ramp clip(1/2 + (r' - rho) / w) spreads a disc's edge over the footprint; its integral is
    pi (r'^2 + w^2 / 12) while r' >= w / 2 and pi (r' + w/2)^3 / (3 w) below. Solving either for
    pi r^2 keeps every drawn feature's expected area exact, so a 1 mm rendering box-averaged to
    32 mm has the same mean as a 32 mm rendering.
    """
    r2 = r * r
    w2 = w * w
    wide = r2 * F32(3.0) < w2
    near = np.sqrt(np.maximum(r2 - w2 * F32(1.0 / 12.0), 0.0))
    if not wide.any():
        return near
    far = np.cbrt(F32(3.0) * w * r2) - F32(0.5) * w
    return np.where(wide, far, near)
