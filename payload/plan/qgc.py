"""A QGroundControl `.plan` file of a survey: take-off, speed, the lines as waypoints with camera triggering, RTL.

The format is QGroundControl's Plan File Format (docs.qgroundcontrol.com, qgc-dev-guide/file_formats/plan):
a JSON object with fileType "Plan", version 1, a `mission` (items of type "SimpleItem", each a MAVLink
MAV_CMD with its frame and seven params: params 5-7 are latitude, longitude and altitude),
`geoFence` and `rallyPoints` (version 2, empty here: a fence changes how the vehicle behaves, so
the grower draws one in QGC) and the planned home position. The survey is written as plain
waypoints, not as QGC's "ComplexItem" survey, so any ground station or autopilot reads it as it is
and the simulator (flight_sim/planfile.py) flies exactly these points.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# MAVLink MAV_CMD and MAV_FRAME values (common.xml)
MAV_CMD_NAV_WAYPOINT = 16
MAV_CMD_NAV_RETURN_TO_LAUNCH = 20
MAV_CMD_NAV_TAKEOFF = 22
MAV_CMD_DO_CHANGE_SPEED = 178
MAV_CMD_DO_SET_CAM_TRIGG_DIST = 206
MAV_FRAME_MISSION = 2  # items that are not a position
MAV_FRAME_GLOBAL_RELATIVE_ALT = 3  # altitude above home
MAV_AUTOPILOT_ARDUPILOTMEGA = 3
MAV_TYPE_QUADROTOR = 2
ALTITUDE_MODE_RELATIVE = 1  # QGC's AltitudeMode: relative to home


def _item(seq: int, command: int, frame: int, params: Sequence[float | None], altitude: float | None = None) -> dict:
    """One SimpleItem as QGC writes it (a NaN param is written as null, as QGC does)."""
    item: dict[str, Any] = {"autoContinue": True, "command": command, "doJumpId": seq, "frame": frame,
                            "params": list(params), "type": "SimpleItem"}
    if altitude is not None:
        item.update({"AMSLAltAboveTerrain": None, "Altitude": altitude, "AltitudeMode": ALTITUDE_MODE_RELATIVE})
    return dict(sorted(item.items()))


def plan_document(home: tuple[float, float, float], lines: Sequence[Sequence[tuple[float, float]]],
                  altitude_m: float, speed_mps: float, trigger_m: float) -> dict[str, Any]:
    """The .plan of a survey: `lines` are (lat, lon) waypoints per line in flight order, `home` is (lat, lon, AMSL)."""
    if not lines or not any(lines):
        raise ValueError("a plan needs at least one survey line")
    alt = round(float(altitude_m), 2)
    items: list[dict] = []

    def add(command: int, frame: int, params: Sequence[float | None], altitude: float | None = None) -> None:
        items.append(_item(len(items) + 1, command, frame, params, altitude))

    add(MAV_CMD_NAV_TAKEOFF, MAV_FRAME_GLOBAL_RELATIVE_ALT, [0, 0, 0, None, home[0], home[1], alt], alt)
    add(MAV_CMD_DO_CHANGE_SPEED, MAV_FRAME_MISSION, [1, round(speed_mps, 2), -1, 0, 0, 0, 0])  # 1: ground speed
    for k, line in enumerate(lines):
        for j, (lat, lon) in enumerate(line):
            add(MAV_CMD_NAV_WAYPOINT, MAV_FRAME_GLOBAL_RELATIVE_ALT, [0, 0, 0, None, lat, lon, alt], alt)
            if k == 0 and j == 0:  # trigger every `trigger_m` from the first line's start; once at once
                add(MAV_CMD_DO_SET_CAM_TRIGG_DIST, MAV_FRAME_MISSION, [round(trigger_m, 3), 0, 1, 0, 0, 0, 0])
    add(MAV_CMD_DO_SET_CAM_TRIGG_DIST, MAV_FRAME_MISSION, [0, 0, 0, 0, 0, 0, 0])  # distance 0: stop triggering
    add(MAV_CMD_NAV_RETURN_TO_LAUNCH, MAV_FRAME_MISSION, [0, 0, 0, 0, 0, 0, 0])
    return {
        "fileType": "Plan",
        "geoFence": {"circles": [], "polygons": [], "version": 2},
        "groundStation": "QGroundControl",
        "mission": {
            "cruiseSpeed": round(speed_mps, 2),
            "firmwareType": MAV_AUTOPILOT_ARDUPILOTMEGA,
            "globalPlanAltitudeMode": ALTITUDE_MODE_RELATIVE,
            "hoverSpeed": round(speed_mps, 2),
            "items": items,
            "plannedHomePosition": [home[0], home[1], home[2]],
            "vehicleType": MAV_TYPE_QUADROTOR,
            "version": 2,
        },
        "rallyPoints": {"points": [], "version": 2},
        "version": 1,
    }
