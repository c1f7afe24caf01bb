"""A QGroundControl `.plan` file read as the simulator's scripted survey.

`payload plan` writes its survey as a .plan; flying that file (not the scenario's own lawnmower)
is how a mission checks the plan a grower would upload. This reader is the simulator's own, not
the payload's writer read back: it follows QGroundControl's Plan File Format (fileType "Plan",
version 1, `mission.items` of SimpleItems whose params 5-7 are latitude, longitude and altitude)
and takes the position items in order (NAV_WAYPOINT, NAV_TAKEOFF's altitude), the ground speed of
DO_CHANGE_SPEED and the camera trigger distance. A ComplexItem (QGC's own survey pattern) must be
expanded to waypoints first (QGC cannot export it as waypoints; `payload plan` writes waypoints).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from payload.errors import ConfigError

NAV_WAYPOINT, NAV_RTL, NAV_TAKEOFF = 16, 20, 22
DO_CHANGE_SPEED, DO_SET_CAM_TRIGG_DIST = 178, 206
FRAME_GLOBAL_RELATIVE_ALT = (3, 6)  # MAV_FRAME_GLOBAL_RELATIVE_ALT and its _INT variant


@dataclass(frozen=True)
class PlanMission:
    """The waypoints of a .plan in flight order, their altitude above home, the speed and the trigger distance."""

    home: tuple[float, float, float]  # lat, lon, AMSL
    waypoints: list[tuple[float, float]]  # lat, lon
    altitude_m: float
    speed_mps: float | None
    trigger_m: float | None
    source: str


def _items(data: Any, source: str) -> list[dict[str, Any]]:
    if not isinstance(data, dict) or data.get("fileType") != "Plan":
        raise ConfigError(f"{source}: not a QGroundControl plan (fileType must be \"Plan\")")
    if data.get("version") != 1:
        raise ConfigError(f"{source}: plan file version {data.get('version')!r}; this reader knows version 1")
    mission = data.get("mission")
    items = mission.get("items") if isinstance(mission, dict) else None
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{source}: the plan has no mission items")
    return items


def _position(item: dict[str, Any], k: int, source: str) -> tuple[float, float, float]:
    """Latitude, longitude and altitude above home of a position item (ConfigError otherwise)."""
    p = item.get("params")
    if item.get("frame") not in FRAME_GLOBAL_RELATIVE_ALT:
        raise ConfigError(f"{source}: mission item {k + 1} is in MAV_FRAME {item.get('frame')}; the simulator flies "
                          "altitudes above home (frame 3)")
    if not isinstance(p, list) or len(p) != 7 or not all(isinstance(v, int | float) for v in p[4:7]):
        raise ConfigError(f"{source}: mission item {k + 1} has no latitude, longitude and altitude in params 5-7")
    lat, lon, alt = float(p[4]), float(p[5]), float(p[6])
    if not (-90 <= lat <= 90 and -180 <= lon <= 180 and math.isfinite(alt)):
        raise ConfigError(f"{source}: mission item {k + 1} is at lat {lat}, lon {lon}: not a position")
    return lat, lon, alt


def plan_from_data(data: Any, source: str = "<plan>") -> PlanMission:
    """The survey of a parsed .plan (ConfigError naming what the simulator cannot fly)."""
    items = _items(data, source)
    wps: list[tuple[float, float]] = []
    alts: list[float] = []
    speed = trigger = None
    for k, it in enumerate(items):
        if not isinstance(it, dict) or it.get("type") != "SimpleItem":
            raise ConfigError(f"{source}: mission item {k + 1} is a {it.get('type') if isinstance(it, dict) else it!r}"
                              "; the simulator flies SimpleItems (waypoints)")
        cmd = it.get("command")
        if cmd == NAV_WAYPOINT:
            lat, lon, alt = _position(it, k, source)
            wps.append((lat, lon))
            alts.append(alt)
        elif cmd == NAV_TAKEOFF:
            alts.append(_position(it, k, source)[2])
        elif cmd == DO_CHANGE_SPEED and speed is None:
            speed = float(it["params"][1])
        elif cmd == DO_SET_CAM_TRIGG_DIST and trigger is None:
            trigger = float(it["params"][0])
    if len(wps) < 2:
        raise ConfigError(f"{source}: the plan has {len(wps)} waypoint(s); a survey needs at least 2")
    if max(alts) - min(alts) > 0.5:
        raise ConfigError(f"{source}: waypoint altitudes range {min(alts):.2f}-{max(alts):.2f} m; the simulator flies "
                          "one survey altitude")
    home = data["mission"].get("plannedHomePosition")
    if not (isinstance(home, list) and len(home) == 3):
        raise ConfigError(f"{source}: mission.plannedHomePosition must be [lat, lon, alt]")
    return PlanMission((float(home[0]), float(home[1]), float(home[2])), wps, alts[0], speed, trigger, source)


def read_plan(path: str | Path) -> PlanMission:
    """Read a QGroundControl .plan file."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: plan file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"{p}: not a readable .plan (JSON) file ({err})") from None
    return plan_from_data(data, str(p))
