"""A small ground station on the simulator's second link: what QGroundControl would receive, counted.

It listens on udp:127.0.0.1:PORT (the simulator's `gcs=udp:127.0.0.1:PORT` sends there, as an autopilot's
telemetry radio would), parses MAVLink 1 and 2, counts every message by type and keeps the camera protocol's
messages. Like QGroundControl it asks a camera component that announces itself (HEARTBEAT of type
MAV_TYPE_CAMERA from component 100-105) for CAMERA_INFORMATION with MAV_CMD_REQUEST_MESSAGE, so the mission's
`gcs_messages` also shows the request answered. With `signing_key` it signs what it sends and counts the
packets that arrived validly signed.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from typing import Any

from pymavlink.dialects.v20 import ardupilotmega as mav2

from flight_sim.mav import ByteSink

MAV_TYPE_CAMERA = 30
CAMERA_COMPONENTS = range(100, 106)
MAV_CMD_REQUEST_MESSAGE = 512
MSG_CAMERA_INFORMATION = 259
KEEP = ("HEARTBEAT", "CAMERA_INFORMATION", "CAMERA_IMAGE_CAPTURED", "COMMAND_ACK", "STATUSTEXT")
SIGNING_EPOCH_UNIX = 1420070400


class GroundStation:
    """Listens on udp:127.0.0.1:port; `counts` by type, `messages` of the camera protocol's types."""

    def __init__(self, port: int = 0, *, ask_camera: bool = True, signing_key: bytes | None = None,
                 sysid: int = 255, compid: int = 190) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", port))
        self.sock.settimeout(0.1)
        self.port = int(self.sock.getsockname()[1])
        self.ask_camera = ask_camera
        self._parser = mav2.MAVLink(None, srcSystem=sysid, srcComponent=compid)
        self._parser.robust_parsing = True
        if signing_key is not None:
            self._parser.signing.secret_key = signing_key
            self._parser.signing.sign_outgoing = True
            self._parser.signing.link_id = 2
            self._parser.signing.timestamp = int((time.time() - SIGNING_EPOCH_UNIX) * 100_000)
            self._parser.signing.allow_unsigned_callback = lambda _mav, _msg_id: True
        self._out = ByteSink()
        self._encoder = mav2.MAVLink(self._out, srcSystem=sysid, srcComponent=compid)
        if signing_key is not None:
            self._encoder.signing = self._parser.signing
        self.counts: Counter[str] = Counter()
        self.signed: Counter[str] = Counter()
        self.messages: list[Any] = []
        self.cameras: set[tuple[int, int]] = set()
        self._asked: set[tuple[int, int]] = set()
        self._peer: tuple[str, int] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ground-station", daemon=True)

    @property
    def url(self) -> str:
        """What the simulator sends to (its `gcs=` address)."""
        return f"udp:127.0.0.1:{self.port}"

    def start(self) -> GroundStation:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()

    def __enter__(self) -> GroundStation:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def received(self, name: str) -> list[Any]:
        """The kept messages of one type (HEARTBEAT, CAMERA_*, COMMAND_ACK, STATUSTEXT), in arrival order."""
        with self._lock:
            return [m for m in self.messages if m.get_type() == name]

    def command(self, target_system: int, target_component: int, command: int, *params: float) -> bool:
        """Send a COMMAND_LONG to a component (through the vehicle); False before the vehicle was heard."""
        p = [float(x) for x in params] + [0.0] * (7 - len(params))
        msg = self._encoder.command_long_encode(target_system, target_component, command, 0, *p)
        self._encoder.send(msg)
        data = self._out.take()
        if self._peer is None:
            return False
        self.sock.sendto(data, self._peer)
        return True

    def summary(self) -> dict[str, Any]:
        """Counts by message type (and how many were signed), for report.json's `gcs_messages`."""
        with self._lock:
            return {"port": self.port, "counts": dict(sorted(self.counts.items())),
                    "signed": dict(sorted(self.signed.items())),
                    "cameras": [list(c) for c in sorted(self.cameras)]}

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(65536)
            except (TimeoutError, OSError):
                continue
            self._peer = addr
            for msg in self._parser.parse_buffer(data) or []:
                self._take(msg)

    def _take(self, msg: Any) -> None:
        name = msg.get_type()
        if name == "BAD_DATA":
            return
        with self._lock:
            self.counts[name] += 1
            if msg.get_signed():
                self.signed[name] += 1
            if name in KEEP:
                self.messages.append(msg)
        src = (msg.get_srcSystem(), msg.get_srcComponent())
        if name == "HEARTBEAT" and msg.type == MAV_TYPE_CAMERA and src[1] in CAMERA_COMPONENTS:
            self.cameras.add(src)
            if self.ask_camera and src not in self._asked:  # QGroundControl asks a new camera who it is
                self._asked.add(src)
                self.command(src[0], src[1], MAV_CMD_REQUEST_MESSAGE, MSG_CAMERA_INFORMATION)
