"""One more MAVLink component of the vehicle on the telemetry link (the payload as a camera, id 100).

Why a second encoder beside dronekit's: dronekit sends as the payload's own (system, component), 255/0 by
default, a ground station's ids (it asks the autopilot for telemetry as one). A component that QGroundControl
shows on its map must carry the VEHICLE's system id and a camera component id (100-105), and the camera
protocol's messages (CAMERA_INFORMATION 259, CAMERA_IMAGE_CAPTURED 263) exist only in MAVLink 2. So each
component packs with its own MAVLink 2 encoder and puts the bytes on dronekit's send queue, which one thread
writes: packets of the two never interleave on the wire. With signing on, the component signs with the link's
key (payload/vehicle/signing.py `sign_encoder`).

The autopilot routes what we send to its other ports (the ground station's radio) and routes back the
commands a ground station addresses to our (system, component): `handle_command` answers them with a
COMMAND_ACK and whatever messages the owner's handler returns.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from payload.types import CommandAnswer, CommandHandler
from payload.vehicle.signing import LinkSigning

log = logging.getLogger(__name__)

MAV_AUTOPILOT_INVALID = 8  # a component that is not a flight controller
MAV_STATE_ACTIVE = 4
MAV_RESULT_ACCEPTED = 0
MAV_RESULT_UNSUPPORTED = 3
MAV_RESULT_FAILED = 4
HEARTBEAT_PERIOD_S = 1.0  # the camera protocol's rate; QGC drops a component silent for 5 s


class MavComponent:
    """A component of ours on the link: its encoder, its heartbeat, the commands addressed to it."""

    def __init__(
        self,
        component_id: int,
        mav_type: int,
        on_command: CommandHandler,
        system_id: Callable[[], int | None],
        signing: LinkSigning | None = None,
    ) -> None:
        if not 1 <= component_id <= 255:
            raise ValueError(f"a MAVLink component id is 1..255, not {component_id}")
        self.component_id = int(component_id)
        self.mav_type = int(mav_type)
        self._on_command = on_command
        self._system_id = system_id
        self._signing = signing
        self._lock = threading.Lock()
        self._enc: Any = None
        self._closed = False
        self._next_heartbeat = 0.0
        self.sent: Counter[str] = Counter()
        self.commands: Counter[int] = Counter()

    @property
    def system_id(self) -> int | None:
        """The vehicle's system id (the one the component sends with), None before the link knows it."""
        return self._system_id()

    def attach(self, vehicle: Any) -> None:
        """A (re)opened link: a fresh MAVLink 2 encoder feeding its send queue (sequence numbers carry on)."""
        from dronekit.mavlink import MAVWriter
        from pymavlink.dialects.v20 import ardupilotmega as mav2

        enc = mav2.MAVLink(MAVWriter(vehicle._handler.out_queue), srcSystem=1, srcComponent=self.component_id)
        with self._lock:
            if self._enc is not None:
                enc.seq = self._enc.seq
                enc.signing.timestamp = self._enc.signing.timestamp
            if self._signing is not None:
                self._signing.sign_encoder(enc)
            self._enc = enc

    def send(self, name: str, fields: dict[str, Any]) -> bool:
        """Encode and queue one message (`name` as MAVLink spells it); False without a link or a system id."""
        sysid = self._system_id()
        with self._lock:
            enc = self._enc
            if enc is None or sysid is None or self._closed:
                return False
            enc.srcSystem = int(sysid)
            msg = getattr(enc, f"{name.lower()}_encode")(**fields)
            enc.send(msg)
        self.sent[name] += 1
        return True

    def tick(self, now: float | None = None) -> None:
        """Send the 1 Hz HEARTBEAT when due (the telemetry supervisor calls this while the link is up)."""
        now = time.monotonic() if now is None else now
        if now < self._next_heartbeat or self._closed:
            return
        if self.send("HEARTBEAT", {"type": self.mav_type, "autopilot": MAV_AUTOPILOT_INVALID, "base_mode": 0,
                                   "custom_mode": 0, "system_status": MAV_STATE_ACTIVE}):
            self._next_heartbeat = now + HEARTBEAT_PERIOD_S

    def handle_command(self, msg: Any) -> bool:
        """A COMMAND_LONG from the link: answer it (ACK, then the handler's messages) when addressed to us."""
        if self._closed or int(msg.target_component) != self.component_id:
            return False
        if int(msg.target_system) not in (0, self._system_id()):
            return False
        command = int(msg.command)
        self.commands[command] += 1
        params = [float(getattr(msg, f"param{i}")) for i in range(1, 8)]
        answer: CommandAnswer | None
        try:
            answer = self._on_command(command, params)
        except Exception:  # a broken handler must not take the link's receive thread down
            log.exception("component %d: command %d failed", self.component_id, command)
            answer = (MAV_RESULT_FAILED, [])
        result, messages = answer if answer is not None else (MAV_RESULT_UNSUPPORTED, [])
        self.send("COMMAND_ACK", {"command": command, "result": result, "target_system": msg.get_srcSystem(),
                                  "target_component": msg.get_srcComponent()})
        for name, fields in messages:
            self.send(name, fields)
        return True

    def close(self) -> None:
        """Stop: no more heartbeats or answers (the ground station drops the component after 5 s)."""
        with self._lock:
            self._closed = True

    def summary(self) -> dict[str, Any]:
        """What the component sent and was asked, for the link's summary."""
        return {"component_id": self.component_id, "sent": dict(self.sent),
                "commands": {str(k): v for k, v in self.commands.items()}}
