"""The world: a crop field at its physical scale, shaded per point over each pixel's footprint.

`World.shade` takes ground points and the side of the ground area each pixel integrates, and
returns the area-averaged radiance there (plus the leaf and symptom shares and the true class).
Nothing is rasterised ahead: rows, leaves, lesions, soil and cloud shadows are procedural
functions of position (flight_sim/world/noise.py), so a 10 ha field at millimetre detail costs only
the points a frame asks for.

How a point is shaded (docs/WORLD.md has the numbers and their sources):
- rows: the canopy spans a band of each row (its width varying plant to plant); the share of the
  footprint inside bands, and inside the bands' shadows on the soil, is integrated exactly;
- inside the band, two leaf layers (flight_sim/world/canopy.py) cover the ground; what neither
  covers is the dark deep canopy;
- disease (flight_sim/world/disease.py) turns a share of an infected leaf's area into lesion,
  halo or mildew colours;
- light (flight_sim/world/light.py): each surface's direct and diffuse irradiance, coloured by
  the sun and the sky; cloud shadows cut the direct part.
Materials mix linearly (radiance), then the result is encoded to 0..255 (gamma 2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from flight_sim.world.canopy import LayerHit, LeafLayer, blend_to_mean
from flight_sim.world.config import CropSection, LightSection
from flight_sim.world.crops import GAP_REFLECTANCE, HEADLAND, crop_params, soil_reflectance
from flight_sim.world.disease import MILDEW, N_SYMPTOMS, RUST, Lesions, PatchArrays, lesion_kinds
from flight_sim.world.light import CLOUD_DIRECT, Clouds, Sun, apply_haze, encode, sun_at
from flight_sim.world.noise import F32, NOISE_MAX, GroundNoise, band_fraction, smoothstep, value_noise1
from flight_sim.world.noise import value_noise2 as vnoise2

__all__ = ["LABEL_OUTSIDE", "Shaded", "World", "apply_haze"]

LABEL_OUTSIDE = 255
MAX_ORTHO_PX = 40_000_000
CHUNK = 32_768  # points shaded at a time (their temporaries fit the CPU's cache)
ROW_IRREGULARITY = 0.2  # the canopy band's half-width varies by this share along the row
ROW_SHADOW_DIRECT = 0.12  # direct light through the canopy onto the soil in its shadow (porous canopy)
GAP_SKY = 0.35  # light reaching the deep canopy between leaves (sky, and light scattered by the leaves)
SOIL_SKY = 0.85  # sky seen from the soil between rows
SOIL_CLOD_M = 0.025  # scale of the soil's clod texture
SOIL_CLOD_AMP = 0.35
SOIL_FIELD_M = 6.0  # scale of the soil's moisture variation across the field
SOIL_FIELD_AMP = 0.12

# linear reflectances of the symptom materials (colours after docs/WORLD.md's descriptions)
RUST_ORANGE = (0.50, 0.20, 0.035)
RUST_BROWN = (0.27, 0.11, 0.030)
CHLOROTIC_HALO = (0.24, 0.25, 0.050)
MILDEW_WHITE = (0.46, 0.48, 0.45)

# base materials: the W matrix's columns are (direct, diffuse) per material
LEAF, GAP, SOIL, ROAD = range(4)


def _mix_materials(weights: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """(N, 3) = weights.T @ rows, as explicit multiply-adds (a BLAS call of this shape is slower and threads)."""
    out = np.empty((weights.shape[1], 3), np.float32)
    for c in range(3):
        acc = weights[0] * F32(rows[0, c])
        for k in range(1, weights.shape[0]):
            r = F32(rows[k, c])
            if r != 0.0:
                acc += weights[k] * r
        out[:, c] = acc
    return out


@dataclass(frozen=True)
class Shaded:
    """The world over N pixel footprints (see World.shade)."""

    rgb: np.ndarray  # (N, 3) float32, 0..255 (gamma 2): radiance at nominal exposure, daylight white balance
    leaf: np.ndarray  # (N,) float32 share of the footprint that is leaf
    diseased: np.ndarray  # (N,) float32 share of the footprint under symptoms (lesions + halo, or mildew)
    labels: np.ndarray  # (N,) uint8 class index into payload.bundle.CLASSES; LABEL_OUTSIDE outside the field


@dataclass
class _Canopy:
    fc: np.ndarray  # canopy band share of the footprint
    fs: np.ndarray  # canopy band + its shadow on the soil
    cover_a: np.ndarray
    cover_b: np.ndarray
    alpha: np.ndarray  # leaf regime (0 drawn, 1 statistical)
    dir_a: np.ndarray
    dif_a: np.ndarray
    dir_b: np.ndarray
    dif_b: np.ndarray
    hits: tuple[LayerHit, LayerHit] | None  # None: every point beyond the leaf size (statistical only)


class World:
    """A crop field with disease patches under a sky; every call synthesises only the points it is asked about."""

    def __init__(self, crop: CropSection, light: LightSection, patches: Sequence[Any], width_m: float,
                 height_m: float, seed: int) -> None:
        self.crop = crop
        self.light = light
        self.params = crop_params(crop)
        self.width_m = float(width_m)
        self.height_m = float(height_m)
        self.seed = int(seed) & 0x7FFFFFFF
        self.patches = PatchArrays.from_patches(patches)
        az = math.radians(crop.row_azimuth_deg)
        self._ca, self._sa = F32(math.cos(az)), F32(math.sin(az))
        self.layers = (LeafLayer(self.params, 0, self.seed), LeafLayer(self.params, 1, self.seed))
        kinds = lesion_kinds(self.params.rust_form)
        self.lesions = {c: Lesions(k, c, self.seed * 31 + c) for c, k in kinds.items()}
        self.clouds = Clouds(light, self.seed ^ 0x3C6EF372)
        soil = soil_reflectance(crop.soil_moisture)
        self._refl = np.array([self.params.reflectance, GAP_REFLECTANCE, soil, HEADLAND], np.float32)
        self._sym_refl = np.array([RUST_ORANGE, RUST_BROWN, CHLOROTIC_HALO, MILDEW_WHITE], np.float32)

    # ---------------------------------------------------------------- light
    def radiance_scale(self, t_s: float) -> float:
        """Scene brightness relative to the nominal day (clear, sun 45 deg): for a camera's auto exposure."""
        sun = sun_at(self.light, t_s)
        direct = sun.direct_horizontal * (1.0 - self.clouds.mean_shadow() * (1.0 - CLOUD_DIRECT))
        return float(direct + sun.diffuse)

    # ---------------------------------------------------------------- shading
    def shade(self, east_m: np.ndarray, north_m: np.ndarray, footprint_m: np.ndarray, t_s: float = 0.0) -> Shaded:
        """Area-averaged scene over square footprints of side `footprint_m` centred at (east_m, north_m).

        east/north: metres from the field's south-west corner (outside the rectangle: bare headland,
        label LABEL_OUTSIDE; NaN, a ray that meets no ground: headland too); footprint_m: the side of
        the ground area one pixel integrates (the area filter's width, at least 0.1 mm; a scalar or
        one per point); t_s: flight time (the sun and clouds drift).
        """
        e = np.ascontiguousarray(east_m, dtype=np.float32).ravel()
        n = np.ascontiguousarray(north_m, dtype=np.float32).ravel()
        w = np.broadcast_to(np.asarray(footprint_m, np.float32), e.shape).ravel()
        bad = ~(np.isfinite(e) & np.isfinite(n) & np.isfinite(w))
        if bad.any():
            # a ray that meets no ground (sky): shaded as headland far outside the field, label LABEL_OUTSIDE
            e = np.where(bad, F32(-1000.0), e)
            n = np.where(bad, F32(-1000.0), n)
            w = np.where(bad, F32(1.0), w)
        w = np.maximum(w, F32(1e-4))
        if e.size == 0:
            z = np.zeros(0, np.float32)
            return Shaded(np.zeros((0, 3), np.float32), z, z.copy(), np.zeros(0, np.uint8))
        if e.size <= CHUNK:
            return self._shade(e, n, w, t_s)
        # in cache-sized chunks: a frame's dozens of temporaries then stay in the CPU's cache
        parts = [self._shade(e[i:i + CHUNK], n[i:i + CHUNK], w[i:i + CHUNK], t_s) for i in range(0, e.size, CHUNK)]
        return Shaded(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("rgb", "leaf", "diseased", "labels")))

    def labels(self, east_m: np.ndarray, north_m: np.ndarray) -> np.ndarray:
        """The true class index at each point (as `shade` gives it), without shading: truth costs no render.

        Labels depend on where a point is (the field, the patches' infected regions), never on light or
        footprint, so a label frame needs only the ground points.
        """
        e = np.ascontiguousarray(east_m, dtype=np.float32).ravel()
        n = np.ascontiguousarray(north_m, dtype=np.float32).ravel()
        bad = ~(np.isfinite(e) & np.isfinite(n))
        e, n = np.where(bad, F32(-1000.0), e), np.where(bad, F32(-1000.0), n)
        inside = (e >= 0) & (e <= F32(self.width_m)) & (n >= 0) & (n <= F32(self.height_m))
        cls, inc, _ = self.patches.at(e, n)
        return self._labels(cls, inc, inside)

    @staticmethod
    def _labels(cls: np.ndarray, inc: np.ndarray, inside: np.ndarray) -> np.ndarray:
        labels = np.where(inc > 0, cls, np.uint8(0)).astype(np.uint8)
        labels[~inside] = LABEL_OUTSIDE
        return labels

    def _shade(self, e: np.ndarray, n: np.ndarray, w: np.ndarray, t_s: float) -> Shaded:
        sun = sun_at(self.light, t_s)
        inside = (e >= 0) & (e <= F32(self.width_m)) & (n >= 0) & (n <= F32(self.height_m))
        u = e * self._ca - n * self._sa  # across the rows
        v = e * self._sa + n * self._ca  # along the rows
        pn = GroundNoise(e, n, w, self.seed)
        can = self._canopy(u, v, w, inside, sun.elev_deg, sun.azim_deg, pn)
        tex = self._soil_texture(e, n, u, v, w, pn)
        direct = F32(sun.direct_normal)
        shadow = self.clouds.shadow(e, n, t_s)
        if shadow is not None:
            direct = F32(sun.direct_normal) - shadow * F32(sun.direct_normal * (1.0 - CLOUD_DIRECT))
        wmat, leaf = self._weights(can, tex, inside, direct, sun)
        rmat = self._materials(self._refl, sun.sun_rgb, sun.sky_rgb)
        lin = _mix_materials(wmat, rmat)
        cls, inc, sev = self.patches.at(e, n)
        labels = self._labels(cls, inc, inside)
        diseased = np.zeros_like(e)
        sub = np.flatnonzero((inc > 0) & inside)
        if sub.size:
            sym = self._symptoms(sub, w, cls, inc, sev, pn, can)
            full = sub.size == e.size
            idx = slice(None) if full else sub
            diseased[idx] = leaf[idx] * sym.sum(axis=1)
            dr = self._materials(self._sym_refl, sun.sun_rgb, sun.sky_rgb)
            # symptoms replace healthy leaf surface: their weights are the leaf's, times their shares
            wsym = np.empty((2 * N_SYMPTOMS, sub.size), np.float32)
            symt = np.ascontiguousarray(sym.T)
            np.multiply(symt, wmat[0, idx], out=wsym[0::2])
            np.multiply(symt, wmat[1, idx], out=wsym[1::2])
            lin[idx] += _mix_materials(wsym, dr - np.tile(rmat[0:2], (N_SYMPTOMS, 1)))
        return Shaded(encode(lin), leaf, diseased, labels)

    @staticmethod
    def _weights(can: _Canopy, tex: np.ndarray, inside: np.ndarray, direct: np.ndarray | np.float32,
                 sun: Sun) -> tuple[np.ndarray, np.ndarray]:
        """(8, N) irradiance-weighted area shares: (direct, diffuse) for leaf, deep canopy, soil, headland."""
        n = tex.shape[0]
        wm = np.empty((8, n), np.float32)
        fc = can.fc
        share_b = F32(1.0) - can.cover_a
        share_b *= can.cover_b
        leaf = can.cover_a + share_b
        leaf *= fc
        np.multiply(can.cover_a, can.dir_a, out=wm[0])
        wm[0] += share_b * can.dir_b
        wm[0] *= fc
        wm[0] *= direct
        np.multiply(can.cover_a, can.dif_a, out=wm[1])
        wm[1] += share_b * can.dif_b
        wm[1] *= fc * F32(sun.diffuse)
        wm[2] = 0.0
        np.subtract(fc, leaf, out=wm[3])
        wm[3] *= F32(GAP_SKY * sun.diffuse)
        out = inside.astype(np.float32)
        sun_tex = tex * direct
        sun_tex *= F32(math.sin(math.radians(sun.elev_deg)))
        # sunlit soil, plus the soil in the rows' shadow lit through the porous canopy
        np.subtract(out, can.fs, out=wm[4])
        wm[4] += (can.fs - fc) * F32(ROW_SHADOW_DIRECT)
        wm[4] *= sun_tex
        np.subtract(out, fc, out=wm[5])
        wm[5] *= tex * F32(SOIL_SKY * sun.diffuse)
        road = F32(1.0) - out
        np.multiply(road, sun_tex, out=wm[6])
        np.multiply(road, tex * F32(sun.diffuse), out=wm[7])
        return wm, leaf

    @staticmethod
    def _materials(refl: np.ndarray, sun_rgb: np.ndarray, sky_rgb: np.ndarray) -> np.ndarray:
        """Rows (direct, diffuse) per material: reflectance times the light's colour."""
        out = np.empty((2 * refl.shape[0], 3), np.float32)
        out[0::2] = refl * sun_rgb.astype(np.float32)
        out[1::2] = refl * sky_rgb.astype(np.float32)
        return out

    def _canopy(self, u: np.ndarray, v: np.ndarray, w: np.ndarray, inside: np.ndarray, elev: float, sun_az: float,
                pn: GroundNoise) -> _Canopy:
        p = self.params
        s = p.row_spacing_m
        row_f = np.floor(u * F32(1.0 / s) + F32(0.5))
        fc, fs = self._row_bands(u, v, w, row_f, inside, elev, sun_az)
        la, lb = self.layers
        alpha = la.alpha(w)
        mc = la.mean_cover
        sd = math.sqrt(mc * (1 - mc))
        n0, n1, n2 = pn.channel(0), pn.channel(1), pn.channel(2)
        if float(alpha.min()) >= 1.0:  # every pixel holds many leaves: their statistics only
            zero = np.zeros_like(w)
            cover_a = np.clip(blend_to_mean(zero, mc, sd, la.leaf_dims, w, alpha, n0, 0.0, 1.0), 0.0, 1.0)
            cover_b = np.clip(blend_to_mean(zero, mc, sd, la.leaf_dims, w, alpha, n1, 0.0, 1.0), 0.0, 1.0)
            dir_a, dif_a = self._tones(la, None, elev, sun_az, w, alpha, n2)
            dir_b, dif_b = self._tones(lb, None, elev, sun_az, w, alpha, n2)
            return _Canopy(fc, fs, cover_a, cover_b, alpha, dir_a, dif_a, dir_b, dif_b, None)
        x = u - row_f * F32(s)
        row = row_f.astype(np.int32)
        ha = la.hit(x, v, row, w)
        hb = lb.hit(x, v, row, w)
        cover_a = np.clip(blend_to_mean(ha.cover, mc, sd, la.leaf_dims, w, alpha, n0, 0.0, 1.0), 0.0, 1.0)
        cover_b = np.clip(blend_to_mean(hb.cover, mc, sd, la.leaf_dims, w, alpha, n1, 0.0, 1.0), 0.0, 1.0)
        dir_a, dif_a = self._tones(la, ha.tone, elev, sun_az, w, alpha, n2)
        dir_b, dif_b = self._tones(lb, hb.tone, elev, sun_az, w, alpha, n2)
        return _Canopy(fc, fs, cover_a, cover_b, alpha, dir_a, dif_a, dir_b, dif_b, (ha, hb))

    def _row_bands(self, u: np.ndarray, v: np.ndarray, w: np.ndarray, row_f: np.ndarray, inside: np.ndarray,
                   elev: float, sun_az: float) -> tuple[np.ndarray, np.ndarray]:
        """Shares of the footprint inside the canopy bands, and inside the bands plus their shadow on the soil."""
        p = self.params
        s = p.row_spacing_m
        y = v * F32(1.0 / p.irregularity_m)
        y += F32(0.37) * row_f  # each row its own plants
        half = value_noise1(y, self.seed ^ 0x1B873593)
        half *= F32(p.closure * s * ROW_IRREGULARITY)
        half += F32(0.5 * p.closure * s * (1.0 - ROW_IRREGULARITY))
        np.minimum(half, F32(0.5 * s), out=half)
        fc = band_fraction(u, w, s, half)
        fc *= inside
        # the band's shadow on the soil: the canopy box swept away from the sun by height / tan(elevation)
        d = -p.height_m / math.tan(math.radians(elev)) * math.sin(math.radians(sun_az - self.crop.row_azimuth_deg))
        half += F32(abs(d) / 2)
        fs = band_fraction(u, w, s, half, F32(d / 2))
        fs *= inside
        np.maximum(fs, fc, out=fs)
        return fc, fs

    @staticmethod
    def _tones(layer: LeafLayer, tone: np.ndarray | None, elev: float, sun_az: float, w: np.ndarray,
               alpha: np.ndarray, noise: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Direct and diffuse light factors of each point's leaf (drawn: its own tone; beyond: mean and spread)."""
        dt, st = layer.tone_tables(elev, sun_az)
        if tone is None:
            d = np.zeros_like(w)
            s = np.zeros_like(w)
        else:
            d = np.take(dt, tone)
            s = np.take(st, tone)
            if not alpha.any():
                return d, s
        d = blend_to_mean(d, float(dt.mean()), float(dt.std()), layer.leaf_dims, w, alpha, noise)
        s = blend_to_mean(s, float(st.mean()), float(st.std()), layer.leaf_dims, w, alpha, noise)
        return d, s

    def _soil_texture(self, e: np.ndarray, n: np.ndarray, u: np.ndarray, v: np.ndarray, w: np.ndarray,
                      pn: GroundNoise) -> np.ndarray:
        """Soil brightness: clods (drawn, or their mean and spread beyond their size) and field-scale moisture."""
        big = F32(1.0 - SOIL_FIELD_AMP) + F32(2.0 * SOIL_FIELD_AMP) * vnoise2(
            e * F32(1.0 / SOIL_FIELD_M), n * F32(1.0 / SOIL_FIELD_M), self.seed ^ 0x27D4EB2F)
        a = smoothstep(0.5 * SOIL_CLOD_M, 2.0 * SOIL_CLOD_M, w)
        sd = SOIL_CLOD_AMP * 2.0 * 0.2  # value noise's std is about 0.2 of its range
        if float(a.min()) >= 1.0:
            clod = blend_to_mean(np.zeros_like(w), 1.0, sd, (SOIL_CLOD_M, SOIL_CLOD_M), w, a, pn.channel(3))
        else:
            c = vnoise2(u * F32(1.0 / SOIL_CLOD_M), v * F32(1.0 / SOIL_CLOD_M), self.seed ^ 0x165667B1)
            drawn = F32(1.0 - SOIL_CLOD_AMP) + F32(2.0 * SOIL_CLOD_AMP) * c
            clod = blend_to_mean(drawn, 1.0, sd, (SOIL_CLOD_M, SOIL_CLOD_M), w, a, pn.channel(3))
        return big * clod

    def _symptoms(self, sub: np.ndarray, w: np.ndarray, cls: np.ndarray, inc: np.ndarray, sev: np.ndarray,
                  pn: GroundNoise, can: _Canopy) -> np.ndarray:
        """(len(sub), 4) symptom shares of the leaf area at the diseased points `sub`.

        Drawn leaves: the leaf covering most of the point (upper or lower layer) is infected or not by
        its own draw, and its lesions are drawn in its frame. Beyond a leaf's size: the infected share
        of the footprint's leaves, with a binomial spread.
        """
        full = sub.size == w.size

        def pick(a: np.ndarray) -> np.ndarray:
            return a if full else a[sub]

        ws, inc_s, sev_s, alpha = pick(w), pick(inc), pick(sev), pick(can.alpha)
        pn2 = pn if full else pn.take(sub)
        la = self.layers[0]
        lf, bf = la.leaf_dims
        area = np.minimum(ws, F32(lf)) * np.minimum(ws, F32(bf)) * F32(math.pi / 4.0)
        spread = np.sqrt(inc_s * (F32(1.0) - inc_s) * area) / ws
        # narrowed where it would cross 0 or 1 (clipping would shift the mean)
        np.minimum(spread, np.minimum(inc_s, F32(1.0) - inc_s) / NOISE_MAX, out=spread)
        stat = np.clip(inc_s + spread * pn2.channel(4), 0.0, 1.0)
        frame = None
        if can.hits is None:
            f_inf = stat
        else:
            ha, hb = can.hits
            ca, cb = pick(ha.cover), pick(hb.cover)
            dom_a = ca >= cb * (F32(1.0) - ca)
            cell = np.where(dom_a, pick(ha.cell), pick(hb.cell))
            drawn = (la.infect_u(cell) < inc_s).astype(np.float32)
            f_inf = drawn + alpha * (stat - drawn)
            frame = (np.where(dom_a, pick(ha.xl), pick(hb.xl)), np.where(dom_a, pick(ha.yl), pick(hb.yl)),
                     np.where(dom_a, pick(ha.salt), pick(hb.salt)))
        out = np.zeros((sub.size, N_SYMPTOMS), np.float32)
        lesion_noise = pn2.channel(5)
        cls_s = pick(cls)
        live = f_inf > 0  # lesions only on the leaves that carry them
        for c in (RUST, MILDEW):
            on = live & (cls_s == c)
            if on.all():
                out[:] = self.lesions[c].shares(frame, sev_s, ws, lesion_noise)
                continue
            m = np.flatnonzero(on)
            if m.size:
                fm = None if frame is None else (frame[0][m], frame[1][m], frame[2][m])
                out[m] = self.lesions[c].shares(fm, sev_s[m], ws[m], lesion_noise[m])
        out *= f_inf[:, None]
        return out

    # ---------------------------------------------------------------- whole field
    def orthophoto(self, m_per_px: float, t_s: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """(rgb uint8 (H, W, 3), labels uint8 (H, W)) of the field seen from straight above; row 0 = north edge."""
        h = max(1, int(round(self.height_m / m_per_px)))
        wd = max(1, int(round(self.width_m / m_per_px)))
        if h * wd > MAX_ORTHO_PX:
            raise ValueError(f"orthophoto of {wd} x {h} px exceeds {MAX_ORTHO_PX} px: choose a coarser m_per_px")
        rgb = np.empty((h, wd, 3), np.uint8)
        labels = np.empty((h, wd), np.uint8)
        east = ((np.arange(wd) + 0.5) * m_per_px).astype(np.float32)
        chunk = max(1, 524_288 // wd)
        for r0 in range(0, h, chunk):
            r1 = min(h, r0 + chunk)
            north = (self.height_m - (np.arange(r0, r1) + 0.5) * m_per_px).astype(np.float32)
            ee, nn = np.meshgrid(east, north)
            s = self.shade(ee.ravel(), nn.ravel(), np.full(ee.size, m_per_px, np.float32), t_s)
            rgb[r0:r1] = np.clip(s.rgb + 0.5, 0, 255).astype(np.uint8).reshape(r1 - r0, wd, 3)
            labels[r0:r1] = s.labels.reshape(r1 - r0, wd)
        return rgb, labels
