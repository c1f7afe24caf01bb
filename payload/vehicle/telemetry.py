"""The MAVLink link to the flight controller, through dronekit, feeding the pose buffer.

Why not plain `dronekit.connect(..., wait_ready=True)`: it can wait forever (for a first
heartbeat with a valid mode, and for parameters that a vehicle never sends), and when its own
timeout fires the caller never gets the half-open connection to close. Here the same steps run in
a worker thread with the objects kept where the caller can close them, so the connect timeout is
real, and the failure message says which step the vehicle never completed.

The listeners only decode messages into samples (payload/vehicle/poseinterp.py holds the time logic).
A supervisor thread watches the link: silence longer than `link_timeout_s` marks it lost; a dead
or long-silent link is closed and reopened with a growing back-off, keeping the pose history
(time_boot_ms carries on unless the autopilot rebooted, which the buffer detects).

At every connect, after a silence the link came back from, and after an autopilot reboot, the
payload asks for the stream rates geotagging needs (payload/vehicle/rates.py) and measures what
arrives; `summary()["rates"]` reports both (the preflight block and run_stats.json show it).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from payload.errors import TelemetryError
from payload.keyfile import read_signing_key
from payload.settings.telemetry import TelemetrySection
from payload.types import CommandHandler, ComponentLink
from payload.vehicle.component import MavComponent
from payload.vehicle.decoders import DECODERS, Rx
from payload.vehicle.mavpatch import diagnose_handshake, frame_udp_datagrams, release_handshake
from payload.vehicle.poseinterp import PoseEstimate, StateBuffer
from payload.vehicle.rates import MAV_CMD_SET_MESSAGE_INTERVAL, RateMeter, RateRequest, floors, wanted_rates
from payload.vehicle.signing import LinkSigning, use_mavlink2

log = logging.getLogger(__name__)

MAV_CMD_GET_HOME_POSITION = 410
MAV_CMD_REQUEST_MESSAGE = 512
MSG_GPS_GLOBAL_ORIGIN = 49
# dronekit's default wait_ready set; a GPS-denied vehicle may send no GPS_RAW_INT at all (gps_0 never fills)
_READY_GLOBAL = ("parameters", "gps_0", "armed", "mode", "attitude")
_READY_LOCAL = ("parameters", "armed", "mode", "attitude")


def _normalise_connection(conn: str) -> str:
    """Accept `serial:/dev/ttyX` as well as dronekit's own forms."""
    conn = conn.strip()
    if conn.startswith("serial:"):
        return conn[len("serial:") :]
    return conn


def _close_quietly(obj: Any) -> None:
    if obj is None:
        return
    try:
        obj.close()
    except Exception as err:  # noqa: BLE001 - closing a broken link must not raise over the real error
        log.debug("closing telemetry link: %s", err)


def open_vehicle(
    connection: str,
    *,
    baud: int = 115200,
    timeout_s: float = 30.0,
    source_system: int = 255,
    source_component: int = 0,
    on_created: Any = None,
    ready: tuple[str, ...] = _READY_GLOBAL,
) -> Any:
    """dronekit's connect(wait_ready=True) with a timeout that holds, returning the Vehicle.

    `on_created(vehicle)` runs before the handshake so listeners see the first messages. `ready` is
    the dronekit attributes to wait for (without gps_0 for a GPS-denied vehicle).
    Raises TelemetryError naming the connection, the step that failed and what to check.
    """
    from dronekit import Vehicle
    from dronekit.mavlink import MAVConnection

    conn = _normalise_connection(connection)
    holder: dict[str, Any] = {}
    done = threading.Event()
    t0 = time.monotonic()

    def work() -> None:
        try:
            handler = MAVConnection(conn, baud=baud, source_system=source_system, source_component=source_component)
            holder["handler"] = handler
            vehicle = Vehicle(handler)
            holder["vehicle"] = vehicle
            if on_created is not None:
                on_created(vehicle)
            vehicle.initialize(rate=4, heartbeat_timeout=timeout_s)
            remaining = max(0.1, timeout_s - (time.monotonic() - t0))
            vehicle.wait_ready(*ready, timeout=remaining, raise_exception=True)
            holder["ok"] = True
        except BaseException as err:  # noqa: BLE001 - reported to the caller below
            holder["error"] = err
        finally:
            done.set()

    worker = threading.Thread(target=work, name="telemetry-connect", daemon=True)
    worker.start()
    finished = done.wait(timeout_s)
    if finished and holder.get("ok"):
        return holder["vehicle"]
    why = diagnose_handshake(holder.get("vehicle"))
    err = holder.get("error")
    # close what was opened so that a retry can bind the same port; the worker (stuck inside
    # dronekit's handshake loops if it timed out) is a daemon and finds a dead link
    _close_quietly(holder.get("handler"))
    release_handshake(holder.get("vehicle"))
    if isinstance(err, TelemetryError):  # raised by on_created (e.g. signing could not be installed)
        raise TelemetryError(str(err)) from None
    if isinstance(err, ModuleNotFoundError) and err.name == "serial":
        raise TelemetryError(
            f"telemetry: '{connection}' is a serial link, and pymavlink needs the pyserial package for "
            f"those, which is not installed; install pyserial (pip install pyserial==3.5) or use a "
            f"udp:/tcp: connection (e.g. through mavlink-router)"
        ) from None
    if err is not None and holder.get("vehicle") is None:
        raise TelemetryError(
            f"telemetry: cannot open '{connection}': {err}. Check telemetry.connection "
            f"(udp:HOST:PORT to listen, udpout:HOST:PORT, tcp:HOST:PORT, or a serial device with telemetry.baud)"
        ) from None
    raise TelemetryError(
        f"telemetry: no usable MAVLink vehicle on '{connection}' within {timeout_s:g} s: {why}. "
        f"Check that the autopilot is powered and streaming on that link (and the baud rate for serial), "
        f"or raise telemetry.connect_timeout_s"
    ) from None


class Telemetry:
    """A supervised dronekit link whose listeners feed a StateBuffer; `state_at` reads it."""

    def __init__(self, cfg: TelemetrySection, *, mavlink2: bool = False) -> None:
        """`mavlink2`: parse MAVLink 2 from the first packet, for components of ours (the camera protocol's
        messages and a ground station's commands to it are MAVLink 2 only); signing implies it."""
        self.cfg = cfg
        self._mavlink2 = mavlink2
        self._components: list[MavComponent] = []
        origin = None if cfg.origin is None else (cfg.origin.lat, cfg.origin.lon, cfg.origin.alt)
        self.buffer = StateBuffer(horizon_s=cfg.buffer_s, gps_lag_s=cfg.gps_lag_s, frame=cfg.frame,
                                  frame_name=cfg.frame_name, origin=origin)
        self._vehicle: Any = None
        self._vehicle_lock = threading.Lock()
        self._stop = threading.Event()
        self._supervisor: threading.Thread | None = None
        self._last_rx_mono: float | None = None
        self._timesync_pending: dict[int, float] = {}
        # Pinned from the config when given, so a spoofed HEARTBEAT heard first cannot take the link over.
        self._system_id: int | None = cfg.vehicle_sysid
        self.signing: LinkSigning | None = None
        if cfg.signing is not None:
            try:
                key = read_signing_key(cfg.signing.key_file, cfg.signing.key_format)
            except ValueError as err:  # the file changed since the config was checked
                raise TelemetryError(f"telemetry.signing.key_file: {err}") from None
            self.signing = LinkSigning(key, cfg.signing.link_id, cfg.signing.allow_unsigned)
        self.signed_from_vehicle = 0
        self.unsigned_past_parser = 0
        self._last_signed_mono: float | None = None
        self._connecting_master: Any = None
        self.connect_time_s: float | None = None
        self.link_lost_count = 0
        self.reconnect_count = 0
        self.last_error: str | None = None
        self._lost = False
        self._rates = RateRequest(wanted_rates(cfg.rates, cfg.frame), cfg.rates.ack_timeout_s)
        self.rate_meter = RateMeter(cfg.rates.measure_s)
        self.rate_requests = 0  # rounds sent: connect, reconnect, link back, reboot
        self._reboots_seen = 0
        self._closed_mono: float | None = None  # rates are reported as they were when the link closed

    # ------------------------------------------------------------ lifecycle
    @property
    def vehicle(self) -> Any:
        """The dronekit Vehicle (None while disconnected)."""
        with self._vehicle_lock:
            return self._vehicle

    def connect(self) -> None:
        """Open the link (raises TelemetryError after cfg.connect_timeout_s)."""
        if not self.cfg.connection:
            raise TelemetryError(
                "telemetry: no connection configured; set telemetry.connection (e.g. udp:127.0.0.1:14550)"
            )
        if self.signing is not None or self._mavlink2:
            use_mavlink2()  # before the connection exists: its parser must be MAVLink 2 from the start
        t0 = time.monotonic()
        before = None if self.signing is None else self.signing.counters()
        self._connecting_master = None
        try:
            vehicle = open_vehicle(
                self.cfg.connection,
                baud=self.cfg.baud,
                timeout_s=self.cfg.connect_timeout_s,
                source_system=self.cfg.source_system,
                source_component=self.cfg.source_component,
                on_created=self._attach,
                ready=_READY_GLOBAL if self.cfg.frame == "global" else _READY_LOCAL,
            )
        except TelemetryError as err:
            hint = self._signing_hint(before)
            if hint:
                raise TelemetryError(f"{err}. {hint}") from None
            raise
        self.connect_time_s = time.monotonic() - t0
        self._connecting_master = None
        if self.cfg.vehicle_sysid is None:
            self._system_id = getattr(vehicle, "_heartbeat_system", None)
        with self._vehicle_lock:
            self._vehicle = vehicle
        self._lost = False
        log.info("telemetry: connected to %s in %.2f s", self.cfg.connection, self.connect_time_s)
        self._request_home()
        self.request_rates("connect")

    def start(self) -> None:
        """Connect, then supervise the link in the background until `close()`."""
        self.connect()
        self._supervisor = threading.Thread(target=self._supervise, name="telemetry-supervisor", daemon=True)
        self._supervisor.start()

    def start_background(self) -> None:
        """Supervise (and keep trying to connect) without blocking the caller on the first connect."""
        self._supervisor = threading.Thread(
            target=self._supervise, kwargs={"connect_first": True}, name="telemetry-supervisor", daemon=True
        )
        self._supervisor.start()

    def close(self) -> None:
        """Stop supervising and close the link."""
        for comp in self._components:
            comp.close()
        self._stop.set()
        self._closed_mono = time.monotonic()
        if self._supervisor is not None:
            self._supervisor.join(timeout=self.cfg.connect_timeout_s + 5)
        with self._vehicle_lock:
            vehicle, self._vehicle = self._vehicle, None
        _close_quietly(vehicle)

    # ------------------------------------------------------------ reading
    def state_at(self, t_mono: float) -> PoseEstimate | None:
        """Vehicle state at companion time `t_mono` (None before any position and attitude)."""
        return self.buffer.state_at(t_mono)

    def last_rx_age_s(self, now: float | None = None) -> float | None:
        if self._last_rx_mono is None:
            return None
        return (time.monotonic() if now is None else now) - self._last_rx_mono

    @property
    def system_id(self) -> int | None:
        """The vehicle's MAVLink system id: the config's, else its first heartbeat's (None before one)."""
        return self._system_id

    @property
    def link_ok(self) -> bool:
        age = self.last_rx_age_s()
        return self.vehicle is not None and age is not None and age <= self.cfg.link_timeout_s

    def summary(self) -> dict[str, Any]:
        """The link's health for logs and the preflight block."""
        gps = self.buffer.latest_gps()
        age = self.last_rx_age_s()
        return {
            "connection": self.cfg.connection,
            "link_ok": self.link_ok,
            "connect_time_s": self.connect_time_s,
            "last_message_age_s": None if age is None else round(age, 3),
            "clock_offset_source": self.buffer.clock.source,
            "fix_type": None if gps is None else gps.fix_type,
            "hdop": None if gps is None else gps.hdop,
            "satellites": None if gps is None else gps.satellites,
            "home": self.buffer.home,
            "frame": self.cfg.frame,
            "frame_name": self.cfg.frame_name,
            "origin": self.buffer.origin,
            "estimator": self._estimator_summary(),
            "link_lost_count": self.link_lost_count,
            "reconnect_count": self.reconnect_count,
            "samples": self.buffer.counts(),
            "signing": self._signing_summary(),
            "components": [c.summary() for c in self._components],
            "rates": self.rates_summary(),
        }

    def rates_summary(self) -> dict[str, Any]:
        """What was asked for, how (and why a fallback), and what arrives per message type."""
        r = self._rates
        now = self._closed_mono or time.monotonic()
        return {
            "requested": self.cfg.rates.request,
            "method": r.method if not r.pending else "waiting for COMMAND_ACK",
            "fallback_reason": r.fallback_reason,
            "rounds": self.rate_requests,
            "wanted_hz": dict(r.want),
            "floors_hz": floors(self.cfg.rates, self.cfg.frame),
            "window_s": self.rate_meter.window_s,
            "settle_s": self.cfg.rates.ack_timeout_s + self.rate_meter.window_s,
            "measured_for_s": round(self.rate_meter.covered_s(now), 2),
            "measured": self.rate_meter.summary(now),
        }

    def _estimator_summary(self) -> dict[str, Any] | None:
        h = self.buffer.latest_estimator()
        if h is None:
            return None
        return {"source": h.source, "flags": h.flags, "rel_horiz_ok": h.rel_horiz_ok,
                "velocity_variance": h.velocity_variance, "pos_horiz_variance": h.pos_horiz_variance,
                "pos_vert_variance": h.pos_vert_variance}

    def _signing_hint(self, before: dict[str, int] | None) -> str:
        """Why a connect failed when signing is the reason: a key on one side only, or two different keys."""
        if self.signing is None:
            master = self._connecting_master
            state = getattr(getattr(master, "mav", None), "signing", None)
            if state is not None and getattr(state, "sig_count", 0) > 0:
                return ("The vehicle signs its packets (MAVLink 2 signing) and so ignores ours, which are not: set "
                        "telemetry.signing.key_file to the autopilot's signing key")
            return ""
        now = self.signing.counters()
        d = {k: now[k] - (before or {}).get(k, 0) for k in now}
        if d["accepted_signed"] > 0:
            return ""
        if d["rejected_bad_signature"]:
            return (f"Signing: {d['rejected_bad_signature']} packets arrived signed with another key and were "
                    f"dropped: telemetry.signing.key_file does not hold the autopilot's key")
        if d["rejected_unsigned"]:
            return (f"Signing: {d['rejected_unsigned']} unsigned packets were dropped: set up signing on the "
                    f"autopilot with the same key (MAVProxy `signing setup <passphrase>`), or set "
                    f"telemetry.signing.allow_unsigned: true while migrating (no spoofing protection)")
        if d["rejected_replay"]:
            return (f"Signing: {d['rejected_replay']} packets carried old signing timestamps (replayed, or the "
                    f"autopilot's clock is far behind and it has not heard our signed packets yet)")
        return ""

    def _signing_summary(self) -> dict[str, Any] | None:
        """Signing state and counters; None when telemetry.signing is not configured. Never the key."""
        sig = self.signing
        if sig is None:
            return None
        last = self._last_signed_mono
        return {
            "link_id": sig.link_id,
            "allow_unsigned": sig.allow_unsigned,
            "active": sig.installs > 0,
            "signed_from_vehicle": self.signed_from_vehicle,
            "last_signed_age_s": None if last is None else round(time.monotonic() - last, 3),
            "rejected": sig.rejected,
            **sig.counters(),
            "unsigned_past_parser": self.unsigned_past_parser,
        }

    def open_component(self, component_id: int, mav_type: int, on_command: CommandHandler) -> ComponentLink:
        """A component of ours beside the autopilot (types.py `ComponentHost`): it sends with the vehicle's
        system id, heartbeats at 1 Hz while the link is up, and answers the COMMAND_LONGs addressed to it."""
        if not self._mavlink2 and self.signing is None:
            self._mavlink2 = True
            if self.vehicle is not None:
                log.warning("telemetry: a MAVLink component was added after the link opened with a MAVLink 1 "
                            "parser: a ground station's MAVLink 2 commands to it are lost until the link reconnects")
        comp = MavComponent(component_id, mav_type, on_command, lambda: self._system_id, self.signing)
        self._components.append(comp)
        vehicle = self.vehicle
        if vehicle is not None:
            comp.attach(vehicle)
        return comp

    def send_statustext(self, severity: int, text: str) -> bool:
        """Send a STATUSTEXT to the ground station through the autopilot; False without a link."""
        vehicle = self.vehicle
        if vehicle is None:
            return False
        msg = vehicle.message_factory.statustext_encode(int(severity), text.encode("ascii", "replace")[:50])
        vehicle.send_mavlink(msg)
        return True

    # ------------------------------------------------------------ listeners
    def _attach(self, vehicle: Any) -> None:
        # runs before dronekit starts reading the link: no packet has been parsed yet
        self._connecting_master = vehicle._handler.master
        if self.signing is not None:
            self.signing.install(vehicle._handler.master)
        for comp in self._components:
            comp.attach(vehicle)
        frame_udp_datagrams(vehicle)
        vehicle.add_message_listener("*", self._on_any)
        vehicle.add_message_listener("COMMAND_LONG", self._on_command_long)
        vehicle.add_message_listener("COMMAND_ACK", self._on_ack)
        for name in DECODERS:
            vehicle.add_message_listener(name, self._on_message)

    def _unsigned_refused(self, msg: Any) -> bool:
        """With signing enforced, an unsigned message is not believed, even if the parser let it through
        (RADIO_STATUS from a radio, which cannot sign): a second line behind the parser's check."""
        sig = self.signing
        return sig is not None and not sig.allow_unsigned and not msg.get_signed()

    def _on_any(self, _vehicle: Any, _name: str, msg: Any) -> None:
        if self._system_id is None or msg.get_srcSystem() == self._system_id:
            if self._unsigned_refused(msg):
                return
            now = time.monotonic()
            self._last_rx_mono = now
            self.rate_meter.on_message(_name, now)
            if self.signing is not None and msg.get_signed():
                self.signed_from_vehicle += 1
                self._last_signed_mono = now

    def _on_command_long(self, _vehicle: Any, _name: str, msg: Any) -> None:
        """A command from any system (a ground station, through the autopilot) to one of our components."""
        if not self._components or self._unsigned_refused(msg):
            return
        for comp in self._components:
            if comp.handle_command(msg):
                return
    def _on_ack(self, _vehicle: Any, _name: str, msg: Any) -> None:
        if self._system_id is None or msg.get_srcSystem() == self._system_id:
            self._rates.on_ack(int(msg.command), int(msg.result))

    def _on_message(self, vehicle: Any, name: str, msg: Any) -> None:
        t_rx = time.monotonic()
        sysid = self._system_id if self._system_id is not None else getattr(vehicle, "_heartbeat_system", None)
        if sysid is not None and msg.get_srcSystem() != sysid:
            return
        if self._unsigned_refused(msg):
            self.unsigned_past_parser += 1
            return
        decode = DECODERS.get(name)
        if decode is not None:
            decode(msg, Rx(self.buffer, t_rx, self._timesync_pending))

    # ------------------------------------------------------------ supervision
    def request_rates(self, why: str) -> None:
        """Ask for the streams geotagging needs (a new round: the measurement restarts with it)."""
        vehicle = self.vehicle
        if vehicle is None or not self.cfg.rates.request:
            self.rate_meter.reset(time.monotonic())
            return
        target = self._system_id or 0
        factory = vehicle.message_factory

        def set_interval(msg_id: int, interval_us: float) -> None:
            vehicle.send_mavlink(factory.command_long_encode(target, 0, MAV_CMD_SET_MESSAGE_INTERVAL, 0, msg_id,
                                                             interval_us, 0, 0, 0, 0, 0))

        self.rate_requests += 1
        self._reboots_seen = self.buffer.reboots
        now = time.monotonic()
        self.rate_meter.reset(now)
        self._rates.send(set_interval, now)
        log.info("telemetry: asked for %s (%s)", ", ".join(f"{k} {v:g} Hz" for k, v in self._rates.want.items()), why)

    def _poll_rates(self, now: float) -> None:
        """Fall back to REQUEST_DATA_STREAM when SET_MESSAGE_INTERVAL is refused or unanswered; re-ask after reboots."""
        vehicle = self.vehicle
        if vehicle is None:
            return
        if self.buffer.reboots != self._reboots_seen:
            self.request_rates("the autopilot rebooted")
            return
        target = self._system_id or 0

        def request_stream(stream_id: int, hz: int) -> None:
            vehicle.send_mavlink(vehicle.message_factory.request_data_stream_encode(target, 0, stream_id, hz, 1))

        if self._rates.poll(request_stream, now):
            self.rate_meter.reset(now)
            log.warning("telemetry: %s; asked with REQUEST_DATA_STREAM instead", self._rates.fallback_reason)
        if self._lost:
            self.rate_meter.skip(now)  # a lost link is link_lost_count's, not a slow stream
        else:
            self.rate_meter.sample(now)

    def _request_home(self) -> None:
        vehicle = self.vehicle
        if vehicle is None or self.buffer.home is not None:
            return
        msg = vehicle.message_factory.command_long_encode(0, 0, MAV_CMD_GET_HOME_POSITION, 0, 0, 0, 0, 0, 0, 0, 0)
        vehicle.send_mavlink(msg)

    def _request_origin(self) -> None:
        """Ask for GPS_GLOBAL_ORIGIN (ArduPilot sends it once, when the origin is set, often before we listen)."""
        vehicle = self.vehicle
        if vehicle is None:
            return
        msg = vehicle.message_factory.command_long_encode(0, 0, MAV_CMD_REQUEST_MESSAGE, 0, MSG_GPS_GLOBAL_ORIGIN,
                                                          0, 0, 0, 0, 0, 0)
        vehicle.send_mavlink(msg)

    def _send_timesync(self) -> None:
        vehicle = self.vehicle
        if vehicle is None:
            return
        t = time.monotonic()
        ts1 = int(t * 1e9)
        self._timesync_pending[ts1] = t
        for k in [k for k, v in self._timesync_pending.items() if t - v > 5.0]:
            self._timesync_pending.pop(k, None)
        vehicle.send_mavlink(vehicle.message_factory.timesync_encode(0, ts1))

    def _link_dead(self) -> bool:
        vehicle = self.vehicle
        if vehicle is None:
            return True
        handler = getattr(vehicle, "_handler", None)
        return handler is not None and not getattr(handler, "_alive", True)

    def _supervise(self, connect_first: bool = False) -> None:
        backoff = 0.5
        next_try = time.monotonic()
        next_sync = 0.0
        next_home = 0.0
        needs_connect = connect_first
        while not self._stop.wait(0.2):
            now = time.monotonic()
            if needs_connect:
                if now < next_try or not self.cfg.reconnect and not connect_first:
                    continue
                try:
                    self.connect()
                    needs_connect = False
                    connect_first = False
                    backoff = 0.5
                    if self.link_lost_count:
                        self.reconnect_count += 1
                        log.warning("telemetry: link restored (reconnect %d)", self.reconnect_count)
                except TelemetryError as err:
                    self.last_error = str(err)
                    log.warning("%s; retrying in %.1f s", err, backoff)
                    next_try = time.monotonic() + backoff
                    backoff = min(backoff * 2, self.cfg.reconnect_max_s)
                continue
            age = self.last_rx_age_s(now)
            silent = age is not None and age > self.cfg.link_timeout_s
            if silent and not self._lost:
                self._lost = True
                self.link_lost_count += 1
                log.warning("telemetry: link lost (no message for %.1f s)", age)
            elif not silent and self._lost:
                self._lost = False
                log.warning("telemetry: link back after a silence")
                self.request_rates("the link came back")  # an autopilot that restarted forgot what it was asked
            if self._link_dead() or (silent and age is not None and age > 2 * self.cfg.link_timeout_s):
                if self.cfg.reconnect:
                    with self._vehicle_lock:
                        vehicle, self._vehicle = self._vehicle, None
                    threading.Thread(target=_close_quietly, args=(vehicle,), daemon=True).start()
                    needs_connect = True
                    next_try = now
                continue
            for comp in self._components:
                comp.tick(now)
            self._poll_rates(now)
            if self.cfg.timesync and now >= next_sync:
                next_sync = now + 1.0
                self._send_timesync()
            if now >= next_home and self.buffer.home is None and self.cfg.frame == "global":
                next_home = now + 5.0
                self._request_home()
            if now >= next_home and self.cfg.frame != "global" and self.buffer.origin is None:
                next_home = now + 5.0
                self._request_origin()
