"""How sure a look is of where each of its tiles lies: the 1-sigma ground-position error in metres.

Pure numpy, no clocks and no I/O. The frame's view (payload/geo/frameview.py) asks once per frame,
from what the pose estimate carries (payload/types.py `PoseEstimate`: the ages of the nearest
samples, the gaps between the samples it was interpolated from, the attitude's rates and the
velocity's change over those gaps, the clock-sync uncertainty), and the obliquity of each tile's
ray. docs/MAPS.md ("How sure a look is of its place") has the derivation; in short, with h the
camera's height over the ground and theta a tile ray's angle from the vertical:

  sigma^2 = (dt * v)^2                                   time: the frame's instant is uncertain by dt
          + (h / cos^2(theta))^2 * (d_tilt^2 + (dt * w_tilt)^2)   roll/pitch error, and rotation during dt
          + (h * tan(theta))^2   * (d_yaw^2  + (dt * w_yaw)^2)    heading error swings the off-nadir ground
          + d_pos^2                                      position between (or past) the samples

- Attitude between two samples T apart, at age a from the nearer one, interpolated linearly: the
  rotation over the gap, w * T, happened at a time the samples do not tell; if it happened at any
  instant with equal likelihood, the linear interpolation misses by w * sqrt(a * (T - a)) rms
  (0 at a sample, w * T / 2 at the midpoint). Past the newest sample the attitude is held, so it
  misses by w * a.
- Position between two samples, a cubic Hermite curve through both positions and velocities: exact
  for any constant acceleration; the velocity's change over the gap, accel * T, at an unknown instant
  makes it miss by accel * (a * (T - a))^1.5 / (sqrt(3) * T) rms (a few centimetres at 4 Hz in a
  turn). Past the newest sample it is dead-reckoned with that sample's velocity: 0.5 * accel * a^2.

What it leaves out is the pose's own error at its samples (the GPS, the EKF's attitude): that is
`map.pose_sigma_m`, added to every zone. The camera's exposure-to-delivery delay is not known to
the payload yet (issue 29 item 3), so `dt` is the clock-sync uncertainty only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# E|d| of a zero-mean Gaussian displacement with standard deviation sigma is sigma * sqrt(2 / pi)
_MEAN_ABS = math.sqrt(2.0 / math.pi)


@dataclass(frozen=True)
class PlaceMotion:
    """What the pose says about how it may be wrong: ages, gaps, rates and the clock (SI units, radians).

    `position_gap_s` / `attitude_gap_s` are the time between the two samples the position / attitude
    was interpolated between, or None when it was extrapolated (dead-reckoned, held) past the end,
    `position_age_s` / `attitude_age_s` then being how far. `tilt_rate_rps` is the roll/pitch rate
    magnitude and `yaw_rate_rps` the heading's, `accel_mps2` the velocity's change per second, each over
    the samples' gap (the last pair's past the end).
    """

    speed_mps: float
    accel_mps2: float
    position_age_s: float
    position_gap_s: float | None
    tilt_rate_rps: float
    yaw_rate_rps: float
    attitude_age_s: float
    attitude_gap_s: float | None
    clock_sigma_s: float


def unknown_time_miss(rate: float, age_s: float, gap_s: float | None) -> float:
    """The rms miss of a linearly interpolated (or, past the end, held) angle changing at `rate` over the gap.

    Between samples the change `rate * gap` happened at an instant uniform over the gap, so at fraction
    s of it the interpolation misses by the change times sqrt(s * (1 - s)); held past the end, by rate * age.
    """
    a = max(0.0, age_s)
    if gap_s is None or gap_s <= 0:
        return abs(rate) * a
    a = min(a, gap_s / 2.0)  # the age is to the nearer sample
    return abs(rate) * math.sqrt(a * (gap_s - a))


def position_miss_m(accel_mps2: float, age_s: float, gap_s: float | None) -> float:
    """The rms miss of the Hermite-interpolated (or, past the end, dead-reckoned) position (module docstring).

    Between samples: the velocity change accel * gap at an instant uniform over the gap, against the
    cubic through both ends' positions and velocities, misses by accel * (a (gap - a))^1.5 / (sqrt(3) gap).
    """
    acc = abs(accel_mps2)
    a = max(0.0, age_s)
    if gap_s is None or gap_s <= 0:
        return 0.5 * acc * a * a
    a = min(a, gap_s / 2.0)
    return acc * (a * (gap_s - a)) ** 1.5 / (math.sqrt(3.0) * gap_s)


def place_sigma_m(height_m: float, obliquity_rad: np.ndarray | float, m: PlaceMotion) -> np.ndarray:
    """Each tile's 1-sigma ground-position error (metres), from the camera's height and each ray's obliquity.

    `obliquity_rad` is the angle of a tile's centre ray from the vertical (0: straight down); a ray at or
    beyond the horizon has no ground point and gets an infinite sigma.
    """
    th = np.asarray(obliquity_rad, dtype=np.float64)
    h = max(0.0, float(height_m))
    dt = max(0.0, m.clock_sigma_s)
    d_tilt = unknown_time_miss(m.tilt_rate_rps, m.attitude_age_s, m.attitude_gap_s)
    d_yaw = unknown_time_miss(m.yaw_rate_rps, m.attitude_age_s, m.attitude_gap_s)
    d_pos = position_miss_m(m.accel_mps2, m.position_age_s, m.position_gap_s)
    with np.errstate(divide="ignore", invalid="ignore"):
        c = np.cos(th)
        lever_tilt = h / (c * c)  # d(ground distance)/d(tilt) = h sec^2(theta)
        lever_yaw = h * np.tan(th)  # the off-nadir distance a heading error swings
        var = ((dt * m.speed_mps) ** 2 + lever_tilt ** 2 * (d_tilt ** 2 + (dt * m.tilt_rate_rps) ** 2)
               + lever_yaw ** 2 * (d_yaw ** 2 + (dt * m.yaw_rate_rps) ** 2) + d_pos ** 2)
    return np.where((th >= 0) & (th < math.pi / 2), np.sqrt(var), np.inf)


def overlap_share(sigma_m: np.ndarray | float, area_m2: np.ndarray | float) -> np.ndarray:
    """The expected share of a footprint that lies on its true ground when placed with error sigma.

    For a square of side L displaced by a Gaussian of sigma per axis the overlap is (1 - E|dx| / L) *
    (1 - E|dy| / L), E|d| = sigma * sqrt(2 / pi): the tile-mean of the probability that a cell under
    the placed footprint is under the true one. The map scales a tile's evidence by it (docs/MAPS.md).
    """
    s = np.asarray(sigma_m, dtype=np.float64)
    side = np.sqrt(np.maximum(np.asarray(area_m2, dtype=np.float64), 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        one = np.clip(1.0 - _MEAN_ABS * s / side, 0.0, 1.0)
    return np.where(np.isfinite(one), one * one, 0.0)


class PlaceBook:
    """The evidence-weighted mean of the looks' squared placement errors, per block of ground.

    A zone's stated position error (payload/geo/zones.py) includes how sure the looks that built it
    were of their place: a zone seen only from banked turns on a 4 Hz attitude stream is placed worse
    than one seen level. Per cell this would double the grid's memory; per block of `block_m` (the
    grid's chunk, 32 m at the defaults) it is two floats a block, and the looks over one patch share a
    block. Each tile counts where its footprint's centre lies, weighted by the evidence it applied.
    """

    def __init__(self, block_m: float) -> None:
        self.block_m = float(block_m)
        self._sums: dict[tuple[int, int], list[float]] = {}  # block -> [sum w sigma^2, sum w]

    def add(self, centres_en: np.ndarray, sigma_m: np.ndarray, weight: np.ndarray) -> None:
        """Tiles' footprint centres (T, 2) east/north metres, their sigmas (T,) and evidence weights (T,)."""
        c = np.asarray(centres_en, dtype=np.float64).reshape(-1, 2)
        keys = np.floor(c / self.block_m).astype(np.int64)
        for (j, i), s, w in zip(keys.tolist(), np.asarray(sigma_m, float).tolist(),
                                np.asarray(weight, float).tolist(), strict=True):
            if w > 0 and math.isfinite(s):
                acc = self._sums.setdefault((i, j), [0.0, 0.0])
                acc[0] += w * s * s
                acc[1] += w

    def rms(self, bounds_en: tuple[float, float, float, float]) -> float:
        """The weighted rms sigma of the blocks that bounds (min e, min n, max e, max n) touch (0: none seen)."""
        e0, n0, e1, n1 = bounds_en
        b = self.block_m
        num = den = 0.0
        for i in range(math.floor(n0 / b), math.floor(n1 / b) + 1):
            for j in range(math.floor(e0 / b), math.floor(e1 / b) + 1):
                acc = self._sums.get((i, j))
                if acc is not None:
                    num, den = num + acc[0], den + acc[1]
        return math.sqrt(num / den) if den > 0 else 0.0
