"""MAVLink encoding shared by the endpoint, the tlog writer and the survey generator.

The simulator always SENDS MAVLink 1 (ardupilotmega dialect): every message it streams has an id
below 256, and a MAVLink 1 packet is parsed by clients built for either protocol version, while a
MAVLink 2 packet would make pymavlink switch its parser (and dronekit's writer) mid-connection.
It RECEIVES both versions.
"""

from __future__ import annotations

from typing import Any

from pymavlink.dialects.v10 import ardupilotmega as mav1
from pymavlink.dialects.v20 import ardupilotmega as mav2

MAV_TYPE_GCS = 6
MAV_AUTOPILOT_INVALID = 8
# HEARTBEAT types that are not a vehicle: GCS, gimbal, ADS-B, camera, antenna tracker, onboard
# controller, servo, ODID, charging station, battery, etc.
NON_VEHICLE_TYPES = frozenset({5, 6, 9, 18, 26, 27, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45})


class ByteSink:
    """A file-like object collecting the bytes a pymavlink MAVLink object writes."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def write(self, data: bytes) -> None:
        self.buf += data

    def take(self) -> bytes:
        out = bytes(self.buf)
        self.buf.clear()
        return out


class Encoder:
    """Packs messages as MAVLink 1 from a system/component, with its own sequence numbers."""

    def __init__(self, sysid: int, compid: int) -> None:
        self._sink = ByteSink()
        self.mav = mav1.MAVLink(self._sink, srcSystem=sysid, srcComponent=compid)

    def pack(self, name: str, fields: dict[str, Any]) -> bytes:
        """Bytes of one packet of message `name`; fields the MAVLink 1 message lacks are dropped."""
        msg = build(name, fields)
        self.mav.send(msg)
        return self._sink.take()


_CLASSES: dict[str, Any] = {cls.msgname: cls for cls in mav1.mavlink_map.values()}


def message_name(msg_id: int) -> str | None:
    """The name of MAVLink message `msg_id` in the ardupilotmega dialect (None if unknown)."""
    cls = mav2.mavlink_map.get(int(msg_id))
    return None if cls is None else str(cls.msgname)


def message_class(name: str) -> Any:
    """The MAVLink 1 message class for `name` (KeyError if MAVLink 1 cannot carry it)."""
    return _CLASSES[name]


def build(name: str, fields: dict[str, Any]) -> Any:
    """A MAVLink 1 message object from a field dict (extension fields are dropped)."""
    cls = _CLASSES[name]
    args = []
    for f, ftype in zip(cls.fieldnames, cls.fieldtypes, strict=True):
        v = fields[f] if f in fields else _default(cls, f)
        if ftype == "char" and isinstance(v, str):
            v = v.encode("utf-8")
        args.append(v)
    return cls(*args)


def _default(cls: Any, fieldname: str) -> Any:
    # array_lengths follows the wire order (ordered_fieldnames); fieldtypes the declared order.
    length = cls.array_lengths[cls.ordered_fieldnames.index(fieldname)]
    ftype = cls.fieldtypes[cls.fieldnames.index(fieldname)]
    if ftype == "char":
        return b""
    if length:
        return [0] * length
    return 0


def fields_of(msg: Any) -> dict[str, Any]:
    """The MAVLink 1 fields of a decoded message (drops MAVLink 2 extensions)."""
    cls = _CLASSES[msg.get_type()]
    return {f: _plain(getattr(msg, f)) for f in cls.fieldnames}


def _plain(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.decode("utf-8", errors="replace").rstrip("\x00")
    if isinstance(v, tuple):
        return list(v)
    return v


def new_parser() -> Any:
    """A parser that accepts MAVLink 1 and 2 packets and reports bad CRC as BAD_DATA."""
    m = mav2.MAVLink(None)
    m.robust_parsing = True
    return m


def roundtrip(name: str, fields: dict[str, Any]) -> dict[str, Any]:
    """Fields exactly as they survive packing and parsing (float32 rounding, integer wrap).

    The survey generator normalises its messages with this so a timeline written to a tlog and
    read back is identical, not merely close.
    """
    pkt = _RT.pack(name, fields)
    return fields_of(_RT.mav.decode(bytearray(pkt)))


_RT = Encoder(1, 1)
