"""The canopy's leaves: two overlapping layers of leaf ellipses on jittered lattices, one per row.

A layer tiles each row's ground with cells of the leaf's size (long axis at a per-row angle to the
row) and puts one leaf ellipse in each cell, of random size, position within the cell and
orientation of its surface to the sun. Where a pixel is smaller than a leaf, the leaf's outline is
drawn with an anti-aliasing ramp as wide as the pixel (its area kept exact); where it is larger,
the layer's expected cover and tone are used with the pixel-to-pixel spread a count of leaves in
the footprint has. The two regimes blend smoothly between half and twice the leaf's width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from flight_sim.world.crops import CropParams
from flight_sim.world.noise import F32, NOISE_MAX, U32, byte_u, hash1, hash2, high_u, smoothstep

CELL_GAP = 1.12  # a leaf cell is this much larger than the leaf: the room its position jitters in
SIZE_MIN = 0.72  # leaf size relative to the cell's inscribed leaf: uniform in [SIZE_MIN, 1]
ROW_SALT = np.uint32(0x632BE5AB)
LOBE_DEPTH = 0.12  # lobed leaves (cucurbit, vine): the outline's radius varies by this share
SUNFLECK_SHARE = 0.25  # share of lower-layer leaves lit directly through gaps in the upper layer
LOWER_DIRECT = 0.10  # direct light reaching a lower-layer leaf outside a sunfleck
UPPER_SKY_VIEW = 0.9
LOWER_SKY_VIEW = 0.45
ALPHA_FROM, ALPHA_TO = 0.25, 1.0  # footprint / leaf width over which leaves go from drawn to statistical


@dataclass
class LayerHit:
    """What one leaf layer shows at each point."""

    cover: np.ndarray  # share of the footprint this layer's leaves cover
    tone: np.ndarray  # index of the leaf's tone entry (explicit regime)
    cell: np.ndarray  # uint32 hash of the leaf's cell (its random draws: size, position, tone, infection)
    xl: np.ndarray  # point in the leaf lattice frame, metres along the leaf
    yl: np.ndarray  # metres across the leaf
    salt: np.ndarray  # uint32 per-point lattice salt (row and layer), for the lesion lattice


def _golden(n: int, a: float) -> np.ndarray:
    return np.mod(np.arange(n) * a + 0.5 * a, 1.0)


class LeafLayer:
    """One layer of leaves: geometry per point, and the tone tables for the current sun."""

    def __init__(self, crop: CropParams, layer: int, seed: int) -> None:
        self.crop = crop
        self.layer = layer
        self.seed = (int(seed) * 0x9E3779B1 + 0x7F4A7C15 * (layer + 1)) & 0xFFFFFFFF
        self.cl = F32(crop.leaf_length_m * CELL_GAP)
        self.cw = F32(crop.leaf_width_m * CELL_GAP)
        mean, half = crop.leaf_angle_deg
        # each (row, layer) gets a leaf direction: 256 choices, drawn per row by a hash
        ang = np.radians(mean + half * (2.0 * _golden(256, 0.7548776662) - 1.0) + (90.0 if layer else 0.0) * 0.5)
        self.sin_tab = np.sin(ang).astype(np.float32)
        self.cos_tab = np.cos(ang).astype(np.float32)
        s = SIZE_MIN + (1.0 - SIZE_MIN) * (np.arange(256) + 0.5) / 256.0
        # a leaf covers pi/4 s^2 of its cell's inscribed rectangle
        lobe_gain = (1.0 - LOBE_DEPTH**2) ** -1.5 if crop.lobes else 1.0  # area inside r <= 1 / (1 + d cos n phi)
        # a leaf's own turn in the plane (the same byte as its tone: a leaf's orientation sets its light too)
        self._aspect = crop.leaf_length_m / crop.leaf_width_m
        self._twist = crop.leaf_twist_deg > 0.0
        theta = np.radians(crop.leaf_twist_deg * (2.0 * _golden(256, 0.2836) - 1.0))
        a2 = self._aspect**2
        hy = np.sqrt(a2 * np.sin(theta) ** 2 + np.cos(theta) ** 2)  # the turned leaf's half-height in half-widths
        g = np.minimum(1.0, 1.0 / hy)
        self._cos_t = np.cos(theta).astype(np.float32)
        self._sin_t = np.sin(theta).astype(np.float32)
        self._inv_g = (1.0 / g).astype(np.float32)
        twist_gain = float(np.mean(g**2)) if self._twist else 1.0
        self.mean_cover = float(np.mean(math.pi / 4.0 * s**2) / CELL_GAP**2 * lobe_gain * twist_gain)
        self.leaf_area = float(self.mean_cover * self.cl * self.cw)
        self.leaf_dims = (float(crop.leaf_length_m), float(crop.leaf_width_m))
        mean_incl, half_incl = crop.inclination_deg
        self._incl = np.radians(mean_incl + half_incl * (2 * _golden(256, 0.6180339887) - 1))
        self._azim = 2 * math.pi * _golden(256, 0.5698402910)
        self._albedo = 0.85 + 0.30 * _golden(256, 0.4142135624)
        self._fleck = _golden(256, 0.3247179572) < SUNFLECK_SHARE

    def tone_tables(self, elev_deg: float, sun_az_rel_deg: float) -> tuple[np.ndarray, np.ndarray]:
        """Direct and diffuse light factors of the 256 leaf tones (albedo variation included).

        Direct: the cosine between the leaf's normal and the sun (Lambert), clipped at 0; the lower
        layer sees the sun only through sunflecks. Diffuse: the share of sky the layer sees.
        """
        e = math.radians(elev_deg)
        cos_i = np.cos(self._incl) * math.sin(e) + np.sin(self._incl) * math.cos(e) * np.cos(
            self._azim - math.radians(sun_az_rel_deg))
        direct = np.maximum(cos_i, 0.0) * self._albedo
        if self.layer:
            direct = direct * np.where(self._fleck, 1.0, LOWER_DIRECT)
            diffuse = LOWER_SKY_VIEW * self._albedo
        else:
            diffuse = UPPER_SKY_VIEW * self._albedo
        return direct.astype(np.float32), diffuse.astype(np.float32)

    def hit(self, x: np.ndarray, y: np.ndarray, row: np.ndarray, w: np.ndarray) -> LayerHit:
        """The layer at points (x across the row from its centre, y along the rows; metres), footprint w."""
        rh = hash1(row, self.seed)
        ai = (rh & U32(255)).astype(np.intp)
        sn = np.take(self.sin_tab, ai)
        cs = np.take(self.cos_tab, ai)
        xl = x * sn
        xl += y * cs  # along the leaf
        yl = x * cs
        yl -= y * sn  # across the leaf
        gy = yl * F32(1.0 / self.cw)
        j = np.floor(gy)
        fy = gy - j
        fy -= F32(0.5)
        ji = j.astype(np.int32)
        gx = xl * F32(1.0 / self.cl)
        gx += (ji & 1).astype(np.float32) * F32(0.5)  # brick bond: neighbouring lines offset by half a leaf
        i = np.floor(gx)
        fx = gx - i
        fx -= F32(0.5)
        salt = rh ^ (U32(self.layer + 1) * ROW_SALT)
        h = hash2(i.astype(np.int32), ji, salt)
        tone = (h >> U32(24)).astype(np.intp)
        cover = self._cover(h, tone, fx, fy, w)
        return LayerHit(cover, tone, h, xl, yl, salt)

    def infect_u(self, cell: np.ndarray) -> np.ndarray:
        """The leaf's own uniform draw: it is infected where this is below the incidence."""
        h = cell ^ (cell >> U32(15))  # a multiplicative remix: independent of the cell's other draws
        h *= U32(0x2C1B3C6D)
        h ^= h >> U32(12)
        return high_u(h)

    def _cover(self, h: np.ndarray, tone: np.ndarray, fx: np.ndarray, fy: np.ndarray, w: np.ndarray) -> np.ndarray:
        semi = F32(0.5 * SIZE_MIN / CELL_GAP) + F32(0.5 * (1.0 - SIZE_MIN) / CELL_GAP) * byte_u(h, 0)  # cell units
        room = F32(0.5) - semi  # how far the leaf's centre could move before its outline leaves the cell
        inv = F32(1.0) / semi
        # the centre moves over half the room, so the edge ramp always has the other half to spread in
        jx = (byte_u(h, 1) - F32(0.5)) * room
        jy = (byte_u(h, 2) - F32(0.5)) * room
        side = room - np.maximum(np.abs(jx), np.abs(jy))
        dx = fx - jx
        dy = fy - jy
        if self._twist:
            # each leaf turned by its own angle (in metres, across-leaf units), shrunk by g to stay in its box
            dx *= F32(self._aspect)
            ct, st, ig = np.take(self._cos_t, tone), np.take(self._sin_t, tone), np.take(self._inv_g, tone)
            dx, dy = (dx * ct + dy * st) * ig * F32(1.0 / self._aspect), (dy * ct - dx * st) * ig
            inv_s = inv * ig
        else:
            inv_s = inv
        dx *= inv
        dy *= inv
        rho = np.sqrt(dx * dx + dy * dy)  # 1 on the leaf's outline
        if self.crop.lobes:
            # lobes: cos(n phi) from the unit direction by the Chebyshev recurrence (no arctan per point)
            c = dx / np.maximum(rho, F32(1e-6))
            rho *= F32(1.0) + F32(LOBE_DEPTH) * _cheb(c, self.crop.lobes)
        omega = w * inv_s * F32(1.0 / self.cw)  # footprint over the short semi-axis, the outline's distance scale
        # a ramp reaching past the cell's edge would be cut off there (area lost): cap it at the room left
        np.minimum(omega, F32(2.0) * side * inv, out=omega)
        np.maximum(omega, F32(1e-4), out=omega)
        k = ramp_unit(omega)
        k -= rho
        k /= omega
        k += F32(0.5)
        return np.clip(k, 0.0, 1.0, out=k)

    def alpha(self, w: np.ndarray) -> np.ndarray:
        """0 where leaves are drawn (pixel under a quarter of a leaf's width), 1 where statistical (over one)."""
        return smoothstep(ALPHA_FROM, ALPHA_TO, w * F32(1.0 / self.crop.leaf_width_m))


def ramp_unit(omega: np.ndarray) -> np.ndarray:
    """noise.ramp_radius for a unit radius and ramp width omega (the common case of leaf outlines)."""
    o2 = omega * omega
    near = np.sqrt(np.maximum(F32(1.0) - o2 * F32(1.0 / 12.0), F32(0.0)))
    wide = o2 > F32(3.0)
    if not wide.any():
        return near
    return np.where(wide, np.cbrt(F32(3.0) * omega) - F32(0.5) * omega, near)


def _cheb(c: np.ndarray, n: int) -> np.ndarray:
    t0 = np.ones_like(c)
    t1 = c
    for _ in range(n - 1):
        t0, t1 = t1, F32(2.0) * c * t1 - t0
    return t1


def blend_to_mean(drawn: np.ndarray, mean: float, std: float, feature: tuple[float, float], w: np.ndarray,
                  alpha: np.ndarray, noise: np.ndarray, floor: float = 0.0, ceil: float = math.inf) -> np.ndarray:
    """Between drawn and statistical: alpha 0 keeps the drawn value, 1 the mean plus the footprint's spread.

    The spread of an area average over a w x w footprint holding features of length x width
    (l, b) is about std * sqrt(min(l, w) min(b, w) / w^2): the count of independent features in the
    footprint sets it, and a feature longer than the footprint counts only its part inside. The
    noise (unit variance, |noise| <= NOISE_MAX) is narrowed where it would cross [floor, ceil]:
    clipping it there would shift the mean.
    """
    lf, bf = feature
    spread = np.sqrt(np.minimum(w, F32(lf)) * np.minimum(w, F32(bf)) * F32(math.pi / 4.0)) / w
    np.minimum(spread, F32(min(mean - floor, ceil - mean) / NOISE_MAX / max(std, 1e-9)), out=spread)
    spread *= F32(std)
    spread *= noise
    spread += F32(mean)
    spread -= drawn
    spread *= alpha
    spread += drawn
    return spread
