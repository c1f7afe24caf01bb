"""MAVLink 2 message signing on the telemetry link: the key file, the timestamps, the packet check.

Without signing, any packet carrying the vehicle's system id is believed, so a transmitter on the
same radio link could move the map. With `telemetry.signing` set, payload/vehicle/telemetry.py installs a
LinkSigning on every connection: unsigned, wrongly signed and replayed packets are dropped and
counted, and everything the payload sends is signed. The key file itself is read by
payload/keyfile.py (at config time).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import struct
import threading
import time
from typing import Any

from payload.errors import TelemetryError

log = logging.getLogger("payload.telemetry")

SIGNING_EPOCH_UNIX = 1420070400  # 2015-01-01T00:00:00Z: MAVLink signing timestamps count 10 us units from here
SIGNING_NEW_STREAM_WINDOW = 6000 * 1000  # 60 s in 10 us units: how far behind ours a new stream may start
_UNSIGNED_ALWAYS_ACCEPTED = (109, 166)  # RADIO_STATUS, RADIO: a SiK radio cannot sign (ArduPilot, MAVProxy agree)
_SANE_CLOCK_UNIX = 1704067200  # 2024-01-01: a wall clock before this was never set (no RTC, no NTP yet)


def signing_timestamp(now_unix: float | None = None) -> int:
    """The MAVLink 2 signing timestamp for a wall-clock time: 10 us units since 2015-01-01 UTC."""
    now = time.time() if now_unix is None else now_unix
    return int(max(0.0, now - SIGNING_EPOCH_UNIX) * 100_000)


def use_mavlink2() -> None:
    """Make pymavlink build MAVLink 2 parsers from now on, as it does itself on hearing the first v2 packet.

    Signing exists only in MAVLink 2. pymavlink starts in MAVLink 1 and, on the first v2 byte it hears,
    REPLACES the connection's parser with a fresh one: signing set up on the old parser would be gone
    and every packet believed again. Switching before the connection is made gives dronekit a v2 parser
    from the start, so no swap ever happens (and dronekit keeps its send queue and target fix-up).
    """
    from pymavlink import mavutil

    if os.environ.get("MAVLINK20") != "1" or mavutil.mavlink.WIRE_PROTOCOL_VERSION != "2.0":
        os.environ["MAVLINK20"] = "1"
        mavutil.set_dialect(mavutil.current_dialect)


class LinkSigning:
    """MAVLink 2 signing on the telemetry link: installs the key on each connection, counts what it drops.

    One object lives as long as the Telemetry, across reconnects, so that the per-stream timestamps
    (replay protection) and our own outgoing timestamp carry on from one connection to the next.

    Differences from pymavlink's stock `setup_signing` behaviour, and why:
    - pymavlink records a stream's timestamp BEFORE it compares the signature, so one forged packet
      with a far-future timestamp and our vehicle's (link, system, component) made every later genuine
      packet look like a replay: a spoofer without the key could cut us off from our vehicle. Here
      the signature is checked first and only a valid packet moves the stream's timestamp.
    - pymavlink asks the accept-unsigned callback about badly signed packets too, so `allow_unsigned`
      would also let forged signatures through; here a bad signature is always dropped.
    - sends are serialised, so packets leave in the order of their signing timestamps (a receiver
      drops a packet whose timestamp is not newer than the last one of its stream).
    """

    def __init__(self, key: bytes, link_id: int, allow_unsigned: bool = False) -> None:
        if len(key) != 32:
            raise ValueError("a MAVLink signing key is 32 bytes")
        self._key = bytes(key)
        self.link_id = int(link_id)
        self.allow_unsigned = bool(allow_unsigned)
        self.stream_timestamps: dict[tuple[int, int, int], int] = {}
        self._send_lock = threading.Lock()
        self._state: Any = None  # the current parser's MAVLinkSigning (pymavlink object)
        self._pending_reject: str | None = None
        self.installs = 0
        self.accepted_signed = 0
        self.rejected_unsigned = 0
        self.rejected_bad_signature = 0
        self.rejected_replay = 0
        self.accepted_unsigned = 0
        self.accepted_radio_unsigned = 0

    def __repr__(self) -> str:  # never show the key
        return f"LinkSigning(link_id={self.link_id}, allow_unsigned={self.allow_unsigned})"

    @property
    def rejected(self) -> int:
        """Packets dropped by signing: unsigned, wrongly signed, or replayed."""
        return self.rejected_unsigned + self.rejected_bad_signature + self.rejected_replay

    @property
    def timestamp(self) -> int:
        """Our current signing timestamp (10 us units since 2015), 0 before the first install."""
        return 0 if self._state is None else int(self._state.timestamp)

    def install(self, master: Any) -> None:
        """Sign on pymavlink connection `master` (dronekit's `handler.master`) before it parses a packet.

        Raises TelemetryError when the connection is not MAVLink 2 (call `use_mavlink2` before opening it).
        """
        mav = getattr(master, "mav", None)
        if mav is None or not hasattr(mav, "signing") or str(getattr(master, "WIRE_PROTOCOL_VERSION", "")) != "2.0":
            raise TelemetryError(
                "telemetry.signing: the link's MAVLink parser is not MAVLink 2, so it cannot check signatures; "
                "refusing to run the link unsigned (this is a payload bug: use_mavlink2() must run before connecting)"
            )
        if time.time() < _SANE_CLOCK_UNIX:
            log.warning(
                "telemetry.signing: the system clock reads %s, before 2024: our signing timestamps start behind what "
                "the autopilot has seen, and catch up only from its first signed packet; set the clock (NTP, GPS, RTC)",
                time.strftime("%Y-%m-%d", time.gmtime()),
            )
        # the timestamp only ever moves forward: across reconnects from the last one used, across restarts
        # from the wall clock (which has moved on since); a signed packet from the vehicle can move it further
        initial = max(signing_timestamp(), self.timestamp + 1)
        master.setup_signing(
            self._key,
            sign_outgoing=True,
            allow_unsigned_callback=self._accept_unsigned,
            initial_timestamp=initial,
            link_id=self.link_id,
        )
        mav.signing.stream_timestamps = self.stream_timestamps
        mav.check_signature = self._check_signature
        send = mav.send

        def send_in_order(msg: Any, *args: Any, **kwargs: Any) -> Any:
            with self._send_lock:
                return send(msg, *args, **kwargs)

        mav.send = send_in_order
        self._state = mav.signing
        self.installs += 1
        log.info(
            "telemetry: MAVLink 2 signing on (link_id %d, %s)",
            self.link_id,
            "unsigned packets ACCEPTED" if self.allow_unsigned else "unsigned packets dropped",
        )

    def sign_encoder(self, mav: Any) -> None:
        """Sign everything a second encoder on the same connection sends (another component of ours, e.g. the
        camera): the same key and link id, its own timestamps. Receivers keep one timestamp per (link, system,
        component), so the component's stream is its own and needs no ordering with the main one's."""
        mav.signing.secret_key = self._key
        mav.signing.link_id = self.link_id
        mav.signing.sign_outgoing = True
        mav.signing.timestamp = max(signing_timestamp(), self.timestamp + 1, int(mav.signing.timestamp) + 1)

    def _check_signature(self, msgbuf: bytearray, src_system: int, src_component: int) -> bool:
        """pymavlink's check, in the safe order: signature, then timestamp, then remember the timestamp."""
        state = self._state
        link_id = msgbuf[-13]
        tlow, thigh = struct.unpack("<IH", bytes(msgbuf[-12:-6]))
        timestamp = tlow | (thigh << 32)
        digest = hashlib.sha256(self._key + bytes(msgbuf[:-6])).digest()[:6]
        if not hmac.compare_digest(digest, bytes(msgbuf[-6:])):
            self._pending_reject = "bad_signature"
            return False
        stream = (link_id, src_system, src_component)
        last = self.stream_timestamps.get(stream)
        if last is not None and timestamp <= last:
            self._pending_reject = "replay"  # an old packet played again (or one reordered on the way)
            return False
        if last is None and state is not None and timestamp + SIGNING_NEW_STREAM_WINDOW < state.timestamp:
            self._pending_reject = "replay"  # a new stream starting more than a minute in the past
            return False
        self.stream_timestamps[stream] = timestamp
        if state is not None and timestamp > state.timestamp:
            state.timestamp = timestamp
        self.accepted_signed += 1
        return True

    def _accept_unsigned(self, _mav: Any, msg_id: int) -> bool:
        """pymavlink's allow_unsigned_callback: called for every packet without a valid signature."""
        reason, self._pending_reject = self._pending_reject, None
        if reason == "bad_signature":
            self.rejected_bad_signature += 1
            return False
        if reason == "replay":
            self.rejected_replay += 1
            return False
        if msg_id in _UNSIGNED_ALWAYS_ACCEPTED:
            self.accepted_radio_unsigned += 1
            return True
        if self.allow_unsigned:
            self.accepted_unsigned += 1
            return True
        self.rejected_unsigned += 1
        return False

    def counters(self) -> dict[str, int]:
        """What the parser accepted and dropped (for Telemetry.summary and the preflight block)."""
        return {
            "accepted_signed": self.accepted_signed,
            "rejected_unsigned": self.rejected_unsigned,
            "rejected_bad_signature": self.rejected_bad_signature,
            "rejected_replay": self.rejected_replay,
            "accepted_unsigned": self.accepted_unsigned,
            "accepted_radio_unsigned": self.accepted_radio_unsigned,
        }
