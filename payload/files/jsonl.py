"""The crash-safe JSON-lines appender every record file uses, and its readers.

`JsonlWriter` is the one writer of JSONL in the payload (detections.jsonl and the per-frame
classifications.jsonl): each record is written, flushed and fsync'd before `write` returns, so a
power cut loses at most the record being written; a full disk leaves no partial line and keeps the
record queued until space returns. A torn last line is reported and skipped by `read_jsonl`, and
`payload export` rebuilds every other layer from what survived.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MAX_PENDING = 10_000  # records held in memory while the disk is full (~10 MB)


class JsonlBacklogError(RuntimeError):
    """The disk has been full for so long that the in-memory queue of unwritten records is full."""


class JsonlWriter:
    """Append records to a JSON-lines file durably (flush + fsync per record)."""

    def __init__(self, path: str | Path, fsync: bool = True, *, ensure_ascii: bool = False,
                 allow_nan: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fsync = fsync
        self._ensure_ascii = ensure_ascii
        self._allow_nan = allow_nan
        # unbuffered binary: a failed write (disk full) leaves nothing queued in a Python buffer that a
        # later flush would append behind our back; the writer truncates the partial line itself
        self._f = open(self.path, "ab", buffering=0)  # noqa: SIM115 - held open for the whole flight
        self._repair_torn_tail()
        self.count = 0
        self.pending: list[bytes] = []  # records that failed to write (disk full), retried first
        # bytes of whole records on disk: a reader beside the writer stops here (iter_jsonl end=)
        self.committed_bytes = os.fstat(self._f.fileno()).st_size
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
        line = json.dumps(record, separators=(",", ":"), ensure_ascii=self._ensure_ascii, allow_nan=self._allow_nan)
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
            self.committed_bytes = start + len(data)

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
class JsonlProblems:
    """What `iter_jsonl` skipped (1-based line numbers), filled in as it goes."""

    bad_lines: list[tuple[int, str]] = field(default_factory=list)
    torn_last_line: bool = False


@dataclass
class JsonlReadResult(JsonlProblems):
    """A whole file read: the records that parsed, and the lines that did not."""

    records: list[dict[str, Any]] = field(default_factory=list)


def iter_jsonl(
    path: str | Path, end: int | None = None, problems: JsonlProblems | None = None
) -> Iterator[dict[str, Any]]:
    """Yield the records of a JSON-lines file one at a time, skipping (and noting) lines that do not parse.

    Streaming keeps memory flat however long the flight: the layers are rebuilt from the file, not
    from a list of every record. `end` stops at that byte offset (a size the writer reported as
    committed), so a reader running beside the writer never sees a record still being appended.
    """
    pos = 0
    with open(path, "rb") as f:
        for i, line in enumerate(f, start=1):
            if end is not None:
                if pos >= end:
                    return
                if pos + len(line) > end:
                    line = line[: end - pos]
            pos += len(line)
            if not line.strip():
                continue
            try:
                rec = json.loads(line.decode("utf-8"))
                if not isinstance(rec, dict):
                    raise ValueError("not a JSON object")
            except (ValueError, UnicodeDecodeError) as err:
                if problems is not None:
                    problems.bad_lines.append((i, str(err)[:120]))
                    # only the last line can lack its newline: the run was cut while writing it
                    problems.torn_last_line = not line.endswith(b"\n")
                continue
            yield rec


def read_jsonl(path: str | Path) -> JsonlReadResult:
    """Read a whole JSON-lines file into memory (tests, tools and small files; the payload streams)."""
    out = JsonlReadResult()
    out.records = list(iter_jsonl(path, problems=out))
    return out
