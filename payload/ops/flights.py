"""One folder per flight under `output.dir`: which folder a run writes to, its marker, and the list of them.

`output.dir` is a root. Under the systemd unit every flight used to land in the same folder and a run
resumed whatever detections.jsonl it found, so Tuesday's flight silently joined Monday's map and
prescription. Now each `payload run` writes to a new folder named by its UTC start and, where the link
told them, the vehicle's system id and the autopilot's boot (the flight: one power-on of the flight
controller), e.g. `2026-12-07T041200Z_sys1_boot035812Z`: names sort by start and hold no `:`.

The folder's marker, `flight.json`, is written when the run starts (`state: running`) and completed
when it stops cleanly (`state: finished`, with the end and the run's figures). A restart after a crash
resumes a folder only when its marker is still `running`, no live process holds its lock, and its
vehicle identity is the same flight: same system id and the same autopilot boot (within
`BOOT_MATCH_S`). A finished flight is never appended to; `payload export A B` fuses flights on purpose.
Without a known identity (no link, or no answer before the connect timeout) a run never resumes by
itself: `payload run --flight-dir DIR` continues (or names) one folder explicitly.
"""

from __future__ import annotations

import fcntl
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from payload.errors import ConfigError
from payload.files.atomic import atomic_write_text

log = logging.getLogger("payload.flights")

FLIGHT_FILE = "flight.json"
LOCK_FILE = ".flight.lock"
FLIGHT_SCHEMA = "cropscout.flight/1"
# two estimates of one autopilot boot differ by the link's latency (milliseconds); two boots of one
# vehicle are at least a reboot apart
BOOT_MATCH_S = 5.0
_HOST_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def host_boot_id() -> str | None:
    """This computer's boot id: monotonic times compare only within one boot of the companion."""
    try:
        return _HOST_BOOT_ID.read_text(encoding="ascii").strip() or None
    except OSError:
        return None


@dataclass(frozen=True)
class VehicleIdentity:
    """Which flight a run belongs to: the vehicle's system id and when its autopilot booted.

    `boot_utc` is the boot on the wall clock; `boot_mono` the same moment on the companion's monotonic
    clock, which a clock step (NTP, GPS time) between a crash and the restart does not move, so it is
    preferred when both runs ran in one boot of the companion (`host_boot`).
    """

    sysid: int | None = None
    boot_utc: float | None = None
    boot_mono: float | None = None
    host_boot: str | None = None

    @property
    def known(self) -> bool:
        """Both the vehicle and its boot are known: enough to tell one flight from another."""
        return self.sysid is not None and self.boot_utc is not None

    def same_flight(self, other: VehicleIdentity) -> bool:
        """The same vehicle in the same power-on of its autopilot (False when either is unknown)."""
        if not (self.known and other.known) or self.sysid != other.sysid:
            return False
        if (self.host_boot is not None and self.host_boot == other.host_boot
                and self.boot_mono is not None and other.boot_mono is not None):
            return abs(self.boot_mono - other.boot_mono) <= BOOT_MATCH_S
        assert self.boot_utc is not None and other.boot_utc is not None  # known
        return abs(self.boot_utc - other.boot_utc) <= BOOT_MATCH_S

    @classmethod
    def from_dict(cls, d: Any) -> VehicleIdentity:
        """The identity a marker recorded (an unreadable one is unknown, so never resumed)."""
        if not isinstance(d, dict):
            return cls()

        def num(key: str) -> float | None:
            v = d.get(key)
            return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None

        sysid = d.get("sysid")
        host = d.get("host_boot")
        return cls(sysid if isinstance(sysid, int) and not isinstance(sysid, bool) else None,
                   num("boot_utc"), num("boot_mono"), host if isinstance(host, str) else None)


def utc_stamp(t: float) -> str:
    """A UTC time as a folder name's part: sortable, no `:` (FAT32 cards and Windows refuse it)."""
    return time.strftime("%Y-%m-%dT%H%M%SZ", time.gmtime(t))


def folder_name(start_utc: float, who: VehicleIdentity) -> str:
    """The flight folder's name: its UTC start, then the system id and the autopilot's boot when known."""
    name = utc_stamp(start_utc)
    if who.sysid is not None:
        name += f"_sys{who.sysid}"
    if who.boot_utc is not None:
        name += "_boot" + time.strftime("%H%M%SZ", time.gmtime(who.boot_utc))
    return name


def read_marker(folder: Path) -> dict[str, Any] | None:
    """A folder's flight.json (None: none, or unreadable)."""
    try:
        d = json.loads((folder / FLIGHT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) and d.get("schema") == FLIGHT_SCHEMA else None


def _lock(folder: Path) -> IO[bytes] | None:
    """The folder's run lock, held until the process ends (a SIGKILL frees it); None: a live run holds it."""
    f = open(folder / LOCK_FILE, "ab")  # noqa: SIM115 - held open for the whole run, closed by FlightFolder
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return None
    return f


class FlightFolder:
    """The folder one run writes to, locked for the run; `finish` completes its marker at a clean stop."""

    def __init__(self, path: Path, marker: dict[str, Any], lock: IO[bytes], resumed: bool) -> None:
        self.path = path
        self.marker = marker
        self.resumed = resumed
        self._lock: IO[bytes] | None = lock

    def _write(self) -> None:
        atomic_write_text(self.path / FLIGHT_FILE, json.dumps(self.marker, indent=2) + "\n")

    def finish(self, stats: dict[str, Any] | None = None) -> None:
        """The run stopped cleanly: the flight is finished and will never be appended to."""
        now = time.time()
        self.marker.update(state="finished", finished_utc=round(now, 3), finished=utc_stamp(now))
        if stats is not None:
            self.marker["stats"] = {k: stats.get(k) for k in ("frames_captured", "frames_processed", "backend")}
        self._write()
        # a finished flight is never locked again: the lock file goes (a run that opened it meanwhile reads
        # the marker again under its lock and finds the flight finished)
        (self.path / LOCK_FILE).unlink(missing_ok=True)
        self.release()

    def abandon_if_empty(self) -> None:
        """A new folder that a failed start left holding nothing but its marker is removed: a config or
        bundle error must not leave an empty "flight" in the list. Anything written stays."""
        if self.resumed or any(p.name not in (FLIGHT_FILE, LOCK_FILE) for p in self.path.iterdir()):
            return
        self.release()
        for name in (FLIGHT_FILE, LOCK_FILE):
            (self.path / name).unlink(missing_ok=True)
        try:
            self.path.rmdir()
        except OSError:  # something appeared meanwhile: keep it
            pass

    def release(self) -> None:
        """Let go of the lock (the marker stays as it is: `running` after a failed run, so it can resume)."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def _new_marker(start: float, who: VehicleIdentity) -> dict[str, Any]:
    return {"schema": FLIGHT_SCHEMA, "state": "running", "started_utc": round(start, 3), "started": utc_stamp(start),
            "vehicle": asdict(who), "resumes": 0}


def _resume(folder: Path, marker: dict[str, Any]) -> FlightFolder | None:
    """The unfinished folder locked for this run (None: a live run holds it, or finished it meanwhile)."""
    lock = _lock(folder)
    if lock is None:
        return None
    now = read_marker(folder)  # read again under the lock: the run that held it may have finished since
    if now is None or now.get("state") != "running":
        lock.close()
        return None
    marker = now
    marker["resumes"] = int(marker.get("resumes") or 0) + 1
    ff = FlightFolder(folder, marker, lock, resumed=True)
    ff._write()
    return ff


def unfinished_of(root: Path, who: VehicleIdentity) -> Iterator[tuple[Path, dict[str, Any]]]:
    """The folders under `root` of this flight whose run did not stop cleanly, newest first."""
    if not who.known or not root.is_dir():
        return
    for folder in sorted((p for p in root.iterdir() if p.is_dir()), reverse=True):
        marker = read_marker(folder)
        if marker is not None and marker.get("state") == "running" and \
                who.same_flight(VehicleIdentity.from_dict(marker.get("vehicle"))):
            yield folder, marker


def open_flight(root: Path, who: VehicleIdentity, *, now: float | None = None) -> FlightFolder:
    """The folder this run writes to: an unfinished run of the same flight (a restart after a crash),
    else a new folder under `root`. The folder is locked and its marker says `running`."""
    for folder, marker in unfinished_of(root, who):
        ff = _resume(folder, marker)
        if ff is not None:
            log.warning("flight: resuming %s (same vehicle and autopilot boot, not finished: a restart after a "
                        "crash)", folder)
            return ff
        log.warning("flight: %s is this flight's but another payload holds it; starting a new folder", folder)
    start = time.time() if now is None else now
    base = folder_name(start, who)
    for n in range(1, 1000):
        folder = root / (base if n == 1 else f"{base}-{n}")
        try:
            folder.mkdir(parents=True)
        except FileExistsError:
            continue
        lock = _lock(folder)
        if lock is None:  # created this instant by another run: take the next name
            continue
        ff = FlightFolder(folder, _new_marker(start, who), lock, resumed=False)
        ff._write()
        log.info("flight: writing to %s", folder)
        return ff
    raise ConfigError(f"output.dir {root}: no free flight folder name for {base}; clear old flights from it")


def open_flight_dir(folder: Path, who: VehicleIdentity, *, now: float | None = None) -> FlightFolder:
    """The exact folder `payload run --flight-dir` names: new, or an unfinished run to continue; never a
    finished flight (ConfigError saying why and what to do instead)."""
    marker = read_marker(folder)
    if marker is not None and marker.get("state") == "finished":
        raise ConfigError(f"--flight-dir {folder}: that flight finished cleanly ({marker.get('finished')}) and a "
                          "finished flight is never appended to; give a new folder, or fuse flights afterwards "
                          "with `payload export A B --out C`")
    folder.mkdir(parents=True, exist_ok=True)
    if marker is not None:
        ff = _resume(folder, marker)
        if ff is None:
            raise ConfigError(f"--flight-dir {folder}: another payload is writing to it; stop that one first")
        log.warning("flight: continuing unfinished %s", folder)
        return ff
    lock = _lock(folder)
    if lock is None:
        raise ConfigError(f"--flight-dir {folder}: another payload is writing to it; stop that one first")
    start = time.time() if now is None else now
    ff = FlightFolder(folder, _new_marker(start, who), lock, resumed=False)
    ff._write()
    return ff


# ---------------------------------------------------------------- `payload flights ROOT`


@dataclass
class FlightSummary:
    """One row of `payload flights`: what an operator needs to pick a flight (JSON-ready with asdict)."""

    folder: str
    start: str | None
    duration_s: float | None
    area_ha: float | None
    zones: int | None
    state: str  # finished, running (a live run holds it), unfinished (crashed or killed), no marker
    sysid: int | None
    resumes: int


def _features(path: Path) -> list[dict[str, Any]] | None:
    try:
        feats = json.loads(path.read_text(encoding="utf-8")).get("features")
    except (OSError, ValueError, AttributeError):
        return None
    return feats if isinstance(feats, list) else None


def _seen_area_ha(folder: Path) -> float | None:
    """The ground seen at least once (coverage.geojson, written with the map's layers)."""
    for f in _features(folder / "coverage.geojson") or []:
        props = f.get("properties") or {}
        if props.get("min_looks") == 1 and isinstance(props.get("area_m2"), int | float):
            return round(float(props["area_m2"]) / 1e4, 3)
    return None


def _last_write(folder: Path) -> float | None:
    times = [p.stat().st_mtime for p in folder.glob("*.jsonl") if p.is_file()]
    return max(times) if times else None


def _held(folder: Path) -> bool:
    if not (folder / LOCK_FILE).exists():
        return False
    lock = _lock(folder)
    if lock is None:
        return True
    lock.close()
    return False


def summarize(folder: Path) -> FlightSummary | None:
    """A folder's row (None: not a flight folder: neither a marker nor detections.jsonl)."""
    marker = read_marker(folder)
    if marker is None and not (folder / "detections.jsonl").is_file():
        return None
    marker = marker or {}
    started = marker.get("started_utc")
    start = float(started) if isinstance(started, int | float) else None
    end = marker.get("finished_utc") if marker.get("state") == "finished" else _last_write(folder)
    duration = round(float(end) - start, 1) if start is not None and isinstance(end, int | float) else None
    if not marker:
        state = "no marker"
    elif marker.get("state") == "finished":
        state = "finished"
    else:
        state = "running" if _held(folder) else "unfinished"
    zones = _features(folder / "zones.geojson")
    who = VehicleIdentity.from_dict(marker.get("vehicle"))
    return FlightSummary(folder.name, marker.get("started") if isinstance(marker.get("started"), str) else None,
                         duration, _seen_area_ha(folder), None if zones is None else len(zones), state, who.sysid,
                         int(marker.get("resumes") or 0))


def list_flights(root: Path) -> list[FlightSummary]:
    """Every flight folder directly under `root`, oldest first, after the root's own records if it holds some
    from before this layout ("."; ConfigError: no such folder)."""
    if not root.is_dir():
        raise ConfigError(f"{root}: not a folder; give the output.dir root that holds the flight folders")
    rows = [summarize(p) for p in sorted(root.iterdir()) if p.is_dir()]
    flat = summarize(root)  # the records of runs from before one folder per flight, in the root itself
    if flat is not None:
        flat.folder = "."
    return [r for r in (flat, *rows) if r is not None]


def _cell(v: Any, fmt: str = "{}") -> str:
    return "-" if v is None else fmt.format(v)


def flights_table(rows: list[FlightSummary]) -> str:
    """The rows as an aligned text table (what `payload flights ROOT` prints)."""
    head = ("folder", "start", "duration", "area_ha", "zones", "state", "sysid", "resumes")
    body = [(r.folder, _cell(r.start), _cell(None if r.duration_s is None else r.duration_s / 60, "{:.1f} min"),
             _cell(r.area_ha, "{:.2f}"), _cell(r.zones), r.state, _cell(r.sysid), str(r.resumes)) for r in rows]
    widths = [max(len(str(c)) for c in col) for col in zip(head, *body, strict=False)]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                     for line in (head, *body))


def flights_from_cli(root: str, as_json: bool) -> int:
    """`payload flights ROOT [--json]`: the table (or a JSON list) on stdout."""
    rows = list_flights(Path(root).expanduser())
    if as_json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
    elif rows:
        print(flights_table(rows))
    else:
        print(f"no flight folders in {root}")
    return 0
