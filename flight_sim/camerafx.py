"""What a real camera does to the scene's light before the payload sees it: exposure, white balance, haze, blur, noise.

The world (flight_sim/world) gives each pixel the scene radiance an ideal camera would record at a
nominal exposure and daylight white balance. A drone camera then:
- meters the scene and sets its gain, late: auto exposure follows the scene with a time constant
  (AE_TAU_S), so flying from bright soil onto dark canopy leaves a frame or two too dark. It
  meters as Raspberry Pi's libcamera does (`exposure_gain`): the frame's mean linear luma to
  AE_Y_TARGET, raised if need be until the brightest 2 % reach AE_HIGHLIGHT_Y;
- balances white, also late (AWB_TAU_S), as libcamera's Raspberry Pi AWB does (`awb_gains`): it
  searches colour temperatures along the Planckian locus for the one under which the frame's zones
  look grey, each zone's non-greyness capped, plus a prior that favours daylight at daylight lux.
  Over a canopy no zone can be made grey (a leaf is two to three times greener than red or blue),
  so every zone sits at the cap and the prior decides: the camera holds daylight white balance.
  The earlier rule here (half of a grey-world correction on the warm-cool axis) lifted a canopy's
  blue by about 15 %, which no such camera does;
- looks through air: haze lifts and flattens the colours with the path length (World's apply_haze);
- smears the image along the ground's apparent motion during the exposure: blur length in pixels =
  speed x exposure / GSD, along the image-space direction the ground moves;
- adds read noise (a small bank of precomputed Gaussian fields: cheap per frame).
JPEG compression is the stream's (flight_sim/stream.py encode_jpeg, at the scenario's quality).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from flight_sim.world.light import WHITE_BALANCE_K, decode, planck_rgb

# Auto exposure as libcamera's Raspberry Pi AGC meters (src/ipa/rpi/vc4/data/imx219.json, `rpi.agc`,
# BSD-2-Clause): the mean linear luma of the frame aims at y_target 0.16, and in the normal
# constraint mode the mean of the brightest 2 % (q 0.98-1.0) is held at or above 0.5 (a LOWER bound:
# it only ever raises the exposure). The old rule, a mean ENCODED level of 110, over-exposed a
# contrasty canopy by 0.4-0.8 stops against it (docs/WORLD.md, "The camera chain").
AE_Y_TARGET = 0.16
AE_HIGHLIGHT_Q = 0.98
AE_HIGHLIGHT_Y = 0.5
LUMA = np.array([0.299, 0.587, 0.114], np.float32)
AE_TAU_S = 0.6  # auto-exposure time constant
AE_LIMITS = (0.25, 8.0)  # gain range
AWB_TAU_S = 1.5
# White balance as libcamera's Raspberry Pi Bayesian AWB (src/ipa/rpi/controller/rpi/awb_bayes.cpp,
# awb.cpp `computeDelta2Sum`; constants from src/ipa/rpi/vc4/data/imx219.json `rpi.awb`, BSD-2-Clause):
# statistics in 16 x 12 zones; a candidate colour temperature T gives gains that make a grey under T
# grey; a zone's non-greyness is (gain_r R/G - 1)^2 + (gain_b B/G - 1)^2, capped at AWB_DELTA_LIMIT;
# the sum over zones minus the prior's log likelihood (scaled by the share of zones counted) is
# minimised over T in the "auto" mode's AWB_CT_RANGE by steps of 2 % (`coarse_step` 0.2). The prior
# is imx219's for lux >= 1500 (every daylight scene the world draws is far brighter). Left out: the
# quadratic refinement and the transverse search off the locus (both move T by less than one step).
AWB_ZONES = (12, 16)  # rows, columns
AWB_DELTA_LIMIT = 0.2
AWB_CT_RANGE = (2500.0, 8000.0)
AWB_PRIOR = ((2000.0, 0.0), (4000.0, 1.0), (6000.0, 6.0), (6500.0, 7.0), (7000.0, 1.0), (13000.0, 1.0))
AWB_MIN_ZONE_G = 0.005  # linear green below which a zone is too dark to count (libcamera's min_G)
AWB_MIN_ZONE_SHARE = 0.5  # share of a zone's pixels that must be valid ground (libcamera's min_pixels)
AWB_MIN_ZONES = 10  # fewer counted zones: keep the last white balance (libcamera's min_regions)
# The balance the auto white balance holds over a canopy (the prior's peak): a camera whose white
# balance is locked for a survey locks it here. Locking matters: a frame filled by one late-rusted
# canopy (red/green about 1.03) counts as nearly grey, and the auto balance moves to about 2,760 K
# and takes it to 0.79, close to healthy wheat's 0.70-0.76 (tools/detectability's frames, seed 5).
AWB_DAYLIGHT_K = 6500.0
MIN_BLUR_PX = 0.5  # shorter smears change nothing visible
MAX_BLUR_PX = 60.0


@dataclass
class FxState:
    """What the camera remembers between frames (its metering)."""

    t_s: float | None = None
    gain: float = 1.0
    wb: np.ndarray | None = None


def _lag(old: float | np.ndarray, new: float | np.ndarray, dt: float | None, tau: float) -> float | np.ndarray:
    """First-order lag toward `new`; no history (first frame, a jump in time) takes it at once."""
    if dt is None or dt <= 0 or dt > 5 * tau:
        return new
    a = 1.0 - math.exp(-dt / tau)
    return old + a * (new - old)


def motion_kernel(dx_px: float, dy_px: float) -> np.ndarray | None:
    """A normalised line kernel for a smear of (dx, dy) pixels (None when shorter than MIN_BLUR_PX)."""
    length = math.hypot(dx_px, dy_px)
    if length < MIN_BLUR_PX:
        return None
    if length > MAX_BLUR_PX:
        dx_px, dy_px = dx_px * MAX_BLUR_PX / length, dy_px * MAX_BLUR_PX / length
        length = MAX_BLUR_PX
    size = int(math.ceil(length)) | 1
    size = max(size, 3)
    k = np.zeros((size, size), np.float32)
    c = (size - 1) / 2.0
    n = max(int(math.ceil(length * 4)), 2)
    for s in np.linspace(-0.5, 0.5, n):
        x, y = c + s * dx_px, c + s * dy_px
        x0, y0 = int(math.floor(x)), int(math.floor(y))
        fx, fy = x - x0, y - y0
        for xx, yy, w in ((x0, y0, (1 - fx) * (1 - fy)), (x0 + 1, y0, fx * (1 - fy)), (x0, y0 + 1, (1 - fx) * fy),
                          (x0 + 1, y0 + 1, fx * fy)):
            if 0 <= xx < size and 0 <= yy < size:
                k[yy, xx] += w
    return k / k.sum()


def exposure_gain(sample: np.ndarray) -> float:
    """The gain on encoded (gamma-2) values that exposes `sample` (N, 3 encoded 0-255) as libcamera's AGC would.

    Linear gain = max(AE_Y_TARGET / mean luma, AE_HIGHLIGHT_Y / mean luma of the brightest
    1 - AE_HIGHLIGHT_Q), taken on linear light; the encoded gain is its square root (gamma 2),
    within AE_LIMITS.
    """
    y = decode(sample) @ LUMA
    mean_y = max(float(y.mean()), 1e-6)
    k = max(1, int(round(len(y) * (1.0 - AE_HIGHLIGHT_Q))))
    top_y = max(float(np.partition(y, len(y) - k)[len(y) - k:].mean()), 1e-6)
    gain_lin = max(AE_Y_TARGET / mean_y, AE_HIGHLIGHT_Y / top_y)
    return float(np.clip(math.sqrt(gain_lin), *AE_LIMITS))


def awb_candidates() -> tuple[np.ndarray, np.ndarray]:
    """The search's colour temperatures and, for each, the (red, blue) of a grey lit by it, over green.

    In the world's own colour space (linear radiance after the daylight white balance of
    WHITE_BALANCE_K, light.py), so at T = WHITE_BALANCE_K a grey is (1, 1) and the gains are 1.
    """
    temps = [AWB_CT_RANGE[0]]
    while temps[-1] < AWB_CT_RANGE[1]:
        temps.append(min(temps[-1] * 1.02, AWB_CT_RANGE[1]))
    t = np.array(temps)
    rgb = np.array([planck_rgb(k) / planck_rgb(WHITE_BALANCE_K) for k in t])
    return t, rgb[:, [0, 2]] / rgb[:, 1:2]


_AWB_T, _AWB_GREY_RB = awb_candidates()
_AWB_LOG_PRIOR = np.interp(_AWB_T, [p[0] for p in AWB_PRIOR], [p[1] for p in AWB_PRIOR])


def awb_zones(linear: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """The frame's (H, W, 3 linear) mean colour in AWB_ZONES, (N, 3), of the zones that count."""
    rows, cols = AWB_ZONES
    h, w = linear.shape[0] // rows * rows, linear.shape[1] // cols * cols
    if h == 0 or w == 0:
        return np.zeros((0, 3), np.float32)
    x = linear[:h, :w].reshape(rows, h // rows, cols, w // cols, 3)
    m = np.ones((rows, h // rows, cols, w // cols), np.float32) if valid is None else \
        valid[:h, :w].reshape(rows, h // rows, cols, w // cols).astype(np.float32)
    n = m.sum(axis=(1, 3))
    zones = (x * m[..., None]).sum(axis=(1, 3)) / np.maximum(n, 1.0)[..., None]
    keep = (n >= AWB_MIN_ZONE_SHARE * (h // rows) * (w // cols)) & (zones[..., 1] >= AWB_MIN_ZONE_G)
    return zones[keep].astype(np.float32)


def awb_temperature(zones: np.ndarray) -> float | None:
    """The colour temperature libcamera's Bayesian AWB picks for these zone means (None: too few zones).

    Each zone's squared distance from grey under each candidate temperature, capped at
    AWB_DELTA_LIMIT, summed; minus the prior (scaled by the share of zones counted); the minimum wins.
    """
    if len(zones) < AWB_MIN_ZONES:
        return None
    g = np.maximum(zones[:, 1], 1e-9)
    rb = np.stack([zones[:, 0] / g, zones[:, 2] / g], axis=1)  # (N, 2)
    delta = rb[None, :, :] / _AWB_GREY_RB[:, None, :] - 1.0  # (T, N, 2): gain = 1 / grey's colour
    cost = np.minimum((delta**2).sum(axis=2), AWB_DELTA_LIMIT).sum(axis=1)
    share = len(zones) / (AWB_ZONES[0] * AWB_ZONES[1])
    return float(_AWB_T[int(np.argmin(cost - _AWB_LOG_PRIOR * share))])


def awb_gains(temp_k: float) -> np.ndarray:
    """Gains on encoded (gamma-2) values, (red, 1, blue), that render a grey lit by `temp_k` grey."""
    grey = planck_rgb(temp_k) / planck_rgb(WHITE_BALANCE_K)
    return np.sqrt(grey[1] / grey).astype(np.float32)


class CameraEffects:
    """The camera's processing chain for one camera (stateful: exposure and white balance lag)."""

    def __init__(self, shape: tuple[int, int], noise_sigma: float, seed: int, auto: bool = True,
                 bank: int = 4, wb_temp_k: float | None = None) -> None:
        """`wb_temp_k`: white balance locked at that colour temperature (auto exposure still runs);
        None: libcamera's auto white balance (`awb_temperature`)."""
        h, w = shape
        rng = np.random.default_rng([seed, 77])
        self.auto = auto
        self.wb_temp_k = wb_temp_k
        self.state = FxState()
        self._noise = [rng.normal(0.0, noise_sigma, (h, w, 3)).astype(np.float32) for _ in range(bank)] \
            if noise_sigma > 0 else []
        self._i = 0

    def meter(self, rgb: np.ndarray, valid: np.ndarray | None, t_s: float) -> tuple[float, np.ndarray]:
        """Update and return (gain, white-balance gains) from this frame's scene (lagging)."""
        st = self.state
        dt = None if st.t_s is None else t_s - st.t_s
        st.t_s = t_s
        if not self.auto:
            st.gain, st.wb = 1.0, np.ones(3, np.float32)
            return st.gain, st.wb
        sample = rgb[::4, ::4].reshape(-1, 3)
        if valid is not None:
            v = valid[::4, ::4].ravel()
            sample = sample[v] if v.any() else sample
        target_gain = exposure_gain(sample)
        temp = self.wb_temp_k if self.wb_temp_k is not None else \
            awb_temperature(awb_zones(decode(rgb[::4, ::4]), None if valid is None else valid[::4, ::4]))
        if temp is None:  # too few zones to judge (dark, or off the field): keep the last balance
            target_wb = np.ones(3, np.float32) if st.wb is None else st.wb
        else:
            target_wb = awb_gains(temp)
        st.gain = float(_lag(st.gain, target_gain, dt, AE_TAU_S))
        st.wb = np.asarray(target_wb if st.wb is None else _lag(st.wb, target_wb, dt, AWB_TAU_S), np.float32)
        return st.gain, st.wb

    def apply(self, rgb: np.ndarray, t_s: float, blur_px: tuple[float, float] = (0.0, 0.0),
              valid: np.ndarray | None = None) -> np.ndarray:
        """Scene radiance (H, W, 3) float32 -> the camera's uint8 frame (exposure, WB, blur, noise)."""
        gain, wb = self.meter(rgb, valid, t_s)
        img = rgb * (gain * wb)[None, None, :]
        k = motion_kernel(*blur_px)
        if k is not None:
            # light adds up during the exposure, so the smear averages linear radiance, not encoded values
            # (gain and white balance are per-channel scalings: they commute with the gamma-2 code)
            lin = cv2.filter2D(decode(img), -1, k, borderType=cv2.BORDER_REFLECT)
            img = np.sqrt(np.maximum(lin, 0.0)) * np.float32(255.0)
        if self._noise:
            img = img + self._noise[self._i % len(self._noise)]
            self._i += 1
        return np.clip(img, 0.0, 255.0).astype(np.uint8)
