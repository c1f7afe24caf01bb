"""Fixes to pymavlink and dronekit behaviour, applied to a live connection, kept apart from the link logic.

Each works around a failure seen in the reliability tests (junk UDP datagrams, a burst of new
client addresses, dronekit's untimed handshake loops); they touch library internals, so they are
here in one place to re-check when pymavlink or dronekit is upgraded.
"""

from __future__ import annotations

from typing import Any

_HEADER_LEN_V1 = 6  # pymavlink's HEADER_LEN_V1: the parser's initial expected_length is this + 2


def frame_udp_datagrams(vehicle: Any) -> bool:
    """On a UDP link, let no junk datagram swallow the good packets that follow it.

    MAVLink over UDP sends whole packets in each datagram, but pymavlink parses the socket as a byte
    stream: a junk datagram holding a start marker and a large length makes the parser wait for
    (and then discard as one bad packet) the next ~280 bytes, i.e. our vehicle's next HEARTBEAT and
    positions. A stream of such datagrams (a noisy radio bridge, a hostile sender) kept dronekit from
    ever hearing a heartbeat in the reliability tests. So when a new datagram arrives while the
    parser is still waiting for the rest of an incomplete packet, that incomplete packet is dropped:
    it can never be completed by another datagram; complete packets still buffered are parsed before
    the next datagram is read, and bad bytes are skipped in one go (robust parsing).
    Returns whether the link was UDP (and so got the fix).
    """
    master = getattr(getattr(vehicle, "_handler", None), "master", None)
    if master is None or "udp" not in type(master).__name__.lower():
        return False
    recv = master.recv
    mav = getattr(master, "mav", None)
    if mav is None or not hasattr(mav, "buf_len") or not hasattr(mav, "expected_length"):
        return False
    # Junk comes back as one BAD_DATA message per run of bad bytes instead of one MAVError per byte.
    mav.robust_parsing = True

    def recv_datagram(n: int | None = None) -> Any:
        # pymavlink replaces the parser object when it switches to MAVLink 2 on the first packet it
        # hears (which a junk datagram can be): always use, and set up, the current one
        m = master.mav
        m.robust_parsing = True
        pending = m.buf_len()
        if pending >= m.expected_length:
            return b""  # parse what is already buffered before reading more: no backlog can build up
        data = recv(n) if n is not None else recv()
        if data and pending:
            # the parser waits for the rest of a packet that no later datagram can complete
            m.buf = bytearray()
            m.buf_index = 0
            m.expected_length = _HEADER_LEN_V1 + 2
        return data

    master.recv = recv_datagram
    if getattr(master, "udp_server", False) and isinstance(getattr(master, "clients", None), set):
        master.clients = SnapshotSet(master.clients)
    return True


class SnapshotSet(set):
    """A set that iterates over a copy of itself.

    Listening on UDP, pymavlink's `write` loops over every client address it has heard while the
    receive thread adds new ones: a burst of datagrams from new addresses (junk, a spoofer) made
    dronekit's sends fail with "Set changed size during iteration", so the vehicle was never asked
    for its parameters and the connection timed out. `set.copy` runs in C under the GIL, so the
    snapshot is consistent and adding during a write is harmless.
    """

    def __iter__(self):  # noqa: ANN204 - same signature as set.__iter__
        return iter(set.copy(self))


def diagnose_handshake(vehicle: Any) -> str:
    """Which step of dronekit's handshake the vehicle never completed."""
    if vehicle is None:
        return "the link could not be opened"
    if getattr(vehicle, "_heartbeat_system", None) is None:
        return "no HEARTBEAT from a vehicle arrived (wrong address/port/baud, or the autopilot is off)"
    if getattr(vehicle, "_flightmode", None) in (None, "INITIALISING", "MAV"):
        return "the vehicle's HEARTBEAT has no valid flight mode for its type (custom_mode)"
    if getattr(vehicle, "_params_count", -1) < 0:
        return "the vehicle does not answer PARAM_REQUEST_LIST with PARAM_VALUE"
    ready = set(getattr(vehicle, "_ready_attrs", set()))
    missing = sorted(set(getattr(vehicle, "_default_ready_attrs", [])) - ready)
    if missing:
        return "still waiting for " + ", ".join(missing) + " (parameters / GPS_RAW_INT / HEARTBEAT / ATTITUDE)"
    return "the handshake did not finish"


def release_handshake(vehicle: Any) -> None:
    """Let a connect worker stuck in dronekit's untimed handshake loops finish.

    `Vehicle.initialize` loops without a timeout until the flight mode is known and until the
    first PARAM_VALUE arrives; once the link is closed nothing will ever set those, so each failed
    attempt would leave a thread spinning for the life of the process. Setting the two fields it
    polls ends the loops; the following wait_ready then times out and the worker exits.
    """
    if vehicle is None:
        return
    try:
        if getattr(vehicle, "_flightmode", None) in (None, "INITIALISING", "MAV"):
            vehicle._flightmode = "LINK_CLOSED"
        if getattr(vehicle, "_params_count", 0) < 0:
            vehicle._params_count = 0
    except AttributeError:  # a future dronekit without these fields: the worker is a daemon anyway
        pass
