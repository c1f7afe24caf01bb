"""Read any ArduPilot telemetry log (tlog) into a Timeline, and write a Timeline as a tlog.

A tlog is what a ground station records: each record is an 8-byte big-endian timestamp
(microseconds since 1970, the recording computer's clock) followed by one raw MAVLink packet.
The records are framed here rather than through mavutil so that the reader knows exactly where
a file is cut short, how many packets failed their CRC (counted, never fatal), and where it had
to resynchronise after garbage.

Recorded flights mix several systems and components on one link (the autopilot, a gimbal, a SiK
radio, the ground station's own heartbeats); the timeline is built for one autopilot system,
by default the first one heard. Event times come from the tlog timestamps (when the messages
reached the ground station), made monotonic, so gaps in the recording are replayed as gaps.
"""

from __future__ import annotations

import logging
import struct
from collections import Counter
from pathlib import Path
from typing import Any

from pymavlink.dialects.v20 import ardupilotmega as mav2

from flight_sim import mav
from flight_sim.errors import TlogError
from flight_sim.timeline import STREAMED, Event, Param, Timeline
from flight_sim.trajectory import Trajectory

log = logging.getLogger(__name__)

_TS = struct.Struct(">Q")
# Plausible tlog timestamps: 1995 .. 2100 in microseconds since 1970.
_TS_MIN = 788_918_400 * 1_000_000
_TS_MAX = 4_102_444_800 * 1_000_000
_DATAFLASH_MAGIC = b"\xa3\x95"
HOME_REPEAT_S = 5.0  # how often a synthesised HOME_POSITION is repeated on the timeline


def _packet_len(buf: bytes | memoryview, i: int) -> int | None:
    """Length of the MAVLink packet starting at buf[i], or None if buf[i] is no packet start."""
    magic = buf[i]
    if i + 2 > len(buf):
        return -1
    if magic == 0xFE:
        return 8 + buf[i + 1]
    if magic == 0xFD:
        if i + 3 > len(buf):
            return -1
        signed = buf[i + 2] & 0x01
        return 12 + buf[i + 1] + (13 if signed else 0)
    return None


def _plausible_record(buf: bytes, i: int) -> bool:
    if i + 9 > len(buf):
        return False
    ts = _TS.unpack_from(buf, i)[0]
    return _TS_MIN <= ts <= _TS_MAX and buf[i + 8] in (0xFE, 0xFD)


class _Records:
    """Iterates (timestamp_s, packet bytes) over a tlog, counting resyncs and noting truncation."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.resync_bytes = 0
        self.truncated_at: int | None = None
        self.truncated_need = 0

    def __iter__(self):  # noqa: ANN204 - generator of (float, bytes)
        data, n, i = self.data, len(self.data), 0
        while i < n:
            if not _plausible_record(data, i):
                if n - i < 9 and self.truncated_at is None and i > 0:
                    self.truncated_at, self.truncated_need = i, 9
                    return
                j = i + 1
                while j < n and not _plausible_record(data, j):
                    j += 1
                if j >= n:
                    if n - i < 64 and i > 0:
                        # a short tail that is no record: the last record was cut off
                        self.truncated_at, self.truncated_need = i, 9
                    else:
                        self.resync_bytes += n - i
                    return
                self.resync_bytes += j - i
                i = j
            plen = _packet_len(data, i + 8)
            if plen is None:  # pragma: no cover - _plausible_record checked the magic
                i += 1
                continue
            end = i + 8 + plen if plen >= 0 else n + 1
            if end > n:
                self.truncated_at, self.truncated_need = i, 8 + max(plen, 0)
                return
            yield _TS.unpack_from(data, i)[0] / 1e6, data[i + 8 : end]
            i = end


def _read_tlog_bytes(p: Path) -> bytes:
    """The file's bytes, once it is known to be a tlog (TlogError naming the file and the fix otherwise)."""
    if not p.is_file():
        raise TlogError(f"{p}: file not found; pass the path of a telemetry log (.tlog)")
    data = p.read_bytes()
    if data[:2] == _DATAFLASH_MAGIC:
        raise TlogError(
            f"{p}: this looks like an ArduPilot DataFlash log (.bin), not a telemetry log; flight-sim "
            "replays the .tlog a ground station (Mission Planner, MAVProxy, QGroundControl) records"
        )
    if not _plausible_record(data, 0):
        raise TlogError(
            f"{p}: not a telemetry log: a tlog starts with an 8-byte timestamp followed by a MAVLink "
            "packet (0xFE or 0xFD); pass a .tlog recorded by a ground station"
        )
    return data


def read_tlog(
    path: str | Path,
    sysid: int | None = None,
) -> Timeline:
    """Read a tlog into the timeline of one autopilot (default: the first autopilot heard).

    Raises TlogError naming the file and the fix for: a missing file, a file that is not a tlog,
    no autopilot (or not the requested one), and no position/attitude/GPS messages from it. A file
    cut short mid-record (a recorder stopped abruptly; the reference copter log is one) is replayed
    up to the cut with a note; when the part before the cut is unusable the error says it is truncated.
    """
    p = Path(path)
    data = _read_tlog_bytes(p)
    parser = mav2.MAVLink(None)
    records = _Records(data)
    decoded: list[tuple[float, Any]] = []
    bad_crc: Counter[int] = Counter()
    unknown: Counter[int] = Counter()
    for ts, pkt in records:
        try:
            msg = parser.decode(bytearray(pkt))
        except mav2.MAVError as err:
            text = str(err)
            msgid = pkt[5] if pkt[0] == 0xFE else int.from_bytes(pkt[7:10], "little")
            if "CRC" in text:
                bad_crc[msgid] += 1
            else:
                unknown[msgid] += 1
            continue
        decoded.append((ts, msg))
    cut = ""
    if records.truncated_at is not None:
        cut = (
            f"truncated: the record at byte {records.truncated_at} of {len(data)} is cut short (the recording "
            f"was interrupted or the copy is incomplete) and the {len(decoded)} messages before the cut"
        )
    if not decoded:
        if cut:
            raise TlogError(f"{p}: {cut} are none; re-copy the file from the ground station")
        raise TlogError(f"{p}: not a telemetry log: no MAVLink message in it could be decoded")
    try:
        sysid, compid, hb = _choose_autopilot(p, decoded, sysid)
        tl = _build_timeline(p, decoded, sysid, compid, hb)
    except TlogError as err:
        if not cut:
            raise
        why = str(err).removeprefix(f"{p}: ")
        raise TlogError(f"{p}: {cut} are not a usable flight ({why})") from None
    tl.bad_crc = sum(bad_crc.values())
    tl.bad_crc_by_msgid = dict(bad_crc)
    if bad_crc:
        tl.notes.append(
            f"skipped {tl.bad_crc} packets with a bad CRC (message ids {sorted(bad_crc)}; usually a dialect change)"
        )
    if unknown:
        tl.notes.append(
            f"skipped {sum(unknown.values())} packets of message ids unknown to pymavlink {sorted(unknown)}"
        )
    if records.resync_bytes:
        tl.notes.append(f"skipped {records.resync_bytes} bytes of garbage between records")
    if records.truncated_at is not None:
        tl.notes.append(
            f"file truncated: the last record (byte {records.truncated_at} of {len(data)}) is cut short; "
            "replaying what comes before it"
        )
    return tl


def _choose_autopilot(p: Path, decoded: list[tuple[float, Any]], want: int | None) -> tuple[int, int, Any]:
    seen: dict[tuple[int, int], Any] = {}
    for _, msg in decoded:
        if msg.get_type() == "HEARTBEAT":
            key = (msg.get_srcSystem(), msg.get_srcComponent())
            seen.setdefault(key, msg)
    autopilots = [
        (k, hb)
        for k, hb in seen.items()
        if hb.autopilot != mav.MAV_AUTOPILOT_INVALID and hb.type not in mav.NON_VEHICLE_TYPES
    ]
    described = ", ".join(f"{s}/{c} (type {hb.type}, autopilot {hb.autopilot})" for (s, c), hb in seen.items())
    if not autopilots:
        raise TlogError(
            f"{p}: no autopilot in this log: no HEARTBEAT from a vehicle (heartbeats seen, as "
            f"system/component: {described or 'none'}); record the tlog with the vehicle connected"
        )
    if want is None:
        (s, c), hb = autopilots[0]
        return s, c, hb
    for (s, c), hb in autopilots:
        if s == want:
            return s, c, hb
    ids = ", ".join(str(s) for (s, _), _ in autopilots)
    raise TlogError(f"{p}: no autopilot with system id {want} in this log; autopilots seen: {ids}; pass one of them")


def _build_timeline(p: Path, decoded: list[tuple[float, Any]], sysid: int, compid: int, hb0: Any) -> Timeline:
    raw: list[tuple[float, str, dict[str, Any]]] = []
    params: dict[str, Param] = {}
    param_index: dict[str, int] = {}
    autopilot_version: dict[str, Any] | None = None
    for ts, msg in decoded:
        if msg.get_srcSystem() != sysid:
            continue
        name = msg.get_type()
        comp = msg.get_srcComponent()
        if name == "MOUNT_STATUS" or (comp == compid and name in STREAMED):
            raw.append((ts, name, mav.fields_of(msg)))
        elif comp == compid and name == "PARAM_VALUE":
            pid = msg.param_id
            if pid not in params:
                params[pid] = Param(pid, float(msg.param_value), int(msg.param_type))
                param_index[pid] = int(msg.param_index)
        elif comp == compid and name == "AUTOPILOT_VERSION" and autopilot_version is None:
            autopilot_version = mav.fields_of(msg)
    counts = Counter(n for _, n, _ in raw)
    for need, why in (
        ("GLOBAL_POSITION_INT", "the vehicle's position"),
        ("ATTITUDE", "its attitude (dronekit waits for it)"),
        ("GPS_RAW_INT", "its GPS state (dronekit waits for it)"),
    ):
        if not counts[need]:
            raise TlogError(
                f"{p}: no {need} messages from system {sysid} in this log, so it has no record of {why}; "
                "record the tlog with the position/extended-status/extra1 streams enabled (SRx_POSITION etc.)"
            )
    if not any(f["lat"] != 0 or f["lon"] != 0 for _, n, f in raw if n == "GLOBAL_POSITION_INT"):
        raise TlogError(f"{p}: GLOBAL_POSITION_INT from system {sysid} never has a position fix (lat/lon 0)")
    t0 = raw[0][0]
    events: list[Event] = []
    last = 0.0
    backwards = 0
    for ts, name, fields in raw:
        t = ts - t0
        if t < last:
            backwards += 1
            t = last
        last = t
        events.append(Event(round(t, 6), name, fields))
    notes: list[str] = []
    if backwards:
        notes.append(
            f"{backwards} timestamps went backwards (clock adjusted while recording); held at the previous one"
        )
    if not counts["HOME_POSITION"]:
        events, note = _synthesise_home(events)
        notes.append(note)
    ordered = sorted(params.values(), key=lambda q: param_index[q.name])
    if not ordered:
        ordered = default_params(sysid, hb0.type)
        notes.append(f"no PARAM_VALUE in the log: answering with {len(ordered)} default parameters")
    # the camera renders from, and the vehicle resamples, a smooth fit through the recorded samples
    fit = Trajectory.from_events(events)
    notes += fit.notes
    return Timeline(
        events=events,
        params=ordered,
        sysid=sysid,
        compid=compid,
        vehicle_type=int(hb0.type),
        autopilot=int(hb0.autopilot),
        truth=fit.track(),
        fit=fit,
        source=str(p),
        t0_unix=t0,
        notes=notes,
        autopilot_version=autopilot_version,
    )


def _synthesise_home(events: list[Event]) -> tuple[list[Event], str]:
    """HOME_POSITION where ArduPilot sets it: the position at arming (else the first fix).

    Older logs predate HOME_POSITION; dronekit's home_location and the payload's height above
    ground need it, so it is derived and repeated every HOME_REPEAT_S seconds.
    """
    armed_t = next((e.t for e in events if e.name == "HEARTBEAT" and e.fields["base_mode"] & 128), None)
    fixes = [e for e in events if e.name == "GLOBAL_POSITION_INT" and (e.fields["lat"] or e.fields["lon"])]
    home = fixes[0]
    if armed_t is not None:
        before = [e for e in fixes if e.t <= armed_t]
        home = before[-1] if before else next((e for e in fixes if e.t >= armed_t), fixes[-1])
    t_set = max(home.t, armed_t or 0.0)
    f = home.fields
    fields = mav.roundtrip(
        "HOME_POSITION",
        {"latitude": f["lat"], "longitude": f["lon"], "altitude": f["alt"], "q": [1.0, 0.0, 0.0, 0.0]},
    )
    end = events[-1].t
    extra = []
    t = t_set
    while t <= end:
        extra.append(Event(round(t, 6), "HOME_POSITION", fields))
        t += HOME_REPEAT_S
    merged = sorted(events + extra, key=lambda e: e.t)  # stable: recorded order kept at equal times
    why = "at arming" if armed_t is not None else "at the first position fix"
    note = (
        f"no HOME_POSITION in the log: home set {why} (t={t_set:.1f} s, lat {f['lat'] / 1e7:.7f}, "
        f"lon {f['lon'] / 1e7:.7f}, alt {f['alt'] / 1e3:.2f} m)"
    )
    return merged, note


def default_params(sysid: int, vehicle_type: int) -> list[Param]:
    """A small parameter set for timelines without recorded parameters (dronekit needs at least one)."""
    int8, int16, real = 2, 4, 9
    common = [
        Param("SYSID_THISMAV", float(sysid), int8),
        Param("SYSID_MYGCS", 255.0, int16),
        Param("SR0_POSITION", 10.0, int16),
        Param("SR0_EXTRA1", 10.0, int16),
        Param("SR0_EXTRA2", 10.0, int16),
        Param("SR0_EXT_STAT", 2.0, int16),
        Param("GPS_TYPE", 1.0, int8),
        Param("MNT1_TYPE", 0.0, int8),
        Param("CAM1_TYPE", 0.0, int8),
    ]
    if vehicle_type in (1, 16, 19, 20, 21, 22, 23, 24, 25):  # fixed wing and VTOL
        specific = [Param("TRIM_ARSPD_CM", 1500.0, real), Param("RTL_ALTITUDE", 100.0, real)]
    else:
        specific = [Param("FRAME_CLASS", 1.0, int8), Param("WPNAV_SPEED", 500.0, real), Param("RTL_ALT", 1500.0, real)]
    return common + specific


def write_tlog(tl: Timeline, path: str | Path, t0_unix: float | None = None) -> Path:
    """Write a timeline as a tlog: its parameters at t=0, then every event, from its own sysid/compid.

    Reading the file back with read_tlog gives the same events (times to the microsecond) and
    parameters, so a scripted survey can be replayed exactly like a recorded flight.
    """
    p = Path(path)
    base = tl.t0_unix if t0_unix is None else t0_unix
    base_us = int(round(base * 1e6))
    enc = mav.Encoder(tl.sysid, tl.compid)
    first = tl.events[0].t if tl.events else 0.0
    events = list(tl.events)
    with p.open("wb") as fh:
        # a leading heartbeat first (it tells a reader which system is the autopilot), then the parameters
        if events and events[0].name == "HEARTBEAT":
            e = events.pop(0)
            fh.write(_TS.pack(base_us + int(round(e.t * 1e6))) + enc.pack(e.name, e.fields))
        for i, prm in enumerate(tl.params):
            fields = {
                "param_id": prm.name,
                "param_value": prm.value,
                "param_type": prm.type,
                "param_count": len(tl.params),
                "param_index": i,
            }
            fh.write(_TS.pack(base_us + int(round(first * 1e6))) + enc.pack("PARAM_VALUE", fields))
        for e in events:
            fh.write(_TS.pack(base_us + int(round(e.t * 1e6))) + enc.pack(e.name, e.fields))
    return p
