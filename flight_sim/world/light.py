"""Light: the sun's irradiance and colour, skylight, drifting cloud shadows, haze, and the encoding to 0..255.

Irradiances are relative to the nominal day (clear sky, sun 45 deg up), on which a white horizontal
Lambertian surface reads linear 1.0. The world works in linear radiance (areas mix linearly, as a
sensor integrates them) and encodes to 0..255 with a gamma of 2 at the end (docs/WORLD.md):
`encode`/`decode` convert, so a camera model can blur or average in linear light.

Models (docs/WORLD.md cites each): air mass after Kasten & Young 1989; broadband direct
transmittance 0.7^(AM^0.678) (Meinel & Meinel 1976); diffuse transmittance 0.271 - 0.294 * direct
(Liu & Jordan 1960); the sun's colour shift with air mass from the Rayleigh optical depth
0.008735 lambda^-4.08 (lambda in um; Leckner 1978); the colour temperature of the sunlight from Planck's law against
daylight white balance (5500 K); haze as Koschmieder's airlight model, I = J t + A (1 - t).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from flight_sim.world.config import LightSection
from flight_sim.world.noise import F32, smoothstep, value_noise2

BANDS_UM = (0.610, 0.550, 0.465)  # effective centres of a camera's red, green and blue bands
WHITE_BALANCE_K = 5500.0  # the camera's daylight white balance: light of this temperature renders neutral
AIRLIGHT: tuple[float, float, float] = (0.50, 0.55, 0.63)  # linear radiance of the haze's path light, nominal day
HAZE_PATH_M = 100.0  # haze = 1 - transmittance over this path
CLOUD_DIRECT = 0.12  # share of direct sunlight a cloud shadow lets through
CLOUD_PENUMBRA = 0.04  # half-width of the soft cloud edge, in units of the cloud noise


def air_mass(elev_deg: float) -> float:
    """Relative optical air mass (Kasten & Young 1989)."""
    e = max(float(elev_deg), 0.5)
    return 1.0 / (math.sin(math.radians(e)) + 0.50572 * (e + 6.07995) ** -1.6364)


def planck_rgb(temp_k: float) -> np.ndarray:
    """Relative spectral radiance of a black body at `temp_k` in the camera's red, green and blue bands."""
    c2 = 14387.77  # um K
    lam = np.array(BANDS_UM)
    return lam**-5 / np.expm1(c2 / (lam * temp_k))


def sun_colour(temp_k: float, elev_deg: float) -> np.ndarray:
    """Relative RGB of direct sunlight after daylight white balance (green = 1 at the nominal sun).

    The scenario's colour temperature tints the light against the camera's 5500 K white balance;
    a lower sun reddens it further (Rayleigh scattering over the longer path).
    """
    tint = planck_rgb(temp_k) / planck_rgb(WHITE_BALANCE_K)
    tau = 0.008735 * np.array(BANDS_UM) ** -4.08
    redden = np.exp(-tau * (air_mass(elev_deg) - air_mass(45.0)))
    rgb = tint * redden
    return rgb / rgb[1]


def sky_colour() -> np.ndarray:
    """Relative RGB of skylight: bluer than the sun (lambda^-2, between single Rayleigh scattering and white)."""
    lam = np.array(BANDS_UM)
    rgb = (lam / BANDS_UM[1]) ** -2.0
    return rgb / rgb[1]


@dataclass(frozen=True)
class Sun:
    """The light at one moment: direction and horizontal irradiances (relative to the nominal day)."""

    elev_deg: float
    azim_deg: float
    direct_normal: float  # on a surface facing the sun
    diffuse: float  # on a horizontal surface, from the whole sky
    sun_rgb: np.ndarray
    sky_rgb: np.ndarray

    @property
    def direct_horizontal(self) -> float:
        return self.direct_normal * math.sin(math.radians(self.elev_deg))


def _clear_sky(elev_deg: float) -> tuple[float, float]:
    t = 0.7 ** (air_mass(elev_deg) ** 0.678)
    s = math.sin(math.radians(elev_deg))
    return t, s * max(0.271 - 0.294 * t, 0.02)


def _nominal_total() -> float:
    t, d = _clear_sky(45.0)
    return t * math.sin(math.radians(45.0)) + d


def sun_at(light: LightSection, t_s: float) -> Sun:
    """The sun and sky at flight time t_s (the sun drifts by the section's rates)."""
    elev = float(np.clip(light.sun_elevation_deg + light.sun_elevation_rate_deg_s * t_s, 2.0, 90.0))
    azim = (light.sun_azimuth_deg + light.sun_azimuth_rate_deg_s * t_s) % 360.0
    t, d = _clear_sky(elev)
    norm = _nominal_total()
    return Sun(elev, azim, t / norm, d / norm, sun_colour(light.colour_temp_k, elev), sky_colour())


class Clouds:
    """Cloud shadows: smooth two-octave value noise thresholded at the cover's quantile, drifting with the wind."""

    def __init__(self, light: LightSection, seed: int) -> None:
        self.cover = float(light.cloud_cover)
        self.scale = float(light.cloud_size_m)
        a = math.radians(light.cloud_direction_deg)
        self.vel = (light.cloud_speed_m_s * math.sin(a), light.cloud_speed_m_s * math.cos(a))
        self.seed = int(seed)
        self.threshold = 1.0
        if 0.0 < self.cover < 1.0:
            # the quantile of the noise's own distribution, so the shadowed share is the cover
            g = np.arange(0.0, 64.0, 0.173, dtype=np.float32)
            x, y = np.meshgrid(g, g * 1.31)
            self.threshold = float(np.quantile(self._noise(x.ravel(), y.ravel()), 1.0 - self.cover))

    def _noise(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        n = value_noise2(x, y, self.seed) * F32(0.65)
        n += value_noise2(x * F32(2.3) + F32(17.1), y * F32(2.3) + F32(5.3), self.seed + 1) * F32(0.35)
        return n

    def shadow(self, east_m: np.ndarray, north_m: np.ndarray, t_s: float) -> np.ndarray | None:
        """Share of direct sunlight blocked (0 clear .. 1 deep shadow) at each point; None when no cloud."""
        if self.cover <= 0.0:
            return None
        if self.cover >= 1.0:
            return np.ones(east_m.shape, np.float32)
        inv = F32(1.0 / self.scale)
        x = (east_m - F32(self.vel[0] * t_s)) * inv
        y = (north_m - F32(self.vel[1] * t_s)) * inv
        n = self._noise(x, y)
        th = self.threshold
        return smoothstep(th - CLOUD_PENUMBRA, th + CLOUD_PENUMBRA, n)

    def mean_shadow(self) -> float:
        return self.cover


def encode(linear: np.ndarray) -> np.ndarray:
    """Linear radiance (1.0 = white at nominal exposure) -> 0..255 float32, gamma 2."""
    return np.sqrt(np.clip(linear, 0.0, 1.0, dtype=np.float32)) * F32(255.0)


def decode(rgb: np.ndarray) -> np.ndarray:
    """0..255 (gamma 2) -> linear radiance, float32."""
    x = np.asarray(rgb, dtype=np.float32) * F32(1.0 / 255.0)
    return x * x


def transmittance(haze: float, path_m: float | np.ndarray) -> np.ndarray:
    """Share of the ground's light reaching the camera through `path_m` of haze (Beer-Lambert)."""
    h = min(max(float(haze), 0.0), 0.999)
    return np.power(np.float32(1.0 - h), np.asarray(path_m, dtype=np.float32) / F32(HAZE_PATH_M))


def apply_haze(rgb: np.ndarray, haze: float, path_m: float | np.ndarray,
               airlight: tuple[float, float, float] = AIRLIGHT) -> np.ndarray:
    """Koschmieder's airlight model on 0..255 (gamma 2) colours: I = J t + A (1 - t), in linear light.

    `path_m` is the slant range from camera to ground (a scalar, or one per pixel broadcastable to
    rgb's leading shape). Returns float32 0..255 of rgb's shape; haze 0 returns the input unchanged.
    """
    if haze <= 0.0:
        return np.asarray(rgb, dtype=np.float32)
    t = transmittance(haze, path_m)
    t = t[..., None] if t.ndim else t
    lin = decode(rgb)
    out = lin * t + np.asarray(airlight, np.float32) * (F32(1.0) - t)
    return encode(out)
