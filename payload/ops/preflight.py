"""Preflight: the checks an operator wants to see once, in one block, before the drone takes off.

GPS fix, home position, telemetry link and clock, the stream rates the autopilot sends (against
the floors in telemetry.rates), camera open, model loaded, free disk above a floor. Printed and
logged as one block; with `preflight.strict` a failed check stops the start
(PreflightError, a UserError naming the failed checks), otherwise the run goes on and every
detection carries flags for what was wrong.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from payload.config import PreflightSection
from payload.errors import UserError
from payload.settings.geotag import GeotagSection
from payload.types import GPS_FIX_NAMES, PoseSource

log = logging.getLogger(__name__)


class PreflightError(UserError):
    """A preflight check failed while preflight.strict is set."""


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


@dataclass
class PreflightReport:
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def block(self) -> str:
        """The human-readable block (one line per check)."""
        width = max((len(c.name) for c in self.checks), default=4)
        lines = [f"PREFLIGHT {'OK' if self.ok else 'NOT OK'}"]
        for c in self.checks:
            line = f"  [{'ok' if c.ok else 'FAIL'}] {c.name:<{width}}  {c.detail}"
            if not c.ok and c.fix:
                line += f" -> {c.fix}"
            lines.append(line)
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [c.__dict__ for c in self.checks]}


def check_disk(path: str | Path, min_free_mb: float) -> Check:
    p = Path(path)
    probe = p
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free_mb = shutil.disk_usage(probe).free / 1e6
    return Check(
        "free disk",
        free_mb >= min_free_mb,
        f"{free_mb:,.0f} MB free at {probe} (floor {min_free_mb:,.0f} MB)",
        "free space on the card or lower preflight.min_free_disk_mb",
    )


def check_telemetry(
    telemetry: PoseSource | None, geotag: GeotagSection, wait_s: float = 0.0, connect_wait_s: float = 0.0
) -> list[Check]:
    """Link, clock, GPS fix and home position from a Telemetry (or None when none is configured).

    Waits up to `connect_wait_s` for a link connecting in the background to succeed or fail, then
    up to `wait_s` more for a GPS fix and a home position.
    """
    if telemetry is None:
        return [Check("telemetry link", False, "no telemetry link configured", "set telemetry.connection")]
    deadline = time.monotonic() + connect_wait_s
    while time.monotonic() < deadline:
        if getattr(telemetry, "connect_time_s", None) is not None or getattr(telemetry, "last_error", None):
            break
        time.sleep(0.1)
    deadline = time.monotonic() + wait_s
    while True:
        s = telemetry.summary()
        fix = s.get("fix_type")
        fix_ok = fix is not None and fix >= geotag.min_fix_type
        if (fix_ok and s.get("home") is not None) or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    checks = []
    err = getattr(telemetry, "last_error", None)
    link_detail = f"{s['connection']}: " + (
        f"connected in {s['connect_time_s']:.2f} s, last message {s['last_message_age_s']} s ago"
        if s.get("connect_time_s") is not None
        else f"not connected ({err or 'still trying'})"
    )
    checks.append(
        Check("telemetry link", bool(s.get("link_ok")), link_detail, "check telemetry.connection and the cable/radio")
    )
    if "signing" in s:  # a Telemetry (test doubles may not report it)
        checks.append(check_signing(s["signing"]))
    checks.append(
        Check(
            "clock sync",
            s.get("clock_offset_source") not in (None, "none"),
            f"autopilot clock offset from {s.get('clock_offset_source')}",
            "needs GLOBAL_POSITION_INT/ATTITUDE/SYSTEM_TIME from the autopilot",
        )
    )
    hdop = s.get("hdop")
    fix_name = "none" if fix is None else GPS_FIX_NAMES.get(fix, str(fix))
    checks.append(
        Check(
            "GPS fix",
            fix_ok and (hdop is None or hdop <= geotag.max_hdop),
            f"fix {fix_name}, HDOP {hdop}, {s.get('satellites')} satellites (need fix >= {geotag.min_fix_type}, "
            f"HDOP <= {geotag.max_hdop})",
            "wait for a 3D fix under open sky",
        )
    )
    if "rates" in s:  # a Telemetry (test doubles may not report it)
        checks.append(check_rates(telemetry, s) if s.get("link_ok") else check_rates_offline(s["rates"]))
    home = s.get("home")
    checks.append(
        Check(
            "home position",
            home is not None,
            "none received" if home is None else f"{home[0]:.7f}, {home[1]:.7f}, {home[2]:.1f} m MSL",
            "arm once or set home in the GCS (ground altitude falls back to GLOBAL_POSITION_INT)",
        )
    )
    return checks


def _rates_settled(r: dict[str, Any]) -> bool:
    return not str(r.get("method", "")).startswith("waiting") and r.get("measured_for_s", 0.0) >= r.get("window_s", 0.0)


def check_rates(telemetry: PoseSource, s: dict[str, Any]) -> Check:
    """The rates that arrive since the payload asked, against the floors (telemetry.rates.*_min_hz).

    Waits (at most the ACK timeout plus one measuring window, a few seconds) until one whole window has
    been measured since the last request, so the check judges what the autopilot does after being asked,
    not the 4 Hz a ground station had set before.
    """
    r = s["rates"]
    deadline = time.monotonic() + float(r.get("settle_s", 0.0)) + 0.5
    while not _rates_settled(r) and time.monotonic() < deadline:
        time.sleep(0.1)
        r = telemetry.summary()["rates"]
    measured = r.get("measured", {})
    parts, slow = [], []
    for name, hz in r.get("wanted_hz", {}).items():
        got = measured.get(name, {}).get("hz", 0.0)
        floor = r.get("floors_hz", {}).get(name)
        parts.append(f"{name} {got:.1f} Hz (asked {hz:g}" + ("" if floor is None else f", floor {floor:g}") + ")")
        if floor is not None and got < floor:
            slow.append(name)
    how = r.get("method", "none") if r.get("requested") else "not requested (telemetry.rates.request: false)"
    if r.get("fallback_reason"):
        how += f" after {r['fallback_reason']}"
    return Check(
        "telemetry rates",
        not slow,
        f"{'; '.join(parts)}; via {how}" + (f"; BELOW FLOOR: {', '.join(slow)}" if slow else ""),
        "the autopilot sends too slowly for geotagging: raise its stream rates on this port (SRn_ parameters on "
        "ArduPilot, MAV_*_RATE or mavlink stream on PX4), check the link's bandwidth, or lower "
        "telemetry.rates.attitude_min_hz / position_min_hz",
    )


def check_rates_offline(r: dict[str, Any]) -> Check:
    """No link: nothing arrives, so every floor is missed (named, with what was wanted)."""
    floors = r.get("floors_hz", {})
    return Check("telemetry rates", not floors, "no link: nothing measured (floors "
                 + ", ".join(f"{k} {v:g} Hz" for k, v in floors.items()) + ")", "bring the telemetry link up")


def check_signing(signing: dict[str, Any] | None) -> Check:
    """Whether MAVLink 2 signing is on and the vehicle's packets arrive signed (Telemetry.summary()['signing']).

    Off is not a failure (it is the default), but the line says what it means. On, the check passes
    only once signed packets from the vehicle have been accepted: until then the autopilot does not
    sign with our key, and (unless allow_unsigned) nothing from it is believed.
    """
    if signing is None:
        return Check("MAVLink signing", True, "off (telemetry.signing not set): any packet with the vehicle's "
                     "system id is believed")
    rejected = (f"dropped {signing['rejected_unsigned']} unsigned, {signing['rejected_bad_signature']} wrongly "
                f"signed, {signing['rejected_replay']} replayed")
    policy = "unsigned ACCEPTED (allow_unsigned: no spoofing protection)" if signing["allow_unsigned"] else (
        "unsigned refused")
    n = signing["signed_from_vehicle"]
    return Check(
        "MAVLink signing",
        n > 0,
        f"on, link_id {signing['link_id']}, {policy}; {n} signed packets from the vehicle; {rejected}",
        "the autopilot is not signing with this key: set the same key on it (MAVProxy `signing setup "
        "<passphrase>`, or Mission Planner's signing page) and check telemetry.signing.key_file",
    )


def run_preflight(
    cfg: PreflightSection,
    geotag: GeotagSection,
    out_dir: str | Path,
    telemetry: PoseSource | None = None,
    camera: tuple[bool, str] | None = None,
    model: tuple[bool, str] | None = None,
    connect_wait_s: float = 0.0,
) -> PreflightReport:
    """Run every check, log the block, and raise PreflightError when strict and anything failed.

    `camera` and `model` are (ok, detail) from whoever opened them (the runtime); None = not checked.
    """
    report = PreflightReport()
    report.checks += check_telemetry(telemetry, geotag, cfg.wait_fix_s, connect_wait_s)
    if camera is not None:
        report.checks.append(Check("camera", camera[0], camera[1], "check source.uri and the camera cable"))
    if model is not None:
        report.checks.append(Check("model", model[0], model[1], "check model.bundle"))
    report.checks.append(check_disk(out_dir, cfg.min_free_disk_mb))
    block = report.block()
    (log.info if report.ok else log.warning)("%s", block)
    if cfg.strict and not report.ok:
        names = ", ".join(c.name for c in report.failed)
        raise PreflightError(f"preflight failed ({names}):\n{block}\nfix these or set preflight.strict: false")
    return report
