"""Surfaces camera rays end on: flat ground, a terrain model (a DEM as a height field), a set of planes.

The camera model (payload/geo/camera.py) turns a pixel into a ray; what that ray meets is a
question of the world, not of the camera, so it lives here behind one interface, `Surface`:
`intersect(origin, dirs)` cuts rays from one origin with the surface and says, per ray, where it
ended (`SurfaceHits`). Flat ground is one implementation (the historic assumption: the ground is
level at home altitude); a `HeightField` is terrain (a grower's DEM, resampled once into the local
frame by payload/geo/demfile.py); `Planes` is a set of finite rectangles (the faces of growing
racks indoors, a wall, a tilted plane in a test).

Frame: every surface is expressed in a local East-North-Up frame in metres (payload/geo/frames.py
`LocalFrame`). A surface anchored to the Earth carries that frame in `frame` so geodetic poses and
hits can be converted (payload/geo/camera.py does it); an indoor site's planes may have no geodetic
anchor at all (`frame=None`: the EKF's local frame).

Why status codes and not exceptions: a sighting whose ray leaves the DEM must still be recorded,
flagged (docs/geotag.md), so `intersect` never raises for one ray; it marks it OUTSIDE, and
`SurfaceHits.require_inside()` turns that into a clear `OutsideSurfaceError` for callers that
cannot go on (a tool, a test, a footprint that must be whole).

Pure numpy, no I/O: the simulator renders with exactly this code (a contract module).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from payload.geo.frames import LocalFrame

# SurfaceHits.status values
HIT = 0  # the ray meets the surface at `enu`
MISS = 1  # the ray meets nothing (above the horizon, between planes into the distance, origin under ground)
OUTSIDE = 2  # the ray leaves the surface's known extent (a DEM's edge or a no-data hole) before meeting it

# SurfaceHits.piece values besides a plane's index
NO_PIECE = -1  # no hit
FLOOR = -2  # Planes: the ray met the floor below the planes first
GROUND = 0  # a ground surface is one piece

DEFAULT_TOLERANCE_M = 0.01  # height-field hits are refined until the bracket along the ray is this short
DEFAULT_STEP_CELLS = 0.5  # ray marching advances at most half a DEM cell horizontally per step


class OutsideSurfaceError(ValueError):
    """A ray (or the vehicle) left the surface's known extent: the terrain there is unknown."""


@dataclass(frozen=True)
class SurfaceHits:
    """Where N rays from one origin ended.

    `enu` (N, 3) local-frame points, NaN unless HIT; `t` (N,) metres along the unit ray (inf unless
    HIT); `status` (N,) HIT / MISS / OUTSIDE; `piece` (N,) which part was hit (a plane's index,
    FLOOR, GROUND for a ground surface, NO_PIECE); `plane_uv` (N, 2) the hit's coordinates along the
    hit plane's two axes (NaN unless a plane was hit); `surface` names the surface for messages.
    """

    enu: np.ndarray
    t: np.ndarray
    status: np.ndarray
    piece: np.ndarray
    plane_uv: np.ndarray
    origin: np.ndarray
    surface: str = ""

    @property
    def hit(self) -> np.ndarray:
        """(N,) bool: the ray met the surface."""
        return self.status == HIT

    @property
    def outside(self) -> np.ndarray:
        """(N,) bool: the ray left the surface's known extent first."""
        return self.status == OUTSIDE

    def require_inside(self) -> SurfaceHits:
        """These hits, or OutsideSurfaceError naming the surface and the first ray that left it."""
        bad = np.flatnonzero(self.outside)
        if bad.size:
            o = self.origin
            raise OutsideSurfaceError(
                f"{bad.size} of {len(self.status)} rays from east {o[0]:.2f} m, north {o[1]:.2f} m, up "
                f"{o[2]:.2f} m leave {self.surface or 'the surface'} before meeting it (first: ray {int(bad[0])}); "
                "the terrain there is unknown: supply a DEM that covers the flight and its camera footprints"
            )
        return self


def _unit_rays(origin: Any, dirs: Any) -> tuple[np.ndarray, np.ndarray]:
    o = np.asarray(origin, dtype=float).reshape(3)
    d = np.asarray(dirs, dtype=float).reshape(-1, 3)
    with np.errstate(invalid="ignore", divide="ignore"):
        d = d / np.linalg.norm(d, axis=1, keepdims=True)
    return o, d


def _hits(o: np.ndarray, d: np.ndarray, t: np.ndarray, status: np.ndarray, piece: np.ndarray,
          plane_uv: np.ndarray | None, name: str) -> SurfaceHits:
    ok = status == HIT
    tt = np.where(ok, t, np.inf)
    enu = np.where(ok[:, None], o + np.where(ok, t, 0.0)[:, None] * d, np.nan)
    uv = np.full((len(t), 2), np.nan) if plane_uv is None else plane_uv
    return SurfaceHits(enu, tt, status.astype(np.int8), piece.astype(np.int64), uv, o, name)


class Surface(ABC):
    """What camera rays meet, in a local ENU frame (metres)."""

    frame: LocalFrame | None = None  # the geodetic anchor of the local frame; None: a purely local frame

    @property
    def name(self) -> str:
        """How messages name this surface ('flat ground at up 0.0 m', 'the DEM field.tif')."""
        return type(self).__name__

    @abstractmethod
    def intersect(self, origin: Any, dirs: Any) -> SurfaceHits:
        """Cut rays from `origin` (3,) along `dirs` (N, 3) (any length, not all zero) with the surface."""


class GroundSurface(Surface):
    """A surface that is a height over the horizontal plane (one ground point per east, north)."""

    @abstractmethod
    def height_at(self, east: Any, north: Any) -> np.ndarray:
        """Up (m, local frame) of the ground at east, north (broadcast); NaN where unknown (outside a DEM)."""

    def require_height(self, east: float, north: float, what: str = "point") -> float:
        """The ground's up at one point, or OutsideSurfaceError naming the surface, the point and the extent."""
        h = float(np.asarray(self.height_at(east, north)).reshape(-1)[0])
        if not math.isfinite(h):
            raise OutsideSurfaceError(
                f"the {what} at east {east:.2f} m, north {north:.2f} m is outside {self.name} "
                f"({self.extent_text()}): the terrain there is unknown"
            )
        return h

    def extent_text(self) -> str:
        """The known extent in words (unbounded for flat ground)."""
        return "unbounded"


@dataclass(frozen=True)
class FlatGround(GroundSurface):
    """Level ground at `up_m` in the local frame: today's assumption (home altitude), everywhere."""

    up_m: float = 0.0
    frame: LocalFrame | None = None

    @property
    def name(self) -> str:
        return f"flat ground at up {self.up_m:.2f} m"

    def height_at(self, east: Any, north: Any) -> np.ndarray:
        e, n = np.broadcast_arrays(np.asarray(east, dtype=float), np.asarray(north, dtype=float))
        return np.full(e.shape, float(self.up_m))

    def intersect(self, origin: Any, dirs: Any) -> SurfaceHits:
        o, d = _unit_rays(origin, dirs)
        h = o[2] - self.up_m
        with np.errstate(divide="ignore", invalid="ignore"):
            t = h / -d[:, 2]
        ok = (h > 0) & (d[:, 2] < -1e-12) & np.isfinite(t)
        status = np.where(ok, HIT, MISS)
        piece = np.where(ok, GROUND, NO_PIECE)
        return _hits(o, d, t, status, piece, None, self.name)


@dataclass(frozen=True, eq=False)
class HeightField(GroundSurface):
    """Terrain as heights on a regular square grid in the local frame, bilinear between nodes.

    `heights[r, c]` is the up (m) of the node at east `east0_m + c * cell_m`, north
    `north0_m - r * cell_m` (row 0 is the NORTH edge, as a north-up raster); NaN is no data. The
    known extent is the nodes' bounding box; a point outside it or in a cell touching a NaN node has
    no height (NaN), and a ray that needs it is OUTSIDE.

    Rays are marched between where they cross the grid's highest and lowest heights, in steps of
    `step_cells` cells horizontally or, when longer, of the distance the ray cannot meet the terrain
    in (its height above the terrain over how fast that can shrink given the steepest slope of the
    grid: no crossing can be skipped, and a ray high above the ground gets there in a few steps);
    the first step that ends below the terrain is refined
    by bisection until the bracket along the ray is at most `tolerance_m` long; the hit is the
    linear (false-position) estimate inside that bracket. A ridge thinner than a step can be cut
    through at grazing angles only; with half-cell steps and bilinear terrain a ray crossing a node's
    peak from above is always caught.
    """

    heights: np.ndarray
    east0_m: float
    north0_m: float
    cell_m: float
    frame: LocalFrame | None = None
    source: str = ""
    tolerance_m: float = DEFAULT_TOLERANCE_M
    step_cells: float = DEFAULT_STEP_CELLS
    _lo: float = field(init=False, repr=False, default=0.0)
    _hi: float = field(init=False, repr=False, default=0.0)
    _grad: float = field(init=False, repr=False, default=0.0)

    def __post_init__(self) -> None:
        h = np.asarray(self.heights, dtype=float)
        if h.ndim != 2 or h.shape[0] < 2 or h.shape[1] < 2:
            raise ValueError(f"a height field needs at least 2 x 2 nodes, got shape {h.shape}")
        if not self.cell_m > 0:
            raise ValueError(f"cell size must be positive, got {self.cell_m}")
        if not np.isfinite(h).any():
            raise ValueError(f"{self.source or 'the height field'} holds no data (every height is NaN)")
        if not (0 < self.tolerance_m <= 0.1):
            raise ValueError(f"tolerance must be in (0, 0.1] m, got {self.tolerance_m}")
        if not (0 < self.step_cells <= 1.0):
            raise ValueError(f"step must be in (0, 1] cells, got {self.step_cells}")
        h = h.copy()
        h.setflags(write=False)
        object.__setattr__(self, "heights", h)
        object.__setattr__(self, "_lo", float(np.nanmin(h)))
        object.__setattr__(self, "_hi", float(np.nanmax(h)))
        # the steepest slope anywhere (bilinear terrain is no steeper than its steepest cell edges combined)
        gx = np.nanmax(np.abs(np.diff(h, axis=1)), initial=0.0) / self.cell_m
        gy = np.nanmax(np.abs(np.diff(h, axis=0)), initial=0.0) / self.cell_m
        object.__setattr__(self, "_grad", float(math.hypot(gx, gy)))

    @property
    def name(self) -> str:
        return f"the DEM {self.source}" if self.source else "the height field"

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(west, east, south, north) of the nodes, local metres."""
        rows, cols = self.heights.shape
        return (self.east0_m, self.east0_m + (cols - 1) * self.cell_m,
                self.north0_m - (rows - 1) * self.cell_m, self.north0_m)

    @property
    def relief_m(self) -> float:
        """Highest minus lowest height (m)."""
        return self._hi - self._lo

    def extent_text(self) -> str:
        w, e, s, n = self.bounds
        return f"east {w:.1f}..{e:.1f} m, north {s:.1f}..{n:.1f} m"

    def height_at(self, east: Any, north: Any) -> np.ndarray:
        e, n = np.broadcast_arrays(np.asarray(east, dtype=float), np.asarray(north, dtype=float))
        return self._bilinear(e.ravel(), n.ravel()).reshape(e.shape)

    def _bilinear(self, e: np.ndarray, n: np.ndarray) -> np.ndarray:
        rows, cols = self.heights.shape
        x = (e - self.east0_m) / self.cell_m
        y = (self.north0_m - n) / self.cell_m
        inside = (x >= 0) & (x <= cols - 1) & (y >= 0) & (y <= rows - 1)
        xs = np.where(inside, x, 0.0)
        ys = np.where(inside, y, 0.0)
        c0 = np.minimum(np.floor(xs).astype(np.int64), cols - 2)
        r0 = np.minimum(np.floor(ys).astype(np.int64), rows - 2)
        fx = xs - c0
        fy = ys - r0
        h = self.heights
        top = h[r0, c0] * (1 - fx) + h[r0, c0 + 1] * fx
        bot = h[r0 + 1, c0] * (1 - fx) + h[r0 + 1, c0 + 1] * fx
        out = top * (1 - fy) + bot * fy
        return np.where(inside, out, np.nan)

    def intersect(self, origin: Any, dirs: Any) -> SurfaceHits:
        o, d = _unit_rays(origin, dirs)
        n = len(d)
        t_out = np.full(n, np.inf)
        status = np.full(n, MISS, dtype=np.int64)
        w, e, s, nn = self.bounds
        with np.errstate(divide="ignore", invalid="ignore"):
            # the band of t where the ray is between the lowest and the highest terrain
            dz = d[:, 2]
            t_at_hi = (self._hi - o[2]) / dz
            t_at_lo = (self._lo - o[2]) / dz
            level = (o[2] >= self._lo) & (o[2] <= self._hi)
            t_enter = np.where(dz < 0, t_at_hi, np.where(dz > 0, t_at_lo, np.where(level, -np.inf, np.inf)))
            t_bot = np.where(dz < 0, t_at_lo, np.where(dz > 0, t_at_hi, np.where(level, np.inf, -np.inf)))
            a = np.maximum(t_enter, 0.0)
            # the t interval where the ray is inside the grid's box (slab method)
            c = np.zeros(n)
            dd = np.full(n, np.inf)
            for k, lo, hi in ((0, w, e), (1, s, nn)):
                dk = d[:, k]
                t1 = (lo - o[k]) / dk
                t2 = (hi - o[k]) / dk
                flat = np.abs(dk) < 1e-15
                inside_k = (o[k] >= lo) & (o[k] <= hi)
                tmin = np.where(flat, np.where(inside_k, -np.inf, np.inf), np.minimum(t1, t2))
                tmax = np.where(flat, np.where(inside_k, np.inf, -np.inf), np.maximum(t1, t2))
                c = np.maximum(c, tmin)
                dd = np.minimum(dd, tmax)
        finite_dir = np.all(np.isfinite(d), axis=1)
        in_band = finite_dir & (a <= t_bot) & np.isfinite(a)
        # the band starts outside the grid: the ground there is unknown
        outside = in_band & ((c > a + 1e-9) | (dd < a - 1e-9))
        status[outside] = OUTSIDE
        todo = np.flatnonzero(in_band & ~outside)
        if todo.size:
            end = np.minimum(t_bot[todo], dd[todo])
            leaves = dd[todo] < t_bot[todo]  # the grid ends before the band does
            t_hit, found, nodata = self._march(o, d[todo], a[todo], end)
            t_out[todo[found]] = t_hit[found]
            status[todo[found]] = HIT
            status[todo[~found & (leaves | nodata)]] = OUTSIDE
        piece = np.where(status == HIT, GROUND, NO_PIECE)
        return _hits(o, d, t_out, status, piece, None, self.name)

    def _march(self, o: np.ndarray, d: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[
            np.ndarray, np.ndarray, np.ndarray]:
        """First crossing from above to below the terrain on t in [a, b] per ray: (t, found, met no data)."""
        m = len(d)
        horiz = np.hypot(d[:, 0], d[:, 1])
        with np.errstate(divide="ignore"):
            dt = np.where(horiz > 1e-12, self.step_cells * self.cell_m / horiz, np.inf)
        closing = self._grad * horiz - d[:, 2]  # the fastest the height above the terrain can shrink per metre
        t_hit = np.full(m, np.nan)
        found = np.zeros(m, dtype=bool)
        nodata = np.zeros(m, dtype=bool)

        def f(idx: np.ndarray, t: np.ndarray) -> np.ndarray:
            p = o + t[:, None] * d[idx]
            return p[:, 2] - self._bilinear(p[:, 0], p[:, 1])

        idx = np.arange(m)
        t_prev = a.copy()
        f_prev = f(idx, t_prev)
        lo_t: list[np.ndarray] = []
        hi_t: list[np.ndarray] = []
        lo_f: list[np.ndarray] = []
        hi_f: list[np.ndarray] = []
        which: list[np.ndarray] = []
        # a ray that starts at or under the terrain (origin under the ground) meets nothing from above;
        # a descending ray at or under it where it enters the band grazes the highest node: a hit there
        bad = np.isnan(f_prev)
        nodata[idx[bad]] = True
        under = f_prev <= 0
        at_top = under & ~bad & (a > 0) & (d[:, 2] < 0)
        t_hit[idx[at_top]] = a[at_top]
        found[idx[at_top]] = True
        keep = ~bad & ~under
        idx, t_prev, f_prev = idx[keep], t_prev[keep], f_prev[keep]
        while idx.size:
            with np.errstate(divide="ignore", invalid="ignore"):
                safe = np.where(closing[idx] > 0, f_prev / closing[idx], np.inf)
            t_next = np.minimum(t_prev + np.maximum(dt[idx], safe), b[idx])
            f_next = f(idx, t_next)
            nan = np.isnan(f_next)
            crossed = ~nan & (f_next <= 0)
            if crossed.any():
                which.append(idx[crossed])
                lo_t.append(t_prev[crossed])
                hi_t.append(t_next[crossed])
                lo_f.append(f_prev[crossed])
                hi_f.append(f_next[crossed])
            nodata[idx[nan]] = True
            go = ~nan & ~crossed & (t_next < b[idx])
            idx, t_prev, f_prev = idx[go], t_next[go], f_next[go]
        if which:
            w = np.concatenate(which)
            t_hit[w] = self._refine(o, d[w], np.concatenate(lo_t), np.concatenate(hi_t),
                                    np.concatenate(lo_f), np.concatenate(hi_f))
            found[w] = True
        return t_hit, found, nodata

    def _refine(self, o: np.ndarray, d: np.ndarray, lo: np.ndarray, hi: np.ndarray, flo: np.ndarray,
                fhi: np.ndarray) -> np.ndarray:
        """Bisect [lo, hi] (above at lo, at or below at hi) to `tolerance_m`, then interpolate linearly inside."""
        span = float(np.max(hi - lo)) if lo.size else 0.0
        steps = max(0, math.ceil(math.log2(span / self.tolerance_m))) if span > self.tolerance_m else 0
        for _ in range(steps):
            mid = 0.5 * (lo + hi)
            p = o + mid[:, None] * d
            fm = p[:, 2] - self._bilinear(p[:, 0], p[:, 1])
            below = ~(fm > 0)  # NaN cannot occur between two known samples of a convex cell set; count it below
            hi = np.where(below, mid, hi)
            fhi = np.where(below, np.nan_to_num(fm, nan=0.0), fhi)
            lo = np.where(below, lo, mid)
            flo = np.where(below, flo, fm)
        with np.errstate(divide="ignore", invalid="ignore"):
            frac = np.where(flo - fhi > 0, flo / (flo - fhi), 1.0)
        return lo + np.clip(frac, 0.0, 1.0) * (hi - lo)


@dataclass(frozen=True, eq=False)
class RectPlane:
    """A finite rectangle: `origin` + a * `u_axis` + b * `v_axis` for a in [0, u_extent_m], b in [0, v_extent_m].

    The axes are unit vectors at right angles (checked). The front is the side `normal` points to
    (default u_axis x v_axis, normalised); a ray meets the plane only from its front unless
    `two_sided`, as a camera in an aisle sees a rack face, never the face behind it through the rack.
    `name` is free text for messages (a rack face id).
    """

    origin: np.ndarray
    u_axis: np.ndarray
    v_axis: np.ndarray
    u_extent_m: float
    v_extent_m: float
    normal: np.ndarray | None = None
    two_sided: bool = False
    name: str = ""

    def __post_init__(self) -> None:
        o = np.asarray(self.origin, dtype=float).reshape(3)
        u = np.asarray(self.u_axis, dtype=float).reshape(3)
        v = np.asarray(self.v_axis, dtype=float).reshape(3)
        for label, a in (("u_axis", u), ("v_axis", v)):
            if abs(float(np.linalg.norm(a)) - 1.0) > 1e-6:
                raise ValueError(f"plane {self.name!r}: {label} must be a unit vector, got {a.tolist()}")
        if abs(float(u @ v)) > 1e-6:
            raise ValueError(f"plane {self.name!r}: u_axis and v_axis must be at right angles (dot {u @ v:.3g})")
        if not (self.u_extent_m > 0 and self.v_extent_m > 0):
            raise ValueError(f"plane {self.name!r}: extents must be positive, got {self.u_extent_m}, {self.v_extent_m}")
        uxv = np.cross(u, v)
        if self.normal is None:
            nrm = uxv
        else:
            nrm = np.asarray(self.normal, dtype=float).reshape(3)
            nrm = nrm / np.linalg.norm(nrm)
            if abs(abs(float(nrm @ uxv)) - 1.0) > 1e-6:
                raise ValueError(f"plane {self.name!r}: normal {nrm.tolist()} is not perpendicular to the plane")
        object.__setattr__(self, "origin", o)
        object.__setattr__(self, "u_axis", u)
        object.__setattr__(self, "v_axis", v)
        object.__setattr__(self, "normal", nrm)

    @property
    def front(self) -> np.ndarray:
        """The unit normal on the visible side."""
        assert self.normal is not None  # set in __post_init__
        return self.normal

    def point(self, a: Any, b: Any) -> np.ndarray:
        """Local-frame point(s) of plane coordinates (broadcast; last axis 3)."""
        aa = np.asarray(a, dtype=float)[..., None]
        bb = np.asarray(b, dtype=float)[..., None]
        return self.origin + aa * self.u_axis + bb * self.v_axis

    def coords(self, enu: Any) -> tuple[np.ndarray, np.ndarray]:
        """(a, b) plane coordinates of points on (or projected onto) the plane."""
        p = np.asarray(enu, dtype=float) - self.origin
        return p @ self.u_axis, p @ self.v_axis


@dataclass(frozen=True, eq=False)
class Planes(Surface):
    """A set of finite planes, and optionally a floor below them: a ray ends on the nearest one it meets from the front.

    `floor_up_m` adds an unbounded level floor at that up (FLOOR in `piece`), which the rays that
    miss every plane, or pass under them, meet.
    """

    planes: Sequence[RectPlane]
    floor_up_m: float | None = None
    frame: LocalFrame | None = None

    @property
    def name(self) -> str:
        floor = "" if self.floor_up_m is None else f" over a floor at up {self.floor_up_m:.2f} m"
        return f"{len(self.planes)} planes{floor}"

    def intersect(self, origin: Any, dirs: Any) -> SurfaceHits:
        o, d = _unit_rays(origin, dirs)
        n = len(d)
        best_t = np.full(n, np.inf)
        best = np.full(n, NO_PIECE, dtype=np.int64)
        uv = np.full((n, 2), np.nan)
        with np.errstate(divide="ignore", invalid="ignore"):
            for i, pl in enumerate(self.planes):
                den = d @ pl.front
                t = ((pl.origin - o) @ pl.front) / den
                facing = np.abs(den) > 1e-12 if pl.two_sided else den < -1e-12
                ok = facing & (t > 1e-9) & (t < best_t)
                if not ok.any():
                    continue
                a, b = pl.coords(o + t[:, None] * d)
                ok &= (a >= 0.0) & (a <= pl.u_extent_m) & (b >= 0.0) & (b <= pl.v_extent_m)
                best_t = np.where(ok, t, best_t)
                best = np.where(ok, i, best)
                uv = np.where(ok[:, None], np.stack([a, b], axis=1), uv)
            if self.floor_up_m is not None:
                tf = (o[2] - self.floor_up_m) / -d[:, 2]
                floor = (d[:, 2] < -1e-12) & (tf > 0) & (tf < best_t)
                best_t = np.where(floor, tf, best_t)
                best = np.where(floor, FLOOR, best)
                uv = np.where(floor[:, None], np.nan, uv)
        status = np.where(best != NO_PIECE, HIT, MISS)
        return _hits(o, d, best_t, status, best, uv, self.name)


__all__ = [
    "FLOOR",
    "GROUND",
    "HIT",
    "MISS",
    "NO_PIECE",
    "OUTSIDE",
    "FlatGround",
    "GroundSurface",
    "HeightField",
    "OutsideSurfaceError",
    "Planes",
    "RectPlane",
    "Surface",
    "SurfaceHits",
]
