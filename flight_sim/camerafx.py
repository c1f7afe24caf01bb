"""What a real camera does to the scene's light before the payload sees it: exposure, white balance, haze, blur, noise.

The world (flight_sim/world) gives each pixel the scene radiance an ideal camera would record at a
nominal exposure and daylight white balance. A drone camera then:
- meters the scene and sets its gain, late: auto exposure follows the scene with a time constant
  (AE_TAU_S), so flying from bright soil onto dark canopy leaves a frame or two too dark. It
  meters as Raspberry Pi's libcamera does (`exposure_gain`): the frame's mean linear luma to
  AE_Y_TARGET, raised if need be until the brightest 2 % reach AE_HIGHLIGHT_Y;
- balances white, also late (AWB_TAU_S) and only partly, along the illuminant's warm-cool axis:
  red and blue gains move in opposite directions (red x blue = 1), toward equal red and blue means,
  pulled toward 1 by AWB_STRENGTH and within AWB_LIMITS. A camera's AWB searches daylight-like
  illuminants (the Planckian locus); a free grey-world balance would lift red and blue together to
  grey out a green canopy, and paint brown soil magenta, which no field camera does;
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

from flight_sim.world.light import decode

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
AWB_STRENGTH = 0.5  # share of the grey-world correction applied
AWB_LIMITS = (0.75, 1.35)
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


def awb_gains(mean_rgb: np.ndarray) -> np.ndarray:
    """White-balance gains (red, 1, blue) from a scene's mean colour, on the warm-cool axis only.

    k = sqrt(mean blue / mean red) balances red against blue with red x blue gain = 1 (green is the
    reference, as in camera ISPs); only AWB_STRENGTH of the correction is applied, within AWB_LIMITS.
    """
    r, b = float(mean_rgb[0]), float(mean_rgb[2])
    k = math.sqrt(max(b, 1e-3) / max(r, 1e-3))
    k = float(np.clip(k ** AWB_STRENGTH, *AWB_LIMITS))
    return np.array([k, 1.0, 1.0 / k], np.float32)


class CameraEffects:
    """The camera's processing chain for one camera (stateful: exposure and white balance lag)."""

    def __init__(self, shape: tuple[int, int], noise_sigma: float, seed: int, auto: bool = True,
                 bank: int = 4) -> None:
        h, w = shape
        rng = np.random.default_rng([seed, 77])
        self.auto = auto
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
        mean = sample.mean(axis=0) + 1e-3
        target_gain = exposure_gain(sample)
        target_wb = awb_gains(mean)
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
