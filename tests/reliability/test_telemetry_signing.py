"""MAVLink 2 signing on the telemetry link: a forged packet carrying OUR vehicle's system id is not believed.

Over a real loopback link (pymavlink vehicles -> dronekit -> Telemetry), with telemetry.signing set:
- our vehicle signs with the shared key: its packets are accepted and poses flow;
- a spoofer sending UNSIGNED packets with the same system id, and one signing with a WRONG key (with
  its clock an hour ahead, which with pymavlink's stock check locked the real vehicle out), are dropped
  and counted; every recorded position stays within centimetres of the real vehicle's;
- everything the payload sends (HEARTBEAT, requests, TIMESYNC, STATUSTEXT) is signed: the vehicle,
  which drops anything not validly signed, verifies it;
- an autopilot whose signing clock is a day behind, and one rebooted with its clock behind, still link up;
- a key on one side only, or two different keys, fail the connect with a message that says so.
At the parser (no sockets): a hypothesis property of exactly which packets are accepted, in-order
signing timestamps under concurrent sends, and the cost of signing.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from pathlib import Path

import pymap3d
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymavlink import mavutil
from pymavlink.dialects.v20 import ardupilotmega as mav2

from payload.config import GeotagSection, TelemetrySection
from payload.errors import TelemetryError
from payload.ops.preflight import check_telemetry
from payload.vehicle.samples import PositionSample
from payload.vehicle.signing import SIGNING_NEW_STREAM_WINDOW, LinkSigning, signing_timestamp
from payload.vehicle.telemetry import Telemetry
from tests.mavtestvehicle import MavTestVehicle, free_udp_port
from tests.payload.test_telemetry_link import HOME, straight_flight
from tests.reliability.test_telemetry_faults import far_away
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(200)
KEY = hashlib.sha256(b"cropscout test passphrase").digest()  # what `signing setup cropscout test passphrase` sets
WRONG_KEY = hashlib.sha256(b"not our passphrase").digest()
OUR_LINK_ID = 7


def _key_file(tmp_path: Path, key: bytes = KEY) -> Path:
    p = tmp_path / "signing.key"
    p.write_bytes(key)
    p.chmod(0o600)
    return p


def _signed_cfg(port: int, tmp_path: Path, **kw) -> TelemetrySection:
    signing = {"key_file": str(_key_file(tmp_path)), "link_id": OUR_LINK_ID, **kw.pop("signing", {})}
    base = {"connection": f"udp:127.0.0.1:{port}", "connect_timeout_s": 30.0, "link_timeout_s": 1.0,
            "signing": signing}
    base.update(kw)
    return TelemetrySection(**base)


def _record_positions(tel: Telemetry) -> list[PositionSample]:
    """Every position sample the listeners hand to the pose buffer (what geotagging would use)."""
    recorded: list[PositionSample] = []
    add = tel.buffer.add_position

    def add_and_record(s: PositionSample, t_rx_mono: float | None = None) -> None:
        recorded.append(s)
        add(s, t_rx_mono=t_rx_mono)

    tel.buffer.add_position = add_and_record
    return recorded


def _metres(lat: float, lon: float, alt: float, truth) -> float:
    e, n, u = pymap3d.geodetic2enu(lat, lon, alt, truth.lat, truth.lon, truth.alt)
    return math.sqrt(e * e + n * n + u * u)


# -- over a real link ------------------------------------------------------------------------------------------


def test_signed_vehicle_accepted_and_same_sysid_spoofers_ignored(tmp_path: Path) -> None:
    port = free_udp_port()
    # the spoofers start first, so theirs are the first HEARTBEATs heard; all three claim system 1,
    # share the real vehicle's boot clock, and fly 1 km north of it
    unsigned = MavTestVehicle(port, far_away, home=HOME, rate_hz=8.0, boot_offset_s=731.0, mavlink2=True).start()
    forger = MavTestVehicle(port, far_away, home=HOME, rate_hz=8.0, boot_offset_s=731.0, signing_key=WRONG_KEY,
                            signing_link_id=0, signing_clock_offset_s=3600.0).start()
    time.sleep(0.5)
    vehicle = MavTestVehicle(port, straight_flight, home=HOME, rate_hz=4.0, boot_offset_s=731.0, signing_key=KEY,
                             signing_link_id=0).start()
    tel = Telemetry(_signed_cfg(port, tmp_path))  # no vehicle_sysid: it would not help, all claim system 1
    recorded = _record_positions(tel)
    try:
        t0 = time.monotonic()
        tel.start()
        connect_s = time.monotonic() - t0
        assert wait_for(lambda: tel.buffer.counts()["position"] >= 12, 15.0), tel.summary()
        worst_boot = worst_mono = 0.0
        n = 0
        t_end = time.monotonic() + 4.0
        while time.monotonic() < t_end:
            t = time.monotonic() - 0.1
            t_boot = vehicle.boot_s(t)
            truth = straight_flight(t_boot)
            at_boot = tel.buffer.state_at_boot(t_boot)  # the pose itself, free of clock-sync error
            at_mono = tel.state_at(t)  # what geotagging uses (through the estimated clock offset)
            assert at_boot is not None and at_mono is not None
            worst_boot = max(worst_boot, _metres(at_boot.pose.lat_deg, at_boot.pose.lon_deg, at_boot.pose.alt_m,
                                                 truth))
            worst_mono = max(worst_mono, _metres(at_mono.pose.lat_deg, at_mono.pose.lon_deg, at_mono.pose.alt_m,
                                                 truth))
            n += 1
            time.sleep(0.1)
        assert tel.send_statustext(4, "rust H1 signed")
        assert wait_for(lambda: (4, "rust H1 signed") in vehicle.statustexts, 5.0)
        sig = tel.summary()["signing"]
        report = check_telemetry(tel, GeotagSection())
    finally:
        tel.close()
        vehicle.stop()
        forger.stop()
        unsigned.stop()
    worst_sample = max(_metres(s.lat_deg, s.lon_deg, s.alt_m, straight_flight(s.t_boot_s)) for s in recorded)
    # not one position came from a spoofer (they are 1000 m away): centimetres, i.e. encoding resolution
    assert worst_sample < 0.05, f"a recorded position is {worst_sample:.2f} m off: it came from a spoofer"
    assert worst_boot < 0.05, worst_boot
    assert worst_mono < 1.0, worst_mono
    # both kinds of spoofing were seen and dropped by the parser; nothing unsigned got past it
    assert sig["rejected_unsigned"] > 20 and sig["rejected_bad_signature"] > 20, sig
    assert sig["accepted_signed"] > 50 and sig["signed_from_vehicle"] > 50, sig
    assert sig["unsigned_past_parser"] == 0 and sig["accepted_unsigned"] == 0, sig
    (line,) = [c for c in report if c.name == "MAVLink signing"]
    assert line.ok and "unsigned refused" in line.detail, line
    # everything we sent reached the vehicle validly signed, on our link id (it drops anything else)
    assert vehicle.rejected_unverified == 0 and not vehicle.received_unsigned, vehicle.received_unsigned
    for name in ("HEARTBEAT", "PARAM_REQUEST_LIST", "REQUEST_DATA_STREAM", "COMMAND_LONG", "TIMESYNC", "STATUSTEXT"):
        assert vehicle.received_signed.get(name, 0) >= 1, (name, vehicle.received_signed)
    assert vehicle.received_link_ids == {OUR_LINK_ID}
    # ... and the forger, holding another key, could verify none of it
    assert not forger.received_signed and forger.rejected_unverified > 0
    print(f"SIGNED LINK: connect {connect_s:.2f} s with 2 same-sysid spoofers; dropped {sig['rejected_unsigned']} "
          f"unsigned + {sig['rejected_bad_signature']} wrong-key packets, accepted {sig['accepted_signed']} signed; "
          f"{len(recorded)} positions recorded, worst {worst_sample * 100:.1f} cm from truth; {n} poses: worst "
          f"{worst_boot * 100:.1f} cm at the vehicle's time, {worst_mono * 100:.1f} cm through the clock sync; "
          f"vehicle verified {sum(vehicle.received_signed.values())} signed packets from us, 0 unsigned")


def test_autopilot_clock_behind_and_reboot(tmp_path: Path) -> None:
    """An autopilot without GPS time signs with an old clock: the first packets look replayed (dropped) until
    it hears our signed HEARTBEAT and moves its clock up, as ArduPilot does. Rebooted with its clock 30 s
    behind where it was, the same happens on the reopened link."""
    port = free_udp_port()
    vehicle = MavTestVehicle(port, straight_flight, home=HOME, rate_hz=4.0, boot_offset_s=731.0, signing_key=KEY,
                             signing_clock_offset_s=-86400.0).start()
    tel = Telemetry(_signed_cfg(port, tmp_path, connect_timeout_s=15.0, reconnect_max_s=1.0))
    try:
        tel.start()
        assert wait_for(lambda: tel.buffer.counts()["position"] >= 6, 10.0), tel.summary()
        first = tel.summary()["signing"]
        assert first["rejected_replay"] >= 1, first  # the day-old packets
        assert vehicle.signing_timestamp > signing_timestamp() - SIGNING_NEW_STREAM_WINDOW  # it caught up
        vehicle.stop()
        assert wait_for(lambda: tel.vehicle is None, 8.0)  # long silence: the supervisor closes and reopens
        with MavTestVehicle(port, straight_flight, home=HOME, rate_hz=4.0, boot_offset_s=10.0, signing_key=KEY,
                            signing_clock_offset_s=-30.0) as again:
            assert wait_for(lambda: tel.reconnect_count >= 1 and tel.link_ok, 20.0), tel.summary()
            assert wait_for(lambda: (e := tel.state_at(time.monotonic())) is not None and e.age_s < 0.5, 5.0)
            again_boot = again.boot_s()
            est = tel.buffer.state_at_boot(again_boot - 0.3)
            assert est is not None
            assert _metres(est.pose.lat_deg, est.pose.lon_deg, est.pose.alt_m, straight_flight(again_boot - 0.3)) < 0.05
        second = tel.summary()["signing"]
        assert second["rejected_replay"] > first["rejected_replay"], second  # its first packets after the reboot
        assert second["unsigned_past_parser"] == 0
        print(f"SIGNING CLOCKS: day-behind autopilot linked up after {first['rejected_replay']} stale packets; "
              f"rebooted 30 s behind: {second['rejected_replay'] - first['rejected_replay']} more, then accepted")
    finally:
        tel.close()
        vehicle.stop()


@pytest.mark.parametrize("vehicle_kw,ours,expect", [
    ({"signing_key": KEY}, False, "The vehicle signs its packets"),
    ({"mavlink2": True}, True, "unsigned packets were dropped"),
    ({"signing_key": WRONG_KEY}, True, "signed with another key"),
], ids=["key-only-on-vehicle", "key-only-on-payload", "different-keys"])
def test_mismatched_signing_fails_the_connect_saying_why(tmp_path: Path, vehicle_kw: dict, ours: bool,
                                                         expect: str) -> None:
    port = free_udp_port()
    with MavTestVehicle(port, straight_flight, home=HOME, rate_hz=4.0, **vehicle_kw):
        if ours:
            cfg = _signed_cfg(port, tmp_path, connect_timeout_s=3.0)
        else:
            cfg = TelemetrySection(connection=f"udp:127.0.0.1:{port}", connect_timeout_s=3.0)
        tel = Telemetry(cfg)
        with pytest.raises(TelemetryError, match=expect) as err:
            tel.connect()
        tel.close()
    assert "telemetry.signing" in str(err.value)


def test_allow_unsigned_accepts_unsigned_but_never_a_wrong_signature(tmp_path: Path) -> None:
    """Migration mode: an unsigned autopilot is heard (and told that this is unprotected), our packets are
    still signed, and a packet signed with another key is still dropped (pymavlink alone would let the
    accept-unsigned callback wave it through)."""
    port = free_udp_port()
    vehicle = MavTestVehicle(port, straight_flight, home=HOME, rate_hz=4.0, boot_offset_s=731.0, mavlink2=True).start()
    tel = Telemetry(_signed_cfg(port, tmp_path, signing={"allow_unsigned": True}))
    recorded = _record_positions(tel)
    forger = None
    try:
        tel.start()
        assert wait_for(lambda: tel.buffer.counts()["position"] >= 6, 10.0)
        forger = MavTestVehicle(port, far_away, home=HOME, rate_hz=8.0, boot_offset_s=731.0, signing_key=WRONG_KEY,
                                signing_link_id=0).start()
        assert wait_for(lambda: tel.summary()["signing"]["rejected_bad_signature"] >= 20, 10.0)
        n_before = len(recorded)
        assert wait_for(lambda: len(recorded) >= n_before + 4, 5.0)
        sig = tel.summary()["signing"]
        (line,) = [c for c in check_telemetry(tel, GeotagSection()) if c.name == "MAVLink signing"]
    finally:
        tel.close()
        vehicle.stop()
        if forger is not None:
            forger.stop()
    assert max(_metres(s.lat_deg, s.lon_deg, s.alt_m, straight_flight(s.t_boot_s)) for s in recorded) < 0.05
    assert sig["accepted_unsigned"] > 20 and sig["signed_from_vehicle"] == 0, sig
    assert not line.ok and "no spoofing protection" in line.detail
    # the unsigned vehicle has no key, so it cannot verify, but it counts the signed packets it got
    assert vehicle._mav.mav.signing.sig_count > 5


# -- at the parser -----------------------------------------------------------------------------------------


def _v2_master():  # a pymavlink mavfile
    """A pymavlink connection with a MAVLink 2 parser, without switching pymavlink's globals."""
    master = mavutil.mavlink_connection("udpin:127.0.0.1:0", source_system=255)
    master.mav = mav2.MAVLink(master, srcSystem=255, srcComponent=0)
    master.mav.robust_parsing = True
    master.WIRE_PROTOCOL_VERSION = "2.0"
    master.first_byte = False
    return master


def _encoder(key: bytes | None, link_id: int = 0, sysid: int = 1) -> mav2.MAVLink:
    enc = mav2.MAVLink(None, srcSystem=sysid, srcComponent=1)
    if key is not None:
        enc.signing.secret_key = key
        enc.signing.sign_outgoing = True
        enc.signing.link_id = link_id
    return enc


def _position(enc: mav2.MAVLink, timestamp: int | None = None, lat: int = 473977000) -> bytes:
    if timestamp is not None:
        enc.signing.timestamp = timestamp
    return enc.global_position_int_encode(1000, lat, 85456000, 518000, 30000, 0, 0, 0, 0).pack(enc)


def _parse(master, data: bytes):
    msgs = master.mav.parse_buffer(data) or []
    assert len(msgs) == 1, msgs
    return msgs[0]


op = st.one_of(
    st.tuples(st.just("good"), st.sampled_from([0, 3]), st.integers(-2 * SIGNING_NEW_STREAM_WINDOW, 500_000)),
    st.tuples(st.just("wrong_key"), st.sampled_from([0, 3]), st.integers(-1000, 10**11)),
    st.tuples(st.just("flipped"), st.sampled_from([0, 3]), st.integers(0, 5)),
    st.tuples(st.just("unsigned"), st.just(0), st.just(0)),
    st.tuples(st.just("radio_status"), st.just(0), st.just(0)),
    st.tuples(st.just("replay"), st.just(0), st.integers(0, 50)),
)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(ops=st.lists(op, min_size=1, max_size=40), allow_unsigned=st.booleans())
def test_parser_accepts_exactly_the_validly_signed_fresh_packets(ops: list, allow_unsigned: bool) -> None:
    """Whatever is interleaved (wrong keys with any timestamp, flipped signature bytes, unsigned, replays),
    a packet is accepted iff it is signed with our key and its timestamp is newer than the last accepted one
    of its stream (a new stream: at most a minute behind our clock), or it is unsigned and allowed; every
    packet lands in exactly one counter."""
    master = _v2_master()
    try:
        sig = LinkSigning(KEY, OUR_LINK_ID, allow_unsigned=allow_unsigned)
        sig.install(master)
        clock = sig.timestamp
        last: dict[int, int] = {}
        sent: list[tuple[int, int, bytes]] = []  # (link, timestamp, bytes) of genuine packets
        expected = dict.fromkeys(sig.counters(), 0)
        for kind, link, arg in ops:
            ts, data = None, b""
            if kind in ("good", "replay") and (kind == "good" or sent):
                if kind == "good":
                    ts = max(0, (last.get(link) or clock) + arg)
                    data = _position(_encoder(KEY, link), ts)
                    sent.append((link, ts, data))
                else:
                    link, ts, data = sent[arg % len(sent)]
                fresh = ts > last[link] if link in last else ts + SIGNING_NEW_STREAM_WINDOW >= clock
                outcome = "accepted_signed" if fresh else "rejected_replay"
                if fresh:
                    last[link] = ts
                    clock = max(clock, ts)
            elif kind == "wrong_key":
                data = _position(_encoder(WRONG_KEY, link), max(0, clock + arg), lat=480000000)
                outcome = "rejected_bad_signature"
            elif kind == "flipped":
                b = bytearray(_position(_encoder(KEY, link), clock + 10**9, lat=480000000))
                b[-6 + arg] ^= 0x01  # the CRC stays valid: only the signature is wrong
                data = bytes(b)
                outcome = "rejected_bad_signature"
            elif kind == "unsigned":
                data = _position(_encoder(None), lat=480000000)
                outcome = "accepted_unsigned" if allow_unsigned else "rejected_unsigned"
            elif kind == "radio_status":
                enc = _encoder(None)
                data = enc.radio_status_encode(200, 180, 90, 40, 35, 0, 0).pack(enc)
                outcome = "accepted_radio_unsigned"
            else:
                continue  # a replay before anything genuine was sent
            msg = _parse(master, data)
            expected[outcome] += 1
            if outcome.startswith("accepted"):
                assert msg.get_type() in ("GLOBAL_POSITION_INT", "RADIO_STATUS"), (kind, msg)
                assert msg.get_signed() == (outcome == "accepted_signed")
                if outcome == "accepted_signed":
                    assert msg.lat == 473977000 and msg.get_link_id() == link
            else:
                assert msg.get_type() == "BAD_DATA" and "signature" in msg.reason, (kind, msg)
            assert sig.timestamp == clock  # only a validly signed packet moves our clock
        assert sig.counters() == expected
    finally:
        master.close()


def test_a_forged_future_timestamp_does_not_lock_out_the_real_stream() -> None:
    """The attack pymavlink's own check allows: a packet with a bad signature but our vehicle's stream and a
    timestamp years ahead would be remembered as that stream's latest, so every genuine packet after it
    looked like a replay. Here only validly signed packets move a stream's timestamp."""
    master = _v2_master()
    try:
        sig = LinkSigning(KEY, OUR_LINK_ID)
        sig.install(master)
        real = _encoder(KEY)
        assert _parse(master, _position(real, sig.timestamp + 1)).get_signed()
        forged = _position(_encoder(WRONG_KEY), 2**47, lat=480000000)
        assert _parse(master, forged).get_type() == "BAD_DATA"
        for _ in range(5):
            assert _parse(master, _position(real, real.signing.timestamp + 100)).get_signed()
        assert sig.rejected_bad_signature == 1 and sig.accepted_signed == 6
    finally:
        master.close()


class _Capture:
    def __init__(self) -> None:
        self.packets: list[bytes] = []

    def write(self, buf: bytes) -> None:
        self.packets.append(bytes(buf))


def test_concurrent_sends_leave_in_timestamp_order() -> None:
    """The alert writer, the supervisor and dronekit's threads all send: a receiver drops a packet whose
    timestamp is not newer than the last of its stream, so packing (signing) and queueing must not interleave."""
    master = _v2_master()
    capture = _Capture()
    master.mav.file = capture
    try:
        sig = LinkSigning(KEY, OUR_LINK_ID)
        sig.install(master)
        t0 = sig.timestamp

        def sender(i: int) -> None:
            for k in range(300):
                master.mav.send(master.mav.statustext_encode(6, f"t{i} {k}".encode()))

        threads = [threading.Thread(target=sender, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        receiver = _v2_master()
        rx = LinkSigning(KEY, 0)
        rx.install(receiver)
        stamps = []
        for pkt in capture.packets:
            msg = _parse(receiver, pkt)
            assert msg.get_signed() and msg.get_link_id() == OUR_LINK_ID, msg
            lo, hi = int.from_bytes(pkt[-12:-8], "little"), int.from_bytes(pkt[-8:-6], "little")
            stamps.append(lo | hi << 32)
        receiver.close()
        assert len(stamps) == 1200 and stamps == sorted(set(stamps)) and stamps[0] >= t0
        assert rx.accepted_signed == 1200 and rx.rejected == 0
    finally:
        master.close()


def test_timestamp_moves_forward_across_reconnects() -> None:
    """10 us units since 2015-01-01 from the wall clock, and never below the last one used on this link."""
    assert signing_timestamp(1420070400.0) == 0 and signing_timestamp(1420070401.5) == 150_000
    assert abs(signing_timestamp() - (time.time() - 1420070400) * 1e5) < 1e5 * 5
    sig = LinkSigning(KEY, OUR_LINK_ID)
    first = _v2_master()
    sig.install(first)
    first.mav.signing.timestamp += 10**9  # e.g. raised to a vehicle clock that runs ahead of ours
    ahead = sig.timestamp
    first.close()
    second = _v2_master()
    try:
        sig.install(second)  # a reconnect: same LinkSigning, new parser
        assert sig.timestamp > ahead and second.mav.signing.stream_timestamps is sig.stream_timestamps
    finally:
        second.close()


def test_refuses_to_install_on_a_mavlink1_parser() -> None:
    """Signing on a MAVLink 1 parser would be replaced (and so silently lost) when pymavlink switches to v2."""
    from pymavlink.dialects.v10 import ardupilotmega as mav1

    master = mavutil.mavlink_connection("udpin:127.0.0.1:0", source_system=255)
    master.mav = mav1.MAVLink(master, srcSystem=255, srcComponent=0)
    master.WIRE_PROTOCOL_VERSION = "1.0"
    try:
        with pytest.raises(TelemetryError, match="not MAVLink 2"):
            LinkSigning(KEY, 1).install(master)
    finally:
        master.close()


def test_signing_overhead() -> None:
    """Figures only (no timed assertion): the cost per packet of signing and of checking a signature."""
    n = 3000
    plain_enc, signed_enc = _encoder(None), _encoder(KEY)
    signed_enc.signing.timestamp = signing_timestamp()
    t = time.perf_counter()
    plain = [_position(plain_enc) for _ in range(n)]
    pack_plain = (time.perf_counter() - t) / n
    t = time.perf_counter()
    signed = [_position(signed_enc) for _ in range(n)]
    pack_signed = (time.perf_counter() - t) / n
    parsers = []
    for data, key in ((plain, None), (signed, KEY)):
        master = _v2_master()
        if key is not None:
            LinkSigning(key, 1).install(master)
        t = time.perf_counter()
        for pkt in data:
            master.mav.parse_buffer(pkt)
        parsers.append((time.perf_counter() - t) / n)
        master.close()
    print(f"SIGNING COST per GLOBAL_POSITION_INT: pack {pack_plain * 1e6:.1f} -> {pack_signed * 1e6:.1f} us, "
          f"parse {parsers[0] * 1e6:.1f} -> {parsers[1] * 1e6:.1f} us; {len(plain[0])} -> {len(signed[0])} bytes")
    assert len(signed[0]) == len(plain[0]) + 13
