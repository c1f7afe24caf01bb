"""Free-disk floor for the outputs that can be given up: crops stop first, detections.jsonl goes on.

A JPEG crop is ~10-30 kB, a detection record ~1 kB. The review's tiles (payload/sinks/review.py) are
JPEGs too and ask the same verdict (`crops_allowed`): they stop and resume with the crops. When the card
fills during a long flight, crops are what must stop: the records are the product (and `payload export`
rebuilds every layer from them). Below the floor the crops are skipped (and counted), the operator is
told once through the log and a STATUSTEXT (retried until a link takes it), and crops resume when space
comes back above the floor plus a margin (hysteresis, so a card hovering at the floor does not flap).

`disk_usage` is checked at most every `check_every_s` seconds: statvfs is cheap, but a frame can
have 20 flagged tiles and the writer thread must stay fast.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("payload.disk")

SEVERITY_CRITICAL = 2
SEVERITY_NOTICE = 5
RESUME_MARGIN_MB = 50.0


class DiskGuard:
    """Decides whether crops may still be written, and alerts on each change."""

    def __init__(
        self,
        path: str | Path,
        floor_mb: float,
        *,
        send: Callable[[int, str], bool] | None = None,
        check_every_s: float = 2.0,
        usage: Callable[[str], Any] = shutil.disk_usage,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self.floor_mb = float(floor_mb)
        self.resume_mb = self.floor_mb + RESUME_MARGIN_MB
        self._send = send
        self._every = check_every_s
        self._usage = usage
        self._clock = clock
        self._next_check = -1e18
        self.low = False
        self.free_mb: float | None = None
        self.crops_skipped = 0
        self.low_events = 0
        self.check_errors = 0
        self._pending_alert: tuple[int, str] | None = None

    def _check(self) -> None:
        try:
            free_mb = self._usage(str(self.path)).free / 1e6
        except OSError as err:
            # cannot tell: keep the last decision (a failing statvfs must not stop the records)
            self.check_errors += 1
            log.warning("free disk check of %s failed: %s", self.path, err)
            return
        self.free_mb = free_mb
        if not self.low and free_mb < self.floor_mb:
            self.low = True
            self.low_events += 1
            log.error("disk low: %.0f MB free at %s, below the %.0f MB floor: crops stop, detections.jsonl goes on",
                      free_mb, self.path, self.floor_mb)
            self._pending_alert = (SEVERITY_CRITICAL, f"cropscout: disk {free_mb:.0f}MB free, crops off"[:50])
        elif self.low and free_mb >= self.resume_mb:
            self.low = False
            log.warning("disk space back: %.0f MB free at %s; crops resume", free_mb, self.path)
            self._pending_alert = (SEVERITY_NOTICE, f"cropscout: disk {free_mb:.0f}MB free, crops on"[:50])

    def _flush_alert(self) -> None:
        if self._pending_alert is None or self._send is None:
            return
        try:
            sent = self._send(*self._pending_alert)
        except Exception as err:  # noqa: BLE001 - an alert must never stop the records
            log.debug("disk alert not sent: %s", err)
            sent = False
        if sent:
            self._pending_alert = None

    def poll(self) -> bool:
        """Check the free space (throttled), send a pending alert; returns whether the disk is low.

        Called once per frame whether crops are on or not: the operator hears about a filling card
        even when only records are written.
        """
        now = self._clock()
        if now >= self._next_check:
            self._next_check = now + self._every
            self._check()
        self._flush_alert()
        return self.low

    def crops_allowed(self) -> bool:
        """False while free space is below the floor (counts the crop as skipped)."""
        if self.poll():
            self.crops_skipped += 1
            return False
        return True

    def summary(self) -> dict[str, Any]:
        """For the run statistics and logs."""
        return {"free_mb": None if self.free_mb is None else round(self.free_mb, 1), "floor_mb": self.floor_mb,
                "low": self.low, "low_events": self.low_events, "crops_skipped": self.crops_skipped}
