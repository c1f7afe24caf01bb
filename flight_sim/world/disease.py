"""Disease as a property of leaves: incidence and severity from the patches, and lesions on a leaf.

A patch sets, at each point, the incidence (share of leaves infected) and the severity (share of an
infected leaf's area under lesions and their halo, or under mildew), both its stage's centre values
times the profile (1 - (r/R)^2)^2: 1 at the centre, 0 with zero slope at the radius R (a focus
whose spread slows at its margin). Which leaves are infected is the leaf's own draw against the
incidence; on an infected leaf, lesions sit on a jittered lattice in the leaf's frame, present with
the probability that makes their expected area the severity.

Rust: a pustule (core 0.5-2 mm across; 0.5-1.2 mm on cereals) with a chlorotic halo; on broad leaves
pustules gather in clusters (a cluster cell of 3 x 3 lesion cells is dense or sparse), on cereals
they line up along the veins (lattice lines dense or sparse: stripes). Powdery mildew: colonies
5-20 mm across. Where the severity asks for more than the lattice can hold, the rest is a
coalesced coating spread over the leaf's uncovered area, so the expected share stays exact.
Pixels larger than the lesions get the expected share plus the spread of a lesion count.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from flight_sim.world.config import STAGES
from flight_sim.world.noise import F32, NOISE_MAX, U32, byte_u, hash1, hash2, high_u, ramp_radius, smoothstep
from payload.bundle import CLASSES

RUST = CLASSES.index("rust")
MILDEW = CLASSES.index("powdery_mildew")

# material order of the symptom shares (columns): rust core orange, rust core brown, halo, mildew
N_SYMPTOMS = 4


@dataclass(frozen=True)
class LesionKind:
    """One lesion lattice: cell size, lesion radii, halo, and how lesions group."""

    cell_along_m: float
    cell_across_m: float
    core_r_m: tuple[float, float]  # uniform range of the core (pustule or colony) radius
    halo_ratio: float  # halo radius / core radius (1 = no halo)
    group: str  # "clusters", "stripes" or "none"
    dense_share: float  # share of groups that are dense
    dense_gain: float  # lesion density in a dense group relative to the mean
    soft: float = 0.0  # edge softness: the outline's ramp is at least this share of the radius (diffuse margins)

    @property
    def sparse_gain(self) -> float:
        return (1.0 - self.dense_share * self.dense_gain) / (1.0 - self.dense_share)

    @property
    def group_size_m(self) -> float:
        return 3.0 * self.cell_along_m if self.group == "clusters" else self.cell_across_m


RUST_BROAD = LesionKind(5.0e-3, 5.0e-3, (0.25e-3, 1.0e-3), 1.35, "clusters", 0.3, 2.5)
RUST_CEREAL = LesionKind(4.0e-3, 3.0e-3, (0.25e-3, 0.6e-3), 1.3, "stripes", 0.4, 2.2)
MILDEW_COLONY = LesionKind(30e-3, 30e-3, (2.5e-3, 10e-3), 1.0, "none", 0.0, 1.0, soft=0.6)


class Lesions:
    """A lesion lattice's geometry and its exact expected areas (over the 256 radius steps a hash byte gives)."""

    def __init__(self, kind: LesionKind, disease: int, seed: int) -> None:
        self.kind = kind
        self.disease = disease
        self.seed = int(seed) & 0xFFFFFFFF
        lo, hi = kind.core_r_m
        r = lo + (hi - lo) * (np.arange(256) + 0.5) / 256.0
        self.area_mean = float(np.mean(math.pi * (r * kind.halo_ratio) ** 2))  # lesion incl. halo
        self.core_share = float(np.mean(r**2) / np.mean((r * kind.halo_ratio) ** 2))
        self.cell_area = kind.cell_along_m * kind.cell_across_m
        self.size_m = 2.0 * float(np.sqrt(np.mean((r * kind.halo_ratio) ** 2)))

    def _group_gain(self, i: np.ndarray, j: np.ndarray, salt: np.ndarray,
                    w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each lesion cell's density relative to the mean (its group dense or sparse), and gamma.

        gamma fades the grouping out (density 1) where footprints are beyond the group's size.
        """
        k = self.kind
        gamma = smoothstep(0.5 * k.group_size_m, 2.0 * k.group_size_m, w)
        if k.group == "none":
            return np.ones(i.shape, np.float32), gamma
        if k.group == "clusters":
            g = hash2(np.floor_divide(i, 3), np.floor_divide(j, 3), salt ^ U32(0xA511E9B3))
        else:
            g = hash1(j, self.seed ^ 0x2545F491) ^ salt
        dense = high_u(g) < F32(k.dense_share)
        m = np.where(dense, F32(k.dense_gain), F32(k.sparse_gain))
        return m + gamma * (F32(1.0) - m), gamma

    def _held_mean(self, sev: np.ndarray, gamma: np.ndarray, cap: np.float32) -> np.ndarray:
        """The lattice's expected share over dense and sparse groups (a dense group can saturate)."""
        k = self.kind
        if k.group == "none":
            return np.minimum(sev, cap)
        out = np.zeros_like(sev)
        for share, gain in ((k.dense_share, k.dense_gain), (1.0 - k.dense_share, k.sparse_gain)):
            m = F32(gain) + gamma * F32(1.0 - gain)
            out += F32(share) * np.minimum(sev * m, cap)
        return out

    def shares(self, frame: tuple[np.ndarray, np.ndarray, np.ndarray] | None, sev: np.ndarray, w: np.ndarray,
               noise: np.ndarray) -> np.ndarray:
        """(N, 4) shares of an infected leaf's area under each symptom material.

        frame: the points in the leaf's frame (metres along, across, the lattice salt), or None where
        every footprint is far beyond the lesions and their groups (statistics only).
        """
        beta = smoothstep(0.5 * self.size_m, 2.0 * self.size_m, w)
        limit = 2.0 * max(self.size_m, self.kind.group_size_m)
        if frame is None or float(w.min()) >= limit:
            return self._split_mean(self._statistical(sev, w, noise))
        xl, yl, salt = frame
        k = self.kind
        gx = xl * F32(1.0 / k.cell_along_m)
        gy = yl * F32(1.0 / k.cell_across_m)
        i = np.floor(gx)
        j = np.floor(gy)
        fx = gx - i - F32(0.5)
        fy = gy - j - F32(0.5)
        ii = i.astype(np.int32)
        jj = j.astype(np.int32)
        m, gamma = self._group_gain(ii, jj, salt, w)
        cap = F32(self.area_mean / self.cell_area)
        p = np.minimum(sev * m / cap, F32(1.0))
        # what the lattice cannot hold (on average over groups) coalesces into a coating over the
        # leaf's uncovered area, so the expected share is the severity
        held = self._held_mean(sev, gamma, cap)
        coat = np.clip((sev - held) / (F32(1.0) - held), 0.0, 1.0)
        sev_loc = p * cap
        sev_loc += (F32(1.0) - sev_loc) * coat
        h = hash2(ii, jj, salt ^ U32(self.seed))
        present = high_u(hash1(h.view(np.int32), self.seed ^ 0x68E31DA4)) < p
        core, halo = self._discs(h, fx, fy, w)
        core *= present
        halo *= present
        drawn_total = core + halo
        drawn_total += (F32(1.0) - drawn_total) * coat
        total = drawn_total + beta * (self._statistical(sev_loc, w, noise) - drawn_total)
        return self._split(h, core, halo, coat, total, beta)

    def _statistical(self, sev: np.ndarray, w: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """The footprint's share: the severity plus the spread of a lesion count, sqrt(sev a) / w."""
        spread = np.sqrt(sev * F32(self.area_mean)) / w
        np.minimum(spread, sev / NOISE_MAX, out=spread)  # never below 0: an unbiased mean
        return np.clip(sev + spread * noise, 0.0, 1.0)

    def _split_mean(self, total: np.ndarray) -> np.ndarray:
        out = np.zeros((total.shape[0], N_SYMPTOMS), np.float32)
        if self.disease == MILDEW:
            out[:, 3] = total
            return out
        core = total * F32(self.core_share)
        out[:, 0] = core * F32(0.5)
        out[:, 1] = out[:, 0]
        out[:, 2] = total - core
        return out

    def _discs(self, h: np.ndarray, fx: np.ndarray, fy: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = self.kind
        lo, hi = k.core_r_m
        rc = F32(lo) + F32(hi - lo) * byte_u(h, 0)
        rh = rc * F32(k.halo_ratio)
        room_x = np.maximum(F32(0.5 * k.cell_along_m) - rh, 0.0)
        room_y = np.maximum(F32(0.5 * k.cell_across_m) - rh, 0.0)
        # the centre moves over half the room, so the edge ramp always has the other half to spread in
        jx = (byte_u(h, 1) - F32(0.5)) * room_x
        jy = (byte_u(h, 2) - F32(0.5)) * room_y
        dx = fx * F32(k.cell_along_m) - jx
        dy = fy * F32(k.cell_across_m) - jy
        rho = np.sqrt(dx * dx + dy * dy)
        # a ramp wider than the room left to the cell's edge would be cut off there (area lost): cap it
        side = np.minimum(room_x - np.abs(jx), room_y - np.abs(jy))
        wr = np.maximum(w, rc * F32(k.soft)) if k.soft else w
        wr = np.maximum(np.minimum(wr, F32(2.0) * side), F32(1e-5))
        inv_w = F32(1.0) / wr
        core = np.clip(F32(0.5) + (ramp_radius(rc, wr) - rho) * inv_w, 0.0, 1.0)
        if k.halo_ratio <= 1.0:
            return core, np.zeros_like(core)
        outer = np.clip(F32(0.5) + (ramp_radius(rh, wr) - rho) * inv_w, 0.0, 1.0)
        return core, np.maximum(outer - core, 0.0)

    def _split(self, h: np.ndarray, core: np.ndarray, halo: np.ndarray, coat: np.ndarray, total: np.ndarray,
               beta: np.ndarray) -> np.ndarray:
        out = np.zeros((core.shape[0], N_SYMPTOMS), np.float32)
        if self.disease == MILDEW:
            out[:, 3] = total
            return out
        cs = F32(self.core_share)
        free = (F32(1.0) - core - halo) * coat  # the coating's share, split like the lesions' areas
        core_all = core + free * cs
        # drawn: each pustule's own colour (orange to red-brown); statistical: the mean colour
        t = byte_u(h, 3)
        core_tot = core_all + beta * (total * cs - core_all)
        t_eff = t + beta * (F32(0.5) - t)
        out[:, 0] = core_tot * (F32(1.0) - t_eff)
        out[:, 1] = core_tot * t_eff
        out[:, 2] = np.maximum(total - core_tot, 0.0)
        return out


def lesion_kinds(rust_form: str) -> dict[int, LesionKind]:
    return {RUST: RUST_CEREAL if rust_form == "stripes" else RUST_BROAD, MILDEW: MILDEW_COLONY}


@dataclass(frozen=True)
class PatchArrays:
    """The patches as arrays: class index, centre, radius, centre incidence and severity."""

    cls: np.ndarray
    east: np.ndarray
    north: np.ndarray
    radius: np.ndarray
    incidence: np.ndarray
    severity: np.ndarray

    @classmethod
    def from_patches(cls, patches: Sequence[Any]) -> PatchArrays:
        rows = []
        for p in patches:
            if p.cls not in ("rust", "powdery_mildew"):
                raise ValueError(f"patch class {p.cls!r}: the world draws rust and powdery_mildew")
            stage = getattr(p, "stage", "moderate")
            inc, sev = STAGES[stage]
            rows.append((CLASSES.index(p.cls), float(p.east_m), float(p.north_m), float(p.radius_m), inc, sev))
        a = np.array(rows, dtype=np.float64).reshape(-1, 6)
        return cls(a[:, 0].astype(np.uint8), a[:, 1], a[:, 2], np.maximum(a[:, 3], 1e-6), a[:, 4], a[:, 5])

    def at(self, east: np.ndarray, north: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(class index, incidence, severity) at points: the patch with the highest incidence there wins."""
        n = east.shape[0]
        best_inc = np.zeros(n, np.float32)
        best_sev = np.zeros(n, np.float32)
        best_cls = np.zeros(n, np.uint8)
        if n == 0 or self.cls.shape[0] == 0:
            return best_cls, best_inc, best_sev
        # only the patches whose disk reaches the points' bounding box (a frame sees few of a field's patches)
        e0, e1, n0, n1 = float(east.min()), float(east.max()), float(north.min()), float(north.max())
        near = ((self.east + self.radius >= e0) & (self.east - self.radius <= e1)
                & (self.north + self.radius >= n0) & (self.north - self.radius <= n1))
        for k in np.flatnonzero(near):
            r = self.radius[k]
            de = east - F32(self.east[k])
            dn = north - F32(self.north[k])
            q = (de * de + dn * dn) * F32(1.0 / (r * r))
            inside = q < 1.0
            if not inside.any():
                continue
            f = np.square(F32(1.0) - np.minimum(q, F32(1.0)))
            inc = f * F32(self.incidence[k])
            win = inside & (inc >= best_inc)
            best_inc = np.where(win, inc, best_inc)
            best_sev = np.where(win, f * F32(self.severity[k]), best_sev)
            best_cls = np.where(win, self.cls[k], best_cls)
        return best_cls, best_inc, best_sev
