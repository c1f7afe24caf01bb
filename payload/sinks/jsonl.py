"""detections.jsonl: the append-only source of truth, one JSON record per line.

Each record is written, flushed and fsync'd before `write` returns, so a power cut loses at most
the record being written; that torn last line is reported and skipped by `read_jsonl`, and
`payload export` rebuilds every other layer from what survived.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DETECTIONS_FILE = "detections.jsonl"
MAX_PENDING = 10_000  # records held in memory while the disk is full (~10 MB)


class JsonlBacklogError(RuntimeError):
    """The disk has been full for so long that the in-memory queue of unwritten records is full."""


class JsonlWriter:
    """Append records to a JSON-lines file durably (flush + fsync per record)."""

    def __init__(self, path: str | Path, fsync: bool = True) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fsync = fsync
        # unbuffered binary: a failed write (disk full) leaves nothing queued in a Python buffer that a
        # later flush would append behind our back; the writer truncates the partial line itself
        self._f = open(self.path, "ab", buffering=0)  # noqa: SIM115 - held open for the whole flight
        self._repair_torn_tail()
        self.count = 0
        self.pending: list[bytes] = []  # records that failed to write (disk full), retried first
        self.write_errors = 0

    def _repair_torn_tail(self) -> None:
        """A previous run cut mid-line would glue our first record onto its torn one: start a fresh line."""
        size = self.path.stat().st_size
        if size == 0:
            return
        with open(self.path, "rb") as f:
            f.seek(size - 1)
            last = f.read(1)
        if last != b"\n":
            log.warning("%s: last line of a previous run is torn; starting a new line after it", self.path)
            self._f.write(b"\n")

    def write(self, record: Mapping[str, Any]) -> None:
        """Append one record durably; on OSError (disk full) keep it queued, leave no partial line, re-raise.

        Queued records are written first on the next call (order kept), so a card that fills and is
        then freed (crops stopped, old files deleted) loses no record that was handed in meanwhile.
        """
        line = json.dumps(record, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        if len(self.pending) >= MAX_PENDING:
            raise JsonlBacklogError(f"{self.path}: {len(self.pending)} records already wait for disk space; "
                                    "record dropped")
        self.pending.append((line + "\n").encode("utf-8"))
        self._drain()

    def _drain(self) -> None:
        fd = self._f.fileno()
        while self.pending:
            data = self.pending[0]
            start = os.fstat(fd).st_size
            try:
                view = memoryview(data)
                while view:
                    n = self._f.write(view)
                    if not n:
                        raise OSError(f"{self.path}: short write")
                    view = view[n:]
                if self._fsync:
                    os.fsync(fd)
            except OSError:
                self.write_errors += 1
                try:
                    os.ftruncate(fd, start)  # no torn line in the middle of the file
                except OSError as err:
                    log.error("%s: could not remove a partial record after a failed write: %s", self.path, err)
                raise
            self.pending.pop(0)
            self.count += 1

    def close(self) -> None:
        if not self._f.closed:
            if self.pending:
                try:
                    self._drain()
                except OSError as err:
                    log.error("%s: %d record(s) could not be written at close: %s", self.path, len(self.pending),
                              err)
            if self._fsync:
                os.fsync(self._f.fileno())
            self._f.close()


@dataclass
class JsonlReadResult:
    """Records that parsed, and the lines that did not (1-based line numbers)."""

    records: list[dict[str, Any]] = field(default_factory=list)
    bad_lines: list[tuple[int, str]] = field(default_factory=list)
    torn_last_line: bool = False


def read_jsonl(path: str | Path) -> JsonlReadResult:
    """Read a JSON-lines file, skipping (and reporting) lines that do not parse."""
    out = JsonlReadResult()
    raw = Path(path).read_bytes()
    lines = raw.split(b"\n")
    ends_clean = raw.endswith(b"\n") or not raw
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        is_last = i == len(lines) or (i == len(lines) - 1 and not lines[-1])
        try:
            rec = json.loads(line.decode("utf-8"))
            if not isinstance(rec, dict):
                raise ValueError("not a JSON object")
            out.records.append(rec)
        except (ValueError, UnicodeDecodeError) as err:
            out.bad_lines.append((i, str(err)[:120]))
            if is_last and not ends_clean:
                out.torn_last_line = True
    return out
