"""A recorded message type at any time: what the vehicle sends when a client asks for another rate.

ArduPilot streams each message at whatever interval MAV_CMD_SET_MESSAGE_INTERVAL sets; a timeline
holds one type at its recorded rate only. To serve the payload at the rate it asks for, the
endpoint (flight_sim/vehicle.py) sends, on its own schedule, the recorded type interpolated at the
moment of sending: continuous fields linearly between the recorded messages either side (angles
the short way round), everything else (flags, fix type, counts) from the last recorded message, as
a vehicle's state holds between updates.

A recorded flight (a tlog) carries a fitted trajectory (`Timeline.fit`, flight_sim/trajectory.py):
for GLOBAL_POSITION_INT and ATTITUDE the position, velocity, attitude and body rates come from it
instead, so a stream asked for at 25 Hz follows the manoeuvre between the recorded 4 Hz samples
(and passes through them) rather than cutting its corners; its velocities and rates are the fit's
own derivative, so they agree with how the served position and attitude move. A scripted survey
has no fit; its recorded 10 Hz is interpolated linearly, as before.
"""

from __future__ import annotations

import bisect
import math
from typing import Any

from flight_sim.timeline import Timeline
from flight_sim.trajectory import Trajectory

# the fields that vary continuously, per message (the rest hold their last recorded value)
CONTINUOUS: dict[str, tuple[str, ...]] = {
    "ATTITUDE": ("time_boot_ms", "roll", "pitch", "yaw", "rollspeed", "pitchspeed", "yawspeed"),
    "GLOBAL_POSITION_INT": ("time_boot_ms", "lat", "lon", "alt", "relative_alt", "vx", "vy", "vz", "hdg"),
    "LOCAL_POSITION_NED": ("time_boot_ms", "x", "y", "z", "vx", "vy", "vz"),
    "GPS_RAW_INT": ("time_usec", "lat", "lon", "alt", "vel", "cog"),
    "VFR_HUD": ("airspeed", "groundspeed", "heading", "alt", "climb"),
    "SYSTEM_TIME": ("time_unix_usec", "time_boot_ms"),
}
# angle fields and their full turn (a missing heading, 65535 / UINT16_MAX, is held, not interpolated)
PERIOD: dict[tuple[str, str], float] = {
    ("ATTITUDE", "roll"): 2 * math.pi, ("ATTITUDE", "pitch"): 2 * math.pi, ("ATTITUDE", "yaw"): 2 * math.pi,
    ("GLOBAL_POSITION_INT", "hdg"): 36000.0, ("GPS_RAW_INT", "cog"): 36000.0, ("VFR_HUD", "heading"): 360.0,
}
UNKNOWN_ANGLE = 65535
# the types a fitted trajectory serves (the rest are interpolated as above)
FITTED = ("GLOBAL_POSITION_INT", "ATTITUDE")


def _has_fix(fields: dict[str, Any]) -> bool:
    return fields.get("lat", 0) != 0 or fields.get("lon", 0) != 0


def _fitted_position(fit: Trajectory, t: float, out: dict[str, Any], blended_alt_mm: float) -> None:
    """GLOBAL_POSITION_INT's position and velocity from the fit, in the message's units (in place).

    relative_alt keeps the recorded offset between the two altitudes (home's height), moved by
    the fit's altitude.
    """
    lat, lon, alt, vn, ve, vd = fit.position_velocity(t)
    alt_mm = alt * 1e3
    if "relative_alt" in out:
        out["relative_alt"] = int(round(out["relative_alt"] + alt_mm - blended_alt_mm))
    out["lat"] = int(round(lat * 1e7))
    out["lon"] = int(round(lon * 1e7))
    out["alt"] = int(round(alt_mm))
    for key, v in (("vx", vn), ("vy", ve), ("vz", vd)):
        out[key] = int(round(v * 100.0))


def _fitted_attitude(fit: Trajectory, t: float, out: dict[str, Any]) -> None:
    """ATTITUDE's angles and body rates from the fit (in place)."""
    keys = ("roll", "pitch", "yaw", "rollspeed", "pitchspeed", "yawspeed")
    for key, v in zip(keys, fit.attitude_rates(t), strict=True):
        out[key] = float(v)


def _blend(a: Any, b: Any, w: float, period: float | None) -> Any:
    """a..b at weight w, keeping the type of a (integer fields stay integers)."""
    if period is not None:
        if a == UNKNOWN_ANGLE or b == UNKNOWN_ANGLE:
            return a
        d = (b - a + period / 2) % period - period / 2
        v = (a + w * d) % period
        if period == 2 * math.pi and v > math.pi:
            v -= period  # radians stay in -pi..pi, as the autopilot sends them
    else:
        v = a + w * (b - a)
    return int(round(v)) if isinstance(a, int) and not isinstance(a, bool) else float(v)


class Resampler:
    """A timeline's messages of one type at any time t (None before the first recorded one)."""

    def __init__(self, timeline: Timeline) -> None:
        self.timeline = timeline
        self._series: dict[str, tuple[list[float], list[dict[str, Any]]]] = {}

    def has(self, name: str) -> bool:
        """Whether the timeline records this type at all."""
        return bool(self._get(name)[0])

    def _get(self, name: str) -> tuple[list[float], list[dict[str, Any]]]:
        if name not in self._series:
            events = self.timeline.of(name)
            self._series[name] = ([e.t for e in events], [e.fields for e in events])
        return self._series[name]

    def fields_at(self, name: str, t: float) -> dict[str, Any] | None:
        """The message `name` as the vehicle would send it at timeline time t."""
        ts, fs = self._get(name)
        i = bisect.bisect_right(ts, t) - 1
        if i < 0:
            return None
        out = dict(fs[i])
        if i + 1 >= len(ts) or ts[i + 1] <= ts[i]:
            return out
        w = (t - ts[i]) / (ts[i + 1] - ts[i])
        nxt = fs[i + 1]
        for key in CONTINUOUS.get(name, ()):
            if key in out and key in nxt:
                out[key] = _blend(out[key], nxt[key], w, PERIOD.get((name, key)))
        fit = self.timeline.fit
        if fit is not None and name == "GLOBAL_POSITION_INT" and _has_fix(fs[i]) and _has_fix(nxt):
            # the blended relative_alt is shifted by the fit's alt minus the blended alt
            _fitted_position(fit, t, out, float(out.get("alt", 0)))
        elif fit is not None and name == "ATTITUDE" and fit.has_attitude:
            _fitted_attitude(fit, t, out)
        return out
