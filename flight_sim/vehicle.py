"""A MAVLink vehicle that the unchanged dronekit library connects to, driven by a Timeline.

`udp:HOST:PORT` sends to a client listening there (dronekit's `connect('udp:HOST:PORT')` listens);
`tcp:HOST:PORT` listens for clients (dronekit's `connect('tcp:HOST:PORT')` connects out). One
thread runs a select loop: it sends the timeline's messages when the shared SimClock reaches
them and answers what dronekit asks during `wait_ready` (parameters, capabilities), so the client
never hangs. Everything the clients send is recorded (`received()`, `statustexts()`) so tests
can check what the payload told the ground station.

`gcs`: a second, ground-station-side link (`udp:HOST:PORT` sends to a ground station listening there,
as QGroundControl does on 14550; `tcp:HOST:PORT` listens for one), routed the way ArduPilot routes
MAVLink between its ports: the vehicle's own stream goes to both sides; every packet a payload client
sends is forwarded to the ground station unchanged (signature included), so its camera component
appears there, except packets addressed to the autopilot or to a system not heard on the ground
station's side (the payload's own requests for telemetry); a ground station's packets go on to the
payload unless addressed to the autopilot alone, and those addressed to the autopilot (or to
everyone) are answered here.
Stream rates, as ArduPilot honours them (`rate_requests="ardupilot"`, the default): every type
streams at its recorded rate until a client sends MAV_CMD_SET_MESSAGE_INTERVAL for it (ACK
ACCEPTED); from then on it is sent at the requested interval, resampled from the recording
(flight_sim/resample.py: a tlog's positions and attitudes from its fitted trajectory,
flight_sim/trajectory.py), and its recorded messages are no longer sent (interval 0 restores them,
-1 stops the type). REQUEST_DATA_STREAM for a named group sets every recorded type of that group
the same way. MAV_DATA_STREAM_ALL (dronekit sends it at 4 Hz while connecting, a ground station's
stream-rate slider sends it) is recorded and leaves the recorded rates: the recorded rates are
what a replay is for. `"ignore"` never answers SET_MESSAGE_INTERVAL and `"unsupported"` answers it
UNSUPPORTED (a stack without it): both still honour REQUEST_DATA_STREAM, so a client's fallback
can be flown. `interval_requests`, `stream_requests` and `intervals` say what was asked and holds.
"""

from __future__ import annotations

import errno
import logging
import selectors
import socket
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any, Literal

from flight_sim import mav
from flight_sim.clock import AtEnd, SimClock
from flight_sim.errors import EndpointError
from flight_sim.resample import Resampler
from flight_sim.timeline import Event, Timeline

log = logging.getLogger(__name__)

MAV_CMD_REQUEST_AUTOPILOT_CAPABILITIES = 520
MAV_CMD_REQUEST_MESSAGE = 512
MAV_CMD_SET_MESSAGE_INTERVAL = 511
MAV_CMD_GET_HOME_POSITION = 410
MAV_RESULT_ACCEPTED, MAV_RESULT_FAILED, MAV_RESULT_UNSUPPORTED = 0, 4, 3
# MISSION_FLOAT, PARAM_FLOAT, MISSION_INT, COMMAND_INT, SET_ATTITUDE_TARGET, SET_POSITION_TARGET_LOCAL_NED,
# SET_POSITION_TARGET_GLOBAL_INT, TERRAIN, FLIGHT_TERMINATION, COMPASS_CALIBRATION (no MAVLINK2: we send v1)
CAPABILITIES = 1 | 2 | 4 | 8 | 64 | 128 | 256 | 512 | 2048 | 4096
ARDUPILOT_4_5_0 = (4 << 24) | (5 << 16) | (0 << 8) | 255
MAV_RESULT_DENIED = 2
RateRequests = Literal["ardupilot", "ignore", "unsupported"]
# ArduPilot's stream groups (MAV_DATA_STREAM id -> the streamed messages it covers)
STREAM_GROUPS: dict[int, tuple[str, ...]] = {
    2: ("GPS_RAW_INT",), 6: ("GLOBAL_POSITION_INT", "LOCAL_POSITION_NED"), 10: ("ATTITUDE",), 11: ("VFR_HUD",),
    12: ("SYSTEM_TIME", "EKF_STATUS_REPORT", "MOUNT_STATUS"),
}
MIN_INTERVAL_S = 0.002  # ArduPilot caps a message at 500 Hz


@dataclass(frozen=True)
class Received:
    """A message a client sent the vehicle."""

    t_mono: float
    sim_t: float
    name: str
    fields: dict[str, Any]
    src_system: int
    src_component: int


def parse_address(addr: str, what: str = "vehicle") -> tuple[str, str, int]:
    """('udp'|'tcp', host, port) from 'udp:HOST:PORT' / 'tcp:HOST:PORT' (also udpout:/tcpin:); `what` names the
    link in the error (the vehicle's, or the ground station's)."""
    kind, _, rest = addr.partition(":")
    kind = {"udp": "udp", "udpout": "udp", "tcp": "tcp", "tcpin": "tcp"}.get(kind.lower(), "")
    host, _, port_s = rest.rpartition(":")
    if not kind or not host or not port_s.isdigit() or not 0 < int(port_s) < 65536:
        raise EndpointError(
            f"bad {what} address {addr!r}; use udp:HOST:PORT (send to a client listening there, e.g. "
            "udp:127.0.0.1:14550) or tcp:HOST:PORT (listen for clients, e.g. tcp:127.0.0.1:5760)"
        )
    return kind, host, int(port_s)


class _Peer:
    """One client: where to send, and its own MAVLink parser (a stream may split packets).

    `gcs`: the peer is on the ground-station side (the second link), not the payload's."""

    def __init__(self, sock: socket.socket, addr: tuple[str, int] | None, gcs: bool = False) -> None:
        self.sock = sock
        self.addr = addr
        self.gcs = gcs
        self.parser = mav.new_parser()


class VehicleEndpoint:
    """Streams a Timeline as a live vehicle over UDP or TCP. Use as a context manager or start()/stop()."""

    def __init__(
        self,
        timeline: Timeline,
        out: str,
        speed: float = 1.0,
        start_s: float | None = None,
        end_s: float | None = None,
        at_end: AtEnd = "stop",
        wait_for_client: bool = False,
        hold_period_s: float = 1.0,
        clock: SimClock | None = None,
        restamp_time: bool = False,
        gcs: str | None = None,
        rate_requests: RateRequests = "ardupilot",
    ) -> None:
        """start_s None: where the vehicle's state is first complete (Timeline.ready_s).

        gcs: the ground-station-side link's address (udp:HOST:PORT or tcp:HOST:PORT), None for none.

        restamp_time: rewrite the autopilot clock fields (time_boot_ms, GPS time_usec, SYSTEM_TIME)
        to tick with the wall clock from the moment of sending. At speed x the recorded stamps
        advance x times faster than the payload's clock, which defeats a clock-offset estimator
        that assumes both clocks run at the same rate; with restamping they agree at any speed.
        """
        self.timeline = timeline
        if start_s is None:
            start_s = timeline.ready_s
        self.kind, self.host, self.port = parse_address(out)
        self.gcs = None if gcs is None else parse_address(gcs, "ground station (--gcs)")
        end = timeline.duration if end_s is None else min(float(end_s), timeline.duration)
        if start_s < 0 or start_s >= max(end, 1e-9) and timeline.duration > 0:
            raise EndpointError(
                f"start {start_s} s is outside the flight (0..{timeline.duration:.1f} s); choose a start inside it"
            )
        try:
            self.clock = clock or SimClock(speed, start_s, end, at_end)
        except ValueError as err:
            raise EndpointError(f"{err}; choose a speed between 0.1 and 50 and an end after the start") from None
        self.wait_for_client = wait_for_client
        self.hold_period_s = hold_period_s
        self.restamp_time = restamp_time
        self.rate_requests = rate_requests
        self.resampler = Resampler(timeline)
        self.intervals: dict[str, float] = {}  # type -> timeline seconds between sends; < 0 = stopped
        self._next_t: dict[str, float] = {}  # type -> timeline time of its next resampled send
        self.interval_requests: list[tuple[str, float]] = []
        self.stream_requests: list[tuple[int, int, int]] = []
        self._mono0 = time.monotonic()
        self._unix0 = time.time()
        self.encoder = mav.Encoder(timeline.sysid, timeline.compid)
        self.params = list(timeline.params)
        self._param_index = {p.name: i for i, p in enumerate(self.params)}
        self.sent_counts: Counter[str] = Counter()
        self.send_log: deque[tuple[float, float, str]] = deque(maxlen=200_000)
        self.last_sent: dict[str, dict[str, Any]] = {}
        self._received: deque[Received] = deque(maxlen=20_000)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.done = threading.Event()
        self._thread: threading.Thread | None = None
        self._sel = selectors.DefaultSelector()
        self._listener: socket.socket | None = None
        self._udp: socket.socket | None = None
        self._peers: list[_Peer] = []
        self._gcs_peers: list[_Peer] = []
        self._gcs_listener: socket.socket | None = None
        self.forwarded_to_gcs: Counter[str] = Counter()
        self.forwarded_to_payload: Counter[str] = Counter()
        self.gcs_received: Counter[str] = Counter()
        self._gcs_systems: set[int] = set()  # systems heard on the ground station's side: routes to it
        self.error: BaseException | None = None
        self._closed = False

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self) -> VehicleEndpoint:
        """Open the socket (EndpointError if the port is taken) and start streaming in a thread."""
        if self.kind == "tcp":
            srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                srv.bind((self.host, self.port))
            except OSError as err:
                srv.close()
                raise _bind_error("tcp", self.host, self.port, err) from None
            srv.listen(4)
            srv.setblocking(False)
            self._listener = srv
            self._sel.register(srv, selectors.EVENT_READ, "accept")
        else:
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                udp.bind((self.host if self.host not in ("localhost",) else "127.0.0.1", 0))
            except OSError as err:
                udp.close()
                raise EndpointError(f"udp:{self.host}:{self.port}: cannot send from {self.host} ({err})") from None
            udp.setblocking(False)
            self._udp = udp
            self._peers.append(_Peer(udp, (self.host, self.port)))
            self._sel.register(udp, selectors.EVENT_READ, "udp")
        if self.gcs is not None:
            self._open_gcs(*self.gcs)
        self._thread = threading.Thread(target=self._run_safe, name="flight-sim-vehicle", daemon=True)
        self._thread.start()
        return self

    def _open_gcs(self, kind: str, host: str, port: int) -> None:
        """The ground-station side: a UDP socket sending to HOST:PORT, or a TCP port a ground station connects to."""
        if kind == "tcp":
            srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                srv.bind((host, port))
            except OSError as err:
                srv.close()
                self.stop()
                raise _bind_error("tcp", host, port, err) from None
            srv.listen(4)
            srv.setblocking(False)
            self._gcs_listener = srv
            self._sel.register(srv, selectors.EVENT_READ, "gcs_accept")
            return
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1" if host in ("localhost", "127.0.0.1") else "", 0))
        udp.setblocking(False)
        peer = _Peer(udp, ("127.0.0.1" if host == "localhost" else host, port), gcs=True)
        self._gcs_peers.append(peer)
        self._sel.register(udp, selectors.EVENT_READ, peer)

    @property
    def gcs_url(self) -> str | None:
        """The ground-station link's address, None without one."""
        return None if self.gcs is None else f"{self.gcs[0]}:{self.gcs[1]}:{self.gcs[2]}"

    def stop(self) -> None:
        """Stop streaming and close every socket."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        if self._closed:
            return
        self._closed = True
        for key in list(self._sel.get_map().values()):
            try:
                key.fileobj.close()  # type: ignore[union-attr]
            except OSError:
                pass
        self._sel.close()

    def __enter__(self) -> VehicleEndpoint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_done(self, timeout: float | None = None) -> bool:
        """Block until a non-looping, non-holding flight has been sent to its end."""
        return self.done.wait(timeout)

    @property
    def url(self) -> str:
        return f"{self.kind}:{self.host}:{self.port}"

    # ---- what clients sent -----------------------------------------------------------------
    def received(self, name: str | None = None) -> list[Received]:
        """Messages clients sent (the newest 20,000), optionally of one type."""
        with self._lock:
            items = list(self._received)
        return [r for r in items if name is None or r.name == name]

    def statustexts(self) -> list[tuple[int, str]]:
        """(severity, text) of every STATUSTEXT the payload sent: its alerts to the ground station."""
        return [(r.fields["severity"], r.fields["text"]) for r in self.received("STATUSTEXT")]

    # ---- the loop ----------------------------------------------------------------------------
    def _run_safe(self) -> None:
        try:
            self._run()
        except BaseException as err:  # reported to the caller through .error and done
            log.exception("vehicle endpoint stopped by an error")
            self.error = err
        finally:
            self.done.set()

    def _run(self) -> None:
        tl, clock = self.timeline, self.clock
        events = tl.events
        first_idx = tl.index_at(clock.start_s)
        end_idx = tl.index_at(clock.end_s)
        idx = first_idx
        lap = 0
        next_idle = 0.0
        next_hold = 0.0
        if not self.wait_for_client:
            clock.begin()
            self._send_state(clock.start_s)
        while not self._stop.is_set():
            now = time.monotonic()
            timeout = 0.1
            if not clock.started:
                if now >= next_idle:  # announce ourselves so a client can find us, frozen at the start
                    self._send_state(clock.start_s)
                    next_idle = now + 1.0
                timeout = min(timeout, next_idle - now)
            else:
                cur_lap = clock.lap(now)
                if cur_lap != lap:
                    while idx < end_idx:  # finish the lap this loop iteration came late for
                        self._send_recorded(events[idx], now)
                        idx += 1
                    lap, idx = cur_lap, first_idx
                    self._next_t.clear()
                    self._send_state(clock.start_s)
                t = clock.now(now)
                while idx < end_idx and events[idx].t <= t:
                    self._send_recorded(events[idx], now)
                    idx += 1
                if not clock.finished(now):
                    due = self._send_resampled(t, now)
                    if due is not None:
                        timeout = min(timeout, clock.wall_at(due, lap) - now)
                if idx >= end_idx and clock.finished(now):
                    if clock.at_end == "stop":
                        self.done.set()
                        log.info("flight sent to its end (t=%.1f s)", clock.end_s)
                        break
                    if clock.at_end == "hold" and now >= next_hold:
                        self._send_state(clock.end_s)
                        next_hold = now + self.hold_period_s
                        timeout = min(timeout, self.hold_period_s)
                elif idx < end_idx:
                    timeout = min(timeout, clock.wall_at(events[idx].t, lap) - now)
                else:
                    timeout = min(timeout, clock.wall_at(clock.end_s, lap) - now)
            for key, _ in self._sel.select(max(timeout, 0.0)):
                self._on_readable(key)

    def _send_state(self, t: float) -> None:
        """Send the latest message of every streamed type at time t (a client joining mid-flight)."""
        state = self.timeline.state_at(t)
        now = time.monotonic()
        for e in sorted(state.values(), key=lambda e: e.t):
            self._send_event(e, now)

    def _send_recorded(self, e: Event, now: float) -> None:
        """A recorded message, unless a client asked for its type at another interval (then resampled)."""
        if e.name not in self.intervals:
            self._send_event(e, now)

    def _send_resampled(self, t: float, now: float) -> float | None:
        """Send every requested type that is due at timeline time t; the earliest next due time."""
        nxt: float | None = None
        for name, interval in list(self.intervals.items()):
            if interval <= 0:
                continue
            due = self._next_t.get(name, t)
            if t >= due:
                fields = self.resampler.fields_at(name, t)
                if fields is not None:
                    self._send_event(Event(t, name, fields), now)
                # fall behind by at most one interval: a stalled loop does not burst afterwards
                due = max(due + interval, t)
                self._next_t[name] = due
            nxt = due if nxt is None else min(nxt, due)
        return nxt

    def _send_event(self, e: Event, now: float) -> None:
        fields = _restamped(e.name, e.fields, now - self._mono0, self._unix0) if self.restamp_time else e.fields
        self._send(e.name, fields)
        self.send_log.append((now, e.t, e.name))

    def _send(self, name: str, fields: dict[str, Any], peer: _Peer | None = None) -> None:
        data = self.encoder.pack(name, fields)
        self.sent_counts[name] += 1
        self.last_sent[name] = fields
        for p in [peer] if peer is not None else [*self._peers, *self._gcs_peers]:
            self._write(p, data)

    def _write(self, p: _Peer, data: bytes) -> None:
        try:
            if p.addr is not None and p.sock.type == socket.SOCK_DGRAM:
                p.sock.sendto(data, p.addr)
            else:
                p.sock.sendall(data)
        except (BlockingIOError, ConnectionRefusedError):
            pass  # UDP with nobody listening yet, or a full buffer: telemetry is lossy anyway
        except OSError as err:
            if p.sock.type == socket.SOCK_STREAM:
                log.info("client %s gone (%s)", p.addr, err)
                self._drop(p)

    def _drop(self, p: _Peer) -> None:
        peers = self._gcs_peers if p.gcs else self._peers
        if p in peers:
            peers.remove(p)
            try:
                self._sel.unregister(p.sock)
            except (KeyError, ValueError):
                pass
            p.sock.close()

    def _accept(self, listener: socket.socket, gcs: bool) -> None:
        try:
            conn, addr = listener.accept()
        except BlockingIOError:
            return
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.settimeout(2.0)
        peer = _Peer(conn, None, gcs=gcs)
        (self._gcs_peers if gcs else self._peers).append(peer)
        self._sel.register(conn, selectors.EVENT_READ, peer)
        log.info("%s connected from %s:%s", "ground station" if gcs else "client", *addr[:2])
        if gcs:
            self._send_state(self.clock.now() if self.clock.started else self.clock.start_s)
            return
        if not self.clock.started:
            self.clock.begin()
        self._send_state(self.clock.now())

    def _on_readable(self, key: selectors.SelectorKey) -> None:
        if key.data in ("accept", "gcs_accept"):
            gcs = key.data == "gcs_accept"
            listener = self._gcs_listener if gcs else self._listener
            assert listener is not None
            self._accept(listener, gcs)
            return
        if key.data == "udp" or (isinstance(key.data, _Peer) and key.data.sock.type == socket.SOCK_DGRAM):
            peer = self._peers[0] if key.data == "udp" else key.data
            try:
                data, _addr = peer.sock.recvfrom(65536)
            except (BlockingIOError, ConnectionRefusedError, OSError):
                return
        else:
            peer = key.data
            try:
                data = peer.sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                log.info("client disconnected")
                self._drop(peer)
                return
        msgs = peer.parser.parse_buffer(data) or []
        for msg in msgs:
            if msg.get_type() == "BAD_DATA":
                continue
            if peer.gcs:
                self._from_gcs(peer, msg)
            else:
                if self._routes_to_gcs(msg):
                    self._forward(msg, self._gcs_peers, self.forwarded_to_gcs)
                self._on_message(peer, msg)

    def _routes_to_gcs(self, msg: Any) -> bool:
        """ArduPilot's rule: a broadcast goes everywhere, a targeted packet only where its system was heard."""
        target = getattr(msg, "target_system", 0)
        return target == 0 or target in self._gcs_systems

    def _forward(self, msg: Any, peers: list[_Peer], counts: Counter[str]) -> None:
        """Pass a packet on unchanged, as an autopilot routes between its ports (a signature stays valid)."""
        if not peers:
            return
        data = bytes(msg.get_msgbuf())
        for p in list(peers):
            self._write(p, data)
        counts[msg.get_type()] += 1

    def _from_gcs(self, peer: _Peer, msg: Any) -> None:
        """A ground station's packet: on to the payload unless addressed to the autopilot alone; answered here
        when addressed to the autopilot or to everyone."""
        self.gcs_received[msg.get_type()] += 1
        self._gcs_systems.add(msg.get_srcSystem())
        sysid, compid = self.timeline.sysid, self.timeline.compid
        target_sys = getattr(msg, "target_system", 0)
        target_comp = getattr(msg, "target_component", 0)
        if not (target_sys == sysid and target_comp == compid):
            self._forward(msg, self._peers, self.forwarded_to_payload)
        if target_sys in (0, sysid) and target_comp in (0, compid):
            self._on_message(peer, msg)

    def _addressed_to_us(self, fields: dict[str, Any]) -> bool:
        """To this autopilot or to everyone; not to another system, nor to another component (the payload's
        camera: routed, not answered here)."""
        return (fields.get("target_system", 0) in (0, self.timeline.sysid)
                and fields.get("target_component", 0) in (0, self.timeline.compid))

    def _on_message(self, peer: _Peer, msg: Any) -> None:
        name = msg.get_type()
        if not self.clock.started and not peer.gcs:
            self.clock.begin()
        try:
            fields = mav.fields_of(msg)
        except KeyError:  # a MAVLink 2-only message: keep what pymavlink decoded
            fields = msg.to_dict()
            fields.pop("mavpackettype", None)
        if not peer.gcs:  # what the payload sent (tests read it as what the ground station was told)
            rec = Received(time.monotonic(), self.clock.now(), name, fields, msg.get_srcSystem(),
                           msg.get_srcComponent())
            with self._lock:
                self._received.append(rec)
        if name == "STATUSTEXT":
            log.info("payload says (severity %s): %s", fields.get("severity"), fields.get("text"))
        if not self._addressed_to_us(fields):
            return
        if name == "REQUEST_DATA_STREAM":
            self._on_request_data_stream(fields)
        elif name.startswith("PARAM_"):
            self._on_param(peer, name, fields)
        elif name == "COMMAND_LONG":
            self._on_command(peer, fields)
        elif name == "TIMESYNC" and int(fields["tc1"]) == 0:
            # a clock-sync request: answer with our boot clock (ns), echoing the sender's stamp
            self._send("TIMESYNC", {"tc1": int(self.boot_s_now() * 1e9), "ts1": int(fields["ts1"])}, peer)

    def boot_s_now(self, now: float | None = None) -> float:
        """The autopilot's boot clock (seconds) at time.monotonic() `now` (default: now), as its time_boot_ms
        fields tell it; the camera stamps its true exposure times with it."""
        now = time.monotonic() if now is None else now
        if self.restamp_time:
            return RESTAMP_BOOT_MS / 1000.0 + (now - self._mono0)
        t = self.clock.now(now)
        for name in ("ATTITUDE", "GLOBAL_POSITION_INT", "SYSTEM_TIME"):
            e = self.timeline.latest(name, t)
            if e is not None:
                return e.fields["time_boot_ms"] / 1000.0 + (t - e.t)
        return t

    def _send_param(self, i: int, peer: _Peer) -> None:
        p = self.params[i]
        self._send(
            "PARAM_VALUE",
            {
                "param_id": p.name,
                "param_value": p.value,
                "param_type": p.type,
                "param_count": len(self.params),
                "param_index": i,
            },
            peer,
        )

    def _on_param(self, peer: _Peer, name: str, fields: dict[str, Any]) -> None:
        """PARAM_REQUEST_LIST, PARAM_REQUEST_READ and PARAM_SET, answered as an autopilot does (PARAM_VALUE)."""
        if name == "PARAM_REQUEST_LIST":
            for i in range(len(self.params)):
                self._send_param(i, peer)
        elif name == "PARAM_REQUEST_READ":
            i = int(fields["param_index"])
            if i < 0:
                i = self._param_index.get(fields["param_id"], -1)
            if 0 <= i < len(self.params):
                self._send_param(i, peer)
        elif name == "PARAM_SET":
            i = self._param_index.get(fields["param_id"], -1)
            if i >= 0:
                old = self.params[i]
                self.params[i] = type(old)(old.name, float(fields["param_value"]), old.type)
                self._send_param(i, peer)

    def _on_command(self, peer: _Peer, f: dict[str, Any]) -> None:
        cmd = int(f["command"])
        result = MAV_RESULT_UNSUPPORTED
        if cmd == MAV_CMD_REQUEST_AUTOPILOT_CAPABILITIES or (
            cmd == MAV_CMD_REQUEST_MESSAGE and int(f["param1"]) == 148
        ):
            self._send("AUTOPILOT_VERSION", self._autopilot_version(), peer)
            result = MAV_RESULT_ACCEPTED
        elif cmd == MAV_CMD_GET_HOME_POSITION or (cmd == MAV_CMD_REQUEST_MESSAGE and int(f["param1"]) == 242):
            home = self.timeline.latest("HOME_POSITION", self.clock.now())
            if home is not None:
                self._send("HOME_POSITION", home.fields, peer)
                result = MAV_RESULT_ACCEPTED
            else:
                result = MAV_RESULT_FAILED
        elif cmd == MAV_CMD_SET_MESSAGE_INTERVAL:
            if self.rate_requests == "ignore":
                return  # a stack that drops the command: no answer at all
            result = MAV_RESULT_UNSUPPORTED if self.rate_requests == "unsupported" else self._set_interval(f)
        self._send("COMMAND_ACK", {"command": cmd, "result": result}, peer)

    def _set_interval(self, f: dict[str, Any]) -> int:
        """MAV_CMD_SET_MESSAGE_INTERVAL: param1 the message id, param2 microseconds (0 recorded rate, -1 stop)."""
        name = mav.message_name(int(f["param1"]))
        if name is None:
            return MAV_RESULT_DENIED
        us = float(f["param2"])
        self.interval_requests.append((name, us / 1e6))
        if us == 0:
            self.intervals.pop(name, None)
        else:
            self.intervals[name] = -1.0 if us < 0 else max(us / 1e6, MIN_INTERVAL_S) * self._vehicle_second()
        self._next_t.pop(name, None)
        return MAV_RESULT_ACCEPTED

    def _vehicle_second(self) -> float:
        """Timeline seconds per second of the vehicle's own clock: a restamped clock ticks with the wall, so at
        speed x a requested 40 ms is 40 ms of wall time (x * 40 ms of timeline); otherwise timeline time."""
        return self.clock.speed if self.restamp_time else 1.0

    def _on_request_data_stream(self, f: dict[str, Any]) -> None:
        """REQUEST_DATA_STREAM: a named group's recorded types at the rate asked (ALL: recorded only)."""
        sid, hz, on = int(f["req_stream_id"]), int(f["req_message_rate"]), int(f["start_stop"])
        self.stream_requests.append((sid, hz, on))
        for name in STREAM_GROUPS.get(sid, ()):
            if self.resampler.has(name):
                self.intervals[name] = self._vehicle_second() / hz if on and hz > 0 else -1.0
                self._next_t.pop(name, None)

    def _autopilot_version(self) -> dict[str, Any]:
        if self.timeline.autopilot_version is not None:
            return self.timeline.autopilot_version
        return {
            "capabilities": CAPABILITIES,
            "flight_sw_version": ARDUPILOT_4_5_0,
            "uid": self.timeline.sysid,
            "vendor_id": 0,
            "product_id": 0,
        }


RESTAMP_BOOT_MS = 60_000  # a restamped autopilot "booted" a minute before the endpoint started


def _restamped(name: str, fields: dict[str, Any], since_start_s: float, unix0: float) -> dict[str, Any]:
    """A copy of `fields` with the autopilot's clock fields set from the wall clock."""
    out = dict(fields)
    if "time_boot_ms" in out:
        out["time_boot_ms"] = RESTAMP_BOOT_MS + int(since_start_s * 1000)
    if name == "GPS_RAW_INT":
        out["time_usec"] = int((unix0 + since_start_s) * 1e6)
    if name == "SYSTEM_TIME":
        out["time_unix_usec"] = int((unix0 + since_start_s) * 1e6)
    return out


def _bind_error(kind: str, host: str, port: int, err: OSError) -> EndpointError:
    if err.errno == errno.EADDRINUSE:
        return EndpointError(
            f"{kind}:{host}:{port}: port {port} is already in use (another flight-sim, SITL or ground station?); "
            f"stop that program or choose another port"
        )
    return EndpointError(
        f"{kind}:{host}:{port}: cannot listen there ({err.strerror}); use a local address and a free port"
    )
