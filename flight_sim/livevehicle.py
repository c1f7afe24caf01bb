"""A live vehicle: a trajectory read at wall-clock time, with faults switched while the link runs.

`VehicleEndpoint` (vehicle.py) replays a precomputed Timeline on the simulated clock; this vehicle
asks a trajectory function for its state at the moment it sends, so a test can change what the
vehicle does while the payload is connected. It speaks the same dialect (ArduPilot, a quadrotor in
AUTO) and answers what dronekit asks during `wait_ready` the way the endpoint does (parameters,
AUTOPILOT_VERSION, HOME_POSITION, TIMESYNC), and it records the STATUSTEXT messages it receives (the
ground-station side of the live alerts). Loopback UDP: it sends to `udpout:127.0.0.1:PORT`.

Faults, switched at any time (attributes read on every send):
- `paused`: nothing but heartbeats (stale telemetry; TIMESYNC goes unanswered);
- `fix_type`, `satellites`, `eph`: the GPS fix it reports;
- `zero_latlon`: lat/lon sent as 0, 0 (a GPS that has not converged);
- `nan_attitude`: roll, pitch and yaw sent as NaN;
- `local_only` (GPS-denied: LOCAL_POSITION_NED from `home` as the EKF origin, and ATTITUDE) with
  `ekf` = (flags, variance) for EKF_STATUS_REPORT; `gimbal_rpy_deg` streams MOUNT_STATUS.
Set at construction: `answer_params=False` (a vehicle that never answers parameter requests, which
dronekit waits for forever), `boot_offset_s` (the autopilot's boot clock differs from the
companion's), `sysid`.

MAVLink 2 signing, as an ArduPilot with a signing key behaves: with `signing_key` the vehicle speaks
MAVLink 2, signs everything it sends (link `signing_link_id`, timestamps from its own clock, which
`signing_clock_offset_s` can put behind or ahead of the wall clock) and drops every packet it receives
that is not validly signed (`rejected_unverified` counts them; `received_signed` / `received_unsigned`
count what it accepted by type). A vehicle with the wrong key is a spoofer that signs.
`mavlink2=True` alone gives an unsigned MAVLink 2 vehicle.

`gcs_port`: a ground station listening on udp:127.0.0.1:PORT as well, routed as ArduPilot routes its ports:
the vehicle's own messages and every packet the payload sends (that the vehicle accepted) go there unchanged;
the ground station's packets go on to the payload unless addressed to the autopilot (component 1) alone.
Stream rates (`rate_requests`, set at construction): every streamed message has its own interval
(`intervals_s`), all `1 / rate_hz` at the start (SYSTEM_TIME 1 s).
- `"fixed"` (the default, what the link tests were written against): ACKs every command ACCEPTED
  and keeps its rates, so a test's 4 Hz stays 4 Hz whatever the payload asks;
- `"ardupilot"`: as ArduPilot does, MAV_CMD_SET_MESSAGE_INTERVAL sets one message's interval
  (ACK ACCEPTED; -1 stops it, 0 restores the default) and REQUEST_DATA_STREAM sets every message
  of a stream group (ALL = every group) to the requested rate, overriding earlier intervals;
- `"ignore"`: SET_MESSAGE_INTERVAL is never answered (a stack that drops the command), and
  `"unsupported"`: it is answered UNSUPPORTED; both still honour REQUEST_DATA_STREAM, the old way.
`interval_requests` and `stream_requests` record what was asked.
"""

from __future__ import annotations

import math
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pymavlink import mavutil

from flight_sim.vehicle import ARDUPILOT_4_5_0, MAV_CMD_GET_HOME_POSITION, MAV_CMD_REQUEST_AUTOPILOT_CAPABILITIES

mavlink = mavutil.mavlink
SIGNING_EPOCH_UNIX = 1420070400  # MAVLink 2 signing timestamps count 10 us units from 2015-01-01


@dataclass(frozen=True)
class VehicleState:
    """Truth at one boot time: position (deg, m MSL), NED velocity (m/s), attitude (rad)."""

    lat: float
    lon: float
    alt: float
    vn: float = 0.0
    ve: float = 0.0
    vd: float = 0.0
    roll: float = 0.0
    pitch: float = 0.0
    yaw: float = 0.0


Trajectory = Callable[[float], VehicleState]  # boot seconds -> state
RateRequests = Literal["fixed", "ardupilot", "ignore", "unsupported"]
MAV_CMD_SET_MESSAGE_INTERVAL = 511
MESSAGE_NAMES = {2: "SYSTEM_TIME", 24: "GPS_RAW_INT", 30: "ATTITUDE", 32: "LOCAL_POSITION_NED",
                 33: "GLOBAL_POSITION_INT", 74: "VFR_HUD", 158: "MOUNT_STATUS", 193: "EKF_STATUS_REPORT"}
# ArduPilot's stream groups (MAV_DATA_STREAM id -> the messages of it this vehicle sends)
STREAM_GROUPS = {2: ("GPS_RAW_INT",), 6: ("GLOBAL_POSITION_INT", "LOCAL_POSITION_NED"), 10: ("ATTITUDE",),
                 11: ("VFR_HUD",), 12: ("SYSTEM_TIME", "EKF_STATUS_REPORT", "MOUNT_STATUS")}


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 that nothing is bound to right now."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return int(port)


class LiveVehicle:
    """Streams a trajectory to a payload listening on udp:127.0.0.1:PORT (the vehicle sends first)."""

    def __init__(
        self,
        port: int,
        trajectory: Trajectory,
        *,
        home: tuple[float, float, float],
        rate_hz: float = 10.0,
        boot_offset_s: float = 1000.0,
        n_params: int = 20,
        answer_params: bool = True,
        sysid: int = 1,
        signing_key: bytes | None = None,
        signing_link_id: int = 0,
        signing_clock_offset_s: float = 0.0,
        mavlink2: bool = False,
        gcs_port: int | None = None,
        rate_requests: RateRequests = "fixed",
    ) -> None:
        self.port = port
        self.sysid = sysid
        self.trajectory = trajectory
        self.home = home
        self.rate_hz = rate_hz
        self.n_params = n_params
        self.answer_params = answer_params
        # boot clock = companion monotonic - boot_start: the two clocks differ, as on a real drone
        self.boot_start = time.monotonic() - boot_offset_s
        self.fix_type = 3
        self.satellites = 12
        self.eph = 80
        self.zero_latlon = False
        self.nan_attitude = False
        self.paused = False
        self.gimbal_rpy_deg: tuple[float, float, float] | None = None
        self.local_only = False
        self.ekf: tuple[int, float] | None = None
        self.statustexts: list[tuple[int, str]] = []
        self.received_counts: dict[str, int] = {}
        self.sent_counts: dict[str, int] = {}
        self.received_signed: dict[str, int] = {}
        self.received_unsigned: dict[str, int] = {}
        self.received_link_ids: set[int] = set()
        self.rejected_unverified = 0
        self.rate_requests = rate_requests
        self.intervals_s: dict[str, float] = self._default_intervals()
        self.interval_requests: list[tuple[str, float]] = []  # (message, interval in s; <0 = stop)
        self.stream_requests: list[tuple[int, int, int]] = []  # (stream id, rate Hz, start_stop)
        self._mav = mavutil.mavlink_connection(
            f"udpout:127.0.0.1:{port}", source_system=sysid, source_component=1, dialect="ardupilotmega"
        )
        if signing_key is not None or mavlink2:
            self._speak_mavlink2(sysid)
        if signing_key is not None:
            self._mav.setup_signing(
                signing_key,
                sign_outgoing=True,
                allow_unsigned_callback=self._refuse_unverified,
                initial_timestamp=int((time.time() + signing_clock_offset_s - SIGNING_EPOCH_UNIX) * 100_000),
                link_id=signing_link_id,
            )
        self._gcs: Any = None
        self.forwarded_to_gcs: dict[str, int] = {}
        self.forwarded_to_payload: dict[str, int] = {}
        if gcs_port is not None:
            from pymavlink.dialects.v20 import ardupilotmega as mav2

            self._gcs = mavutil.mavlink_connection(f"udpout:127.0.0.1:{gcs_port}", source_system=sysid,
                                                   source_component=1)
            self._gcs.mav = mav2.MAVLink(self._gcs, srcSystem=sysid, srcComponent=1)  # reads both versions
            self._gcs.mav.robust_parsing = True
            self._gcs.first_byte = False
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._handlers: dict[str, Callable[[Any], None]] = {
            "PARAM_REQUEST_LIST": self._on_param_list,
            "PARAM_REQUEST_READ": self._on_param_read,
            "COMMAND_LONG": self._on_command,
            "TIMESYNC": self._on_timesync,
            "STATUSTEXT": self._on_statustext,
            "REQUEST_DATA_STREAM": self._on_request_data_stream,
        }

    def _default_intervals(self) -> dict[str, float]:
        out = {name: 1.0 / self.rate_hz for name in MESSAGE_NAMES.values()}
        out["SYSTEM_TIME"] = 1.0
        return out

    def _speak_mavlink2(self, sysid: int) -> None:
        """A MAVLink 2 parser/encoder whatever version pymavlink's globals are at, and no auto-switch."""
        from pymavlink.dialects.v20 import ardupilotmega as mav2

        self._mav.mav = mav2.MAVLink(self._mav, srcSystem=sysid, srcComponent=1)
        self._mav.mav.robust_parsing = True
        self._mav.WIRE_PROTOCOL_VERSION = "2.0"
        self._mav.first_byte = False

    # ------------------------------------------------------------ clock
    def boot_s(self, t_mono: float | None = None) -> float:
        return (time.monotonic() if t_mono is None else t_mono) - self.boot_start

    def _boot_ms(self) -> int:
        return int(self.boot_s() * 1000)

    # ------------------------------------------------------------ lifecycle
    def start(self) -> LiveVehicle:
        for target in (self._stream, self._receive, *([self._receive_gcs] if self._gcs is not None else [])):
            t = threading.Thread(target=target, daemon=True, name=f"live-vehicle-{target.__name__}")
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)
        self._mav.close()
        if self._gcs is not None:
            self._gcs.close()

    def __enter__(self) -> LiveVehicle:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ sending
    def _send(self, msg: Any) -> None:
        with self._lock:
            self._mav.mav.send(msg)
            if self._gcs is not None:
                self._gcs.write(bytes(msg.get_msgbuf()))
        self.sent_counts[msg.get_type()] = self.sent_counts.get(msg.get_type(), 0) + 1

    def _forward(self, msg: Any, conn: Any, counts: dict[str, int]) -> None:
        """Pass a packet on unchanged (its signature stays valid), as an autopilot routes between its ports."""
        with self._lock:
            conn.write(bytes(msg.get_msgbuf()))
        counts[msg.get_type()] = counts.get(msg.get_type(), 0) + 1

    def _receive_gcs(self) -> None:
        while not self._stop.is_set():
            try:
                msg = self._gcs.recv_match(blocking=True, timeout=0.1)
            except OSError:
                continue
            if msg is None or msg.get_type() == "BAD_DATA":
                continue
            if getattr(msg, "target_system", 0) == self.sysid and getattr(msg, "target_component", 0) == 1:
                continue  # the autopilot's own business: this double answers only the payload
            self._forward(msg, self._mav, self.forwarded_to_payload)

    def _heartbeat(self) -> None:
        self._send(
            self._mav.mav.heartbeat_encode(
                mavlink.MAV_TYPE_QUADROTOR,
                mavlink.MAV_AUTOPILOT_ARDUPILOTMEGA,
                mavlink.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED | mavlink.MAV_MODE_FLAG_SAFETY_ARMED,
                3,  # ArduCopter AUTO
                mavlink.MAV_STATE_ACTIVE,
            )
        )

    def _streamed(self) -> tuple[str, ...]:
        """The messages this vehicle streams right now (by its faults: GPS-denied, gimbal, paused)."""
        if self.paused:
            return ()
        if self.local_only:
            return ("LOCAL_POSITION_NED", "ATTITUDE") + (("EKF_STATUS_REPORT",) if self.ekf is not None else ())
        return ("GPS_RAW_INT", "GLOBAL_POSITION_INT", "ATTITUDE", "VFR_HUD", "SYSTEM_TIME") + (
            ("MOUNT_STATUS",) if self.gimbal_rpy_deg is not None else ())

    def _encode(self, name: str, boot_ms: int, s: VehicleState) -> Any:
        """One message of the state `s` at boot time `boot_ms`, with the faults switched on now."""
        m = self._mav.mav
        lat, lon = (0.0, 0.0) if self.zero_latlon else (s.lat, s.lon)
        ground_speed = math.hypot(s.vn, s.ve)
        if name == "ATTITUDE":
            roll, pitch, yaw = (math.nan,) * 3 if self.nan_attitude else (s.roll, s.pitch, s.yaw)
            return m.attitude_encode(boot_ms, roll, pitch, yaw, 0.0, 0.0, 0.0)
        if name == "GLOBAL_POSITION_INT":
            return m.global_position_int_encode(
                boot_ms, int(round(lat * 1e7)), int(round(lon * 1e7)), int(round(s.alt * 1000)),
                int(round((s.alt - self.home[2]) * 1000)), int(round(s.vn * 100)), int(round(s.ve * 100)),
                int(round(s.vd * 100)), int(math.degrees(s.yaw) % 360 * 100))
        if name == "GPS_RAW_INT":
            return m.gps_raw_int_encode(boot_ms * 1000, self.fix_type, int(lat * 1e7), int(lon * 1e7),
                                        int(s.alt * 1000), self.eph, 120, int(ground_speed * 100), 0, self.satellites)
        if name == "LOCAL_POSITION_NED":
            import pymap3d

            e, n, u = pymap3d.geodetic2enu(s.lat, s.lon, s.alt, *self.home)
            return m.local_position_ned_encode(boot_ms, float(n), float(e), float(-u), s.vn, s.ve, s.vd)
        if name == "EKF_STATUS_REPORT" and self.ekf is not None:
            flags, var = self.ekf
            return m.ekf_status_report_encode(flags, var, var, var, 0.05, 0.0)
        if name == "MOUNT_STATUS" and self.gimbal_rpy_deg is not None:
            gr, gp, gy = self.gimbal_rpy_deg
            return m.mount_status_encode(0, 0, int(gp * 100), int(gr * 100), int(gy * 100))
        if name == "VFR_HUD":
            return m.vfr_hud_encode(ground_speed, ground_speed, int(math.degrees(s.yaw) % 360), 50, s.alt, -s.vd)
        if name == "SYSTEM_TIME":
            return m.system_time_encode(int(time.time() * 1e6), boot_ms)
        return None

    def _stream(self) -> None:
        """Each message on its own schedule (due times advance by the interval, so the mean rate holds)."""
        next_hb = 0.0
        due: dict[str, float] = {}
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_hb:
                next_hb = now + 1.0
                self._heartbeat()
            names = [n for n in self._streamed() if self.intervals_s.get(n, -1.0) > 0]
            ready = [n for n in names if now >= due.get(n, 0.0)]
            if ready:
                boot_ms = self._boot_ms()
                state = self.trajectory(boot_ms / 1000.0)
                for name in ready:
                    msg = self._encode(name, boot_ms, state)
                    if msg is not None:
                        self._send(msg)
                    period = self.intervals_s[name]
                    # fall behind by at most one period (a stalled thread does not burst afterwards)
                    due[name] = max(due.get(name, now) + period, now)
            wake = min([due.get(n, now) for n in names] + [next_hb])
            self._stop.wait(min(max(wake - time.monotonic(), 0.001), 0.1))

    # ------------------------------------------------------------ receiving
    def _refuse_unverified(self, _mav: Any, _msg_id: int) -> bool:
        """ArduPilot's rule on a signing link: nothing unsigned or wrongly signed is accepted."""
        self.rejected_unverified += 1
        return False

    @property
    def signing_timestamp(self) -> int:
        """The vehicle's current signing timestamp (10 us units since 2015)."""
        return int(self._mav.mav.signing.timestamp)

    def _param_value(self, index: int) -> Any:
        name = f"TEST_PARAM_{index:02d}".encode()
        return self._mav.mav.param_value_encode(name, float(index), mavlink.MAV_PARAM_TYPE_REAL32, self.n_params, index)

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                msg = self._mav.recv_match(blocking=True, timeout=0.1)
            except OSError:
                continue
            if msg is None:
                continue
            self._count(msg)
            if self._gcs is not None and msg.get_type() != "BAD_DATA":
                self._forward(msg, self._gcs, self.forwarded_to_gcs)
            handler = self._handlers.get(msg.get_type())
            if handler is not None:
                handler(msg)

    def _count(self, msg: Any) -> None:
        name = msg.get_type()
        self.received_counts[name] = self.received_counts.get(name, 0) + 1
        if name == "BAD_DATA":
            return
        seen = self.received_signed if msg.get_signed() else self.received_unsigned
        seen[name] = seen.get(name, 0) + 1
        if msg.get_signed():
            self.received_link_ids.add(msg.get_link_id())

    def _on_param_list(self, _msg: Any) -> None:
        if self.answer_params:
            for i in range(self.n_params):
                self._send(self._param_value(i))

    def _on_param_read(self, msg: Any) -> None:
        if self.answer_params and 0 <= msg.param_index < self.n_params:
            self._send(self._param_value(msg.param_index))

    def _on_command(self, msg: Any) -> None:
        m = self._mav.mav
        if msg.command == MAV_CMD_SET_MESSAGE_INTERVAL and self.rate_requests != "fixed":
            self._on_set_message_interval(msg)
            return
        if msg.command == MAV_CMD_REQUEST_AUTOPILOT_CAPABILITIES:
            self._send(m.autopilot_version_encode(mavlink.MAV_PROTOCOL_CAPABILITY_MAVLINK2, ARDUPILOT_4_5_0, 0, 0, 0,
                                                  [0] * 8, [0] * 8, [0] * 8, 0, 0, 0))
        elif msg.command == MAV_CMD_GET_HOME_POSITION:
            lat, lon, alt = self.home
            self._send(m.home_position_encode(int(lat * 1e7), int(lon * 1e7), int(alt * 1000), 0, 0, 0, [1, 0, 0, 0],
                                              0, 0, 0))
        self._send(m.command_ack_encode(msg.command, mavlink.MAV_RESULT_ACCEPTED))

    def _on_set_message_interval(self, msg: Any) -> None:
        """ArduPilot's answer: param1 a message id, param2 microseconds (-1 stop, 0 the default)."""
        if self.rate_requests == "ignore":
            return
        if self.rate_requests == "unsupported":
            self._send(self._mav.mav.command_ack_encode(msg.command, mavlink.MAV_RESULT_UNSUPPORTED))
            return
        name = MESSAGE_NAMES.get(int(msg.param1))
        if name is None:
            self._send(self._mav.mav.command_ack_encode(msg.command, mavlink.MAV_RESULT_DENIED))
            return
        us = float(msg.param2)
        interval = self._default_intervals()[name] if us == 0 else (-1.0 if us < 0 else us / 1e6)
        self.intervals_s[name] = interval
        self.interval_requests.append((name, interval))
        self._send(self._mav.mav.command_ack_encode(msg.command, mavlink.MAV_RESULT_ACCEPTED))

    def _on_request_data_stream(self, msg: Any) -> None:
        """The old way: a stream group (0 = all) at a rate in Hz; stop, or rate 0, stops it. No answer is sent."""
        self.stream_requests.append((int(msg.req_stream_id), int(msg.req_message_rate), int(msg.start_stop)))
        if self.rate_requests == "fixed":
            return
        sid = int(msg.req_stream_id)
        groups = list(STREAM_GROUPS) if sid == 0 else [sid]
        on = msg.start_stop and msg.req_message_rate > 0
        for g in groups:
            for name in STREAM_GROUPS.get(g, ()):
                self.intervals_s[name] = 1.0 / msg.req_message_rate if on else -1.0

    def _on_timesync(self, msg: Any) -> None:
        if msg.tc1 == 0 and not self.paused:
            self._send(self._mav.mav.timesync_encode(int(self.boot_s() * 1e9), msg.ts1))

    def _on_statustext(self, msg: Any) -> None:
        text = msg.text if isinstance(msg.text, str) else msg.text.decode("ascii", "replace")
        self.statustexts.append((int(msg.severity), text.rstrip("\x00")))
