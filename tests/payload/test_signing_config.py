"""telemetry.signing in the payload config: the key file is read and checked when the config loads.

A bad key file must be a ConfigError naming telemetry.signing.key_file and the fix (never a link
that silently runs unsigned, nor an error at take-off); the key itself must never appear in a message
or a log line. The passphrase form must give exactly MAVProxy's key (`signing setup <passphrase>`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from payload.config import PayloadConfig, TelemetrySection, load_payload_config
from payload.errors import TelemetryError
from payload.keyfile import read_signing_key
from payload.ops.preflight import check_signing
from payload.vehicle.telemetry import Telemetry
from tests.asuser import give_to_nobody, run_unprivileged, shared_dir
from tests.configtests import expect_config_error, run_cli

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "configs" / "payload.yaml"
KEY = bytes(range(7, 39))  # 32 bytes, not all printable
PROPS = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


def _key_file(tmp_path: Path, content: bytes, name: str = "signing.key", mode: int = 0o600) -> Path:
    p = tmp_path / name
    p.write_bytes(content)
    p.chmod(mode)
    return p


def _cfg_file(tmp_path: Path, signing: object) -> Path:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["telemetry"]["signing"] = signing
    p = tmp_path / "payload.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_example_has_signing_off() -> None:
    assert load_payload_config(EXAMPLE).telemetry.signing is None
    assert TelemetrySection().signing is None


@pytest.mark.parametrize(
    "content,fmt",
    [
        (KEY, "auto"),
        (KEY.hex().encode(), "auto"),
        (KEY.hex().upper().encode() + b"\n", "auto"),
        (KEY.hex().encode() + b"\r\n", "hex"),
        (KEY, "raw"),
    ],
    ids=["raw", "hex", "HEX+newline", "hex+crlf", "raw-explicit"],
)
def test_raw_and_hex_key_files_give_the_key(tmp_path: Path, content: bytes, fmt: str) -> None:
    path = _key_file(tmp_path, content)
    cfg = load_payload_config(_cfg_file(tmp_path, {"key_file": str(path), "key_format": fmt}))
    assert cfg.telemetry.signing is not None and cfg.telemetry.signing.key_file == path
    assert read_signing_key(path, fmt) == KEY


def test_passphrase_is_mavproxys_key(tmp_path: Path) -> None:
    """MAVProxy: `signing setup <passphrase>` -> key = SHA-256(passphrase as ASCII)."""
    path = _key_file(tmp_path, b"correct horse battery staple\n")
    assert read_signing_key(path) == hashlib.sha256(b"correct horse battery staple").digest()
    # 32 printable characters: a raw key or a passphrase? auto refuses to guess; key_format decides
    ambiguous = _key_file(tmp_path, b"abcdefghijklmnopqrstuvwxyz012345", "amb.key")
    with pytest.raises(ValueError, match="key_format"):
        read_signing_key(ambiguous)
    assert read_signing_key(ambiguous, "passphrase") == hashlib.sha256(b"abcdefghijklmnopqrstuvwxyz012345").digest()
    assert read_signing_key(ambiguous, "raw") == b"abcdefghijklmnopqrstuvwxyz012345"


def test_relative_path_is_resolved_when_the_config_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _key_file(tmp_path, KEY)
    monkeypatch.chdir(tmp_path)
    cfg = TelemetrySection(signing={"key_file": "signing.key"})
    assert cfg.signing is not None and cfg.signing.key_file == tmp_path / "signing.key"
    assert cfg.signing.key_file.is_absolute() and cfg.signing.link_id == 1 and not cfg.signing.allow_unsigned


@pytest.mark.parametrize(
    "content,fmt,fragments",
    [
        (None, "auto", ["does not exist", "head -c 32 /dev/urandom"]),
        (b"", "auto", ["holds 0 bytes", "32-byte raw key"]),
        (KEY[:31], "auto", ["holds 31 bytes", "64 hex digits"]),
        (KEY + b"\x00", "auto", ["holds 33 bytes"]),
        (b"z" * 64, "hex", ["not 64 hex digits"]),
        (KEY.hex().encode()[:-1], "hex", ["not 64 hex digits"]),
        (KEY + KEY, "raw", ["holds 64 bytes", "exactly 32 bytes"]),
        (bytes(32), "raw", ["all-zero key", "generate a random key"]),
        (b"0" * 64, "auto", ["all-zero key"]),
        (b" padded passphrase", "auto", ["printable ASCII without leading or trailing spaces"]),
        (b"two\nlines\n", "passphrase", ["one line of printable ASCII"]),
        (b"x" * 5000, "auto", ["far too many"]),
    ],
    ids=["missing", "empty", "31-bytes", "33-bytes", "not-hex", "63-hex", "raw-64", "zero-raw", "zero-hex",
         "padded", "two-lines", "huge"],
)
def test_bad_key_files_are_config_errors_naming_the_field(
    tmp_path: Path, content: bytes | None, fmt: str, fragments: list[str]
) -> None:
    path = tmp_path / "signing.key"
    if content is not None:
        _key_file(tmp_path, content)
    cfg = _cfg_file(tmp_path, {"key_file": str(path), "key_format": fmt})
    msg = expect_config_error(load_payload_config, cfg, "telemetry.signing.key_file", str(path), *fragments)
    if content:
        assert content.decode("latin-1") not in msg and KEY.hex() not in msg  # never the secret


def test_not_a_regular_file(tmp_path: Path) -> None:
    """A directory, a FIFO (reading it would block the start for ever), a device: refused without reading."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path in (tmp_path, fifo, Path("/dev/zero")):
        expect_config_error(load_payload_config, _cfg_file(tmp_path, {"key_file": str(path)}),
                            "telemetry.signing.key_file", "not a regular file")


def test_unreadable_key_file() -> None:
    """As the service user would meet it (root reads any file, so under root the case runs as nobody)."""
    base = shared_dir()
    try:
        load_payload_config(_cfg_file(base, {"key_file": str(_key_file(base, KEY, name="warm.key"))}))  # imports
        path = _key_file(base, KEY, mode=0o000)
        give_to_nobody(path)
        cfg = _cfg_file(base, {"key_file": str(path)})
        cfg.chmod(0o644)

        def case() -> None:
            with pytest.raises(PermissionError):
                path.read_bytes()  # really unprivileged: the mode bits hold
            expect_config_error(load_payload_config, cfg, "telemetry.signing.key_file", "cannot be read", "chmod 600")

        run_unprivileged(case)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_signing_block_is_strict(tmp_path: Path) -> None:
    path = _key_file(tmp_path, KEY)
    expect_config_error(load_payload_config, _cfg_file(tmp_path, {"key_file": str(path), "allow_unsgined": True}),
                        "telemetry.signing.allow_unsgined", "unknown key")
    expect_config_error(load_payload_config, _cfg_file(tmp_path, {"key_file": str(path), "link_id": 256}),
                        "telemetry.signing.link_id", "256", "less than or equal to 255")
    expect_config_error(load_payload_config, _cfg_file(tmp_path, {"key_format": "base64", "key_file": str(path)}),
                        "telemetry.signing.key_format", "'base64'")
    expect_config_error(load_payload_config, _cfg_file(tmp_path, {"link_id": 3}),
                        "telemetry.signing.key_file", "required")


def test_world_readable_key_file_is_a_warning_without_the_key(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    passphrase = "hunter2-but-longer"
    path = _key_file(tmp_path, passphrase.encode(), mode=0o644)
    with caplog.at_level(logging.INFO):
        cfg = load_payload_config(_cfg_file(tmp_path, {"key_file": str(path)}))
        tel = Telemetry(cfg.telemetry.model_copy(update={"connection": "udp:127.0.0.1:9"}))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("chmod 600" in w and str(path) in w and "0o644" in w for w in warnings), warnings
    key = hashlib.sha256(passphrase.encode()).digest()
    assert tel.signing is not None and passphrase not in repr(tel.signing) and key.hex() not in repr(tel.signing)
    for text in [r.getMessage() for r in caplog.records] + [repr(cfg), str(tel.summary())]:
        assert passphrase not in text and key.hex() not in text and str(key) not in text
    caplog.clear()
    path.chmod(0o600)
    with caplog.at_level(logging.WARNING):
        load_payload_config(_cfg_file(tmp_path, {"key_file": str(path)}))
    assert not caplog.records


def test_key_file_gone_after_the_config_loaded(tmp_path: Path) -> None:
    """The key is read again when the link is built: a file removed since is a TelemetryError, not an
    unsigned link."""
    path = _key_file(tmp_path, KEY)
    cfg = TelemetrySection(connection="udp:127.0.0.1:9", signing={"key_file": str(path)})
    path.unlink()
    with pytest.raises(TelemetryError, match="telemetry.signing.key_file.*does not exist"):
        Telemetry(cfg)


def test_cli_validate_config_with_a_bad_key_file(tmp_path: Path) -> None:
    path = _key_file(tmp_path, b"short")
    bad = _key_file(tmp_path, KEY[:20], "bad.key")
    out = run_cli(["-m", "payload", "validate-config", str(_cfg_file(tmp_path, {"key_file": str(bad)}))])
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "telemetry.signing.key_file" in out.stderr and "holds 20 bytes" in out.stderr
    good = _cfg_file(tmp_path, {"key_file": str(path), "key_format": "passphrase"})
    ok = run_cli(["-m", "payload", "validate-config", str(good)])
    assert ok.returncode == 0, ok.stderr


def test_preflight_line_says_whether_signing_is_on() -> None:
    off = check_signing(None)
    assert off.ok and "off" in off.detail
    counts = {"link_id": 1, "allow_unsigned": False, "rejected_unsigned": 5, "rejected_bad_signature": 2,
              "rejected_replay": 0}
    none_seen = check_signing({**counts, "signed_from_vehicle": 0})
    assert not none_seen.ok and "signing setup" in none_seen.fix and "5 unsigned" in none_seen.detail
    seen = check_signing({**counts, "signed_from_vehicle": 40})
    assert seen.ok and "40 signed packets from the vehicle" in seen.detail and "unsigned refused" in seen.detail
    lax = check_signing({**counts, "allow_unsigned": True, "signed_from_vehicle": 0})
    assert not lax.ok and "no spoofing protection" in lax.detail


# -- properties -------------------------------------------------------------------------------------------


@PROPS
@given(raw=st.binary(max_size=200))
def test_any_file_content_is_a_key_or_a_value_error(raw: bytes, tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("k") / "key"
    path.write_bytes(raw)
    for fmt in ("auto", "raw", "hex", "passphrase"):
        try:
            key = read_signing_key(path, fmt)
        except ValueError as err:
            assert str(path) in str(err)
        else:
            assert len(key) == 32 and key != bytes(32)


@PROPS
@given(key=st.binary(min_size=32, max_size=32).filter(lambda k: k != bytes(32)), newline=st.sampled_from(["", "\n"]))
def test_every_key_round_trips_as_raw_and_hex(key: bytes, newline: str, tmp_path_factory) -> None:
    d = tmp_path_factory.mktemp("k")
    (d / "raw").write_bytes(key)
    (d / "hex").write_text(key.hex() + newline)
    assert read_signing_key(d / "hex") == key
    assert read_signing_key(d / "raw", "raw") == key
    if not all(0x20 <= b < 0x7F for b in key.rstrip(b"\n")):  # the printable ones are ambiguous under auto
        assert read_signing_key(d / "raw") == key


@PROPS
@given(phrase=st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=80)
       .filter(lambda s: s == s.strip()))
def test_passphrases_hash_like_mavproxy(phrase: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("k") / "key"
    path.write_text(phrase + "\n")
    assert read_signing_key(path, "passphrase") == hashlib.sha256(phrase.encode("ascii")).digest()


def test_mode_bits_of_a_fresh_key_file(tmp_path: Path) -> None:
    """What the README tells operators to do leaves no warning-worthy bits."""
    path = _key_file(tmp_path, KEY)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert PayloadConfig.model_validate(
        {"model": {"bundle": "b"}, "telemetry": {"signing": {"key_file": str(path)}}}
    ).telemetry.signing is not None
