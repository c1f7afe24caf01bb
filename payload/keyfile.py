"""The MAVLink 2 signing key file: read and checked when the config is loaded.

Kept apart from the signing protocol (payload/vehicle/signing.py) because the config validates the
key file (so `payload validate-config` catches a bad one before a flight) and the config must not
depend on the telemetry room. Reads the formats MAVProxy and Mission Planner use.
"""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

_SIGNING_KEY_HINT = (
    "put the 32-byte MAVLink signing key in it (head -c 32 /dev/urandom > FILE; chmod 600 FILE), as 64 hex "
    "digits, or as the one-line passphrase given to MAVProxy's `signing setup <passphrase>`"
)
_MAX_KEY_FILE_BYTES = 4096


def read_signing_key(path: Path, key_format: str = "auto") -> bytes:
    """The 32-byte MAVLink 2 signing key held in `path` (raises ValueError saying what is wrong and how to fix it).

    A key file holds one of: 32 raw bytes; 64 hex digits; or a passphrase, whose SHA-256 is the key,
    exactly as MAVProxy's `signing setup <passphrase>` derives it (so the payload and a ground station
    set up that way share the key). `key_format` auto tells them apart: 64 hex digits are hex, 32 bytes
    that are not all printable are raw, other printable text is a passphrase; 32 printable characters
    could be either, so auto refuses them (set key_format). A trailing newline is ignored for hex and
    passphrase. The messages never contain the file's content.
    """
    path = Path(path)
    raw = _read_key_file(path)
    text = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1] if raw.endswith(b"\n") else raw
    printable = bool(text) and all(0x20 <= b < 0x7F for b in text)
    is_hex = len(text) == 64 and all(chr(b) in "0123456789abcdefABCDEF" for b in text)
    fmt = _auto_format(path, raw, printable, is_hex) if key_format == "auto" else key_format
    if fmt == "raw":
        if len(raw) != 32:
            raise ValueError(f"key file {path} holds {len(raw)} bytes; a raw key (key_format raw) is exactly 32 bytes")
        key = raw
    elif fmt == "hex":
        if not is_hex:
            raise ValueError(f"key file {path} is not 64 hex digits (key_format hex); {_SIGNING_KEY_HINT}")
        key = bytes.fromhex(text.decode("ascii"))
    else:
        if not printable or text != text.strip():
            raise ValueError(
                f"key file {path}: a passphrase must be one line of printable ASCII without leading or trailing "
                f"spaces (as MAVProxy's `signing setup` takes it)"
            )
        key = hashlib.sha256(text).digest()
    if key == bytes(32):
        raise ValueError(f"key file {path} holds the all-zero key, which means 'signing off' to ArduPilot; "
                         f"generate a random key")
    return key


def _read_key_file(path: Path) -> bytes:
    """The key file's bytes (ValueError when it is missing, unreadable, not a file or far too large)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ValueError(f"key file {path} does not exist; {_SIGNING_KEY_HINT}") from None
    except (OSError, ValueError) as err:
        raise ValueError(f"key file {path} cannot be read ({getattr(err, 'strerror', None) or err})") from None
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"key file {path} is not a regular file; {_SIGNING_KEY_HINT}")
    if st.st_size > _MAX_KEY_FILE_BYTES:
        raise ValueError(f"key file {path} holds {st.st_size} bytes, far too many for a key; {_SIGNING_KEY_HINT}")
    try:
        return path.read_bytes()[:_MAX_KEY_FILE_BYTES]
    except OSError as err:
        raise ValueError(
            f"key file {path} cannot be read ({err.strerror or err}); let the payload's user read it "
            f"(chown it to that user, chmod 600)"
        ) from None


def _auto_format(path: Path, raw: bytes, printable: bool, is_hex: bool) -> str:
    """key_format auto: hex, raw or passphrase from what the file holds (ValueError when it cannot tell)."""
    if is_hex:
        return "hex"
    if len(raw) == 32 and not printable:
        return "raw"
    if len(raw) == 32:
        raise ValueError(
            f"key file {path} holds 32 printable characters: a raw key or a passphrase? "
            f"set telemetry.signing.key_format to raw or passphrase"
        )
    if printable:
        return "passphrase"
    raise ValueError(
        f"key file {path} holds {len(raw)} bytes that are neither a 32-byte raw key, 64 hex digits nor a "
        f"one-line printable passphrase; {_SIGNING_KEY_HINT}"
    )


# ---------------------------------------------------------------- MAVLink 2 signing
