"""Live alerts: one MAVLink STATUSTEXT to the ground station per newly confirmed disease zone.

Sent through the autopilot link (dronekit's `message_factory.statustext_encode` +
`send_mavlink`), so Mission Planner and QGroundControl show it in their messages panel. A
STATUSTEXT holds 50 characters; the text is built to fit (label, zone number, centroid,
peak probability). Alerts are rate-limited: ones due inside `min_interval_s` of the previous wait in a
small queue (the oldest are dropped and counted when it fills), so a burst of new zones over a
badly infected field does not flood the operator's screen or the radio link.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Literal

from pydantic import Field

from payload.configio import StrictModel
from payload.sinks.base import SinkBase, SinkContext, register_sink

log = logging.getLogger(__name__)

STATUSTEXT_MAX = 50
SEVERITIES = {
    "EMERGENCY": 0,
    "ALERT": 1,
    "CRITICAL": 2,
    "ERROR": 3,
    "WARNING": 4,
    "NOTICE": 5,
    "INFO": 6,
    "DEBUG": 7,
}


def zone_text(zone: dict[str, Any]) -> str:
    """'rust Z3 52.12345 -1.23456 p0.87' style text (zone number, centroid, peak probability), <= 50 ASCII."""
    if zone.get("text") is not None:  # a rack-face zone (payload/geo/facemap.py): its site address, no lat/lon
        from payload.geo.facemap import face_zone_alert

        return face_zone_alert(zone)
    label = str(zone.get("label", "?"))
    num = str(zone.get("id", "")).rsplit("-", 1)[-1]
    conf = float(zone.get("peak_p", 0))
    tail = f" Z{num} {float(zone['lat']):.5f} {float(zone['lon']):.5f} p{conf:.2f}"
    room = STATUSTEXT_MAX - len(tail)
    text = label[: max(room, 1)] + tail
    return text.encode("ascii", "replace").decode("ascii")[:STATUSTEXT_MAX]


class AlertSender:
    """Rate-limited STATUSTEXT sender; `send` is e.g. Telemetry.send_statustext(severity, text) -> bool."""

    def __init__(
        self,
        send: Callable[[int, str], bool],
        severity: str = "WARNING",
        min_interval_s: float = 5.0,
        max_pending: int = 10,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._send = send
        self.severity = SEVERITIES[severity]
        self.min_interval_s = min_interval_s
        self._pending: deque[str] = deque()
        self._max_pending = max_pending
        self._clock = clock
        self._last_sent: float | None = None
        self.sent: list[str] = []
        self.dropped = 0
        self.failed = 0

    def notify(self, text: str) -> None:
        """Queue one alert and send what is due."""
        if len(self._pending) >= self._max_pending:
            self._pending.popleft()
            self.dropped += 1
        self._pending.append(text[:STATUSTEXT_MAX])
        self.tick()

    def tick(self) -> None:
        """Send the oldest queued alert if the rate limit allows (call it regularly)."""
        if not self._pending:
            return
        now = self._clock()
        if self._last_sent is not None and now - self._last_sent < self.min_interval_s:
            return
        text = self._pending[0]
        try:
            ok = self._send(self.severity, text)
        except Exception as err:  # noqa: BLE001 - a broken link must not stop the recording
            log.warning("alert not sent (%s): %s", err, text)
            ok = False
        if ok:
            self._pending.popleft()
            self._last_sent = now
            self.sent.append(text)
            log.info("alert sent to GCS: %s", text)
        else:
            self.failed += 1  # kept queued: sent when the link is back

    @property
    def pending(self) -> int:
        return len(self._pending)


class AlertsSection(StrictModel):
    """Live STATUSTEXT to the ground station, once per confirmed zone."""

    enabled: bool = True
    severity: Literal["EMERGENCY", "ALERT", "CRITICAL", "ERROR", "WARNING", "NOTICE", "INFO", "DEBUG"] = "WARNING"
    min_interval_s: float = Field(default=5.0, ge=0, description="at most one alert per this many seconds")


@register_sink(40, key="alerts", settings=AlertsSection)
class AlertsSink(SinkBase):
    """A STATUSTEXT per newly confirmed zone through the ground-station link (rate-limited by AlertSender)."""

    name = "alerts"

    def __init__(self, sender: AlertSender) -> None:
        self.sender = sender

    @classmethod
    def from_context(cls, ctx: SinkContext) -> AlertsSink | None:
        a = ctx.settings(AlertsSection)
        if not a.enabled or ctx.status is None:
            return None
        return cls(AlertSender(ctx.status.send_statustext, a.severity, a.min_interval_s))

    def on_zone(self, zone: dict[str, Any]) -> None:
        self.sender.notify(zone_text(zone["properties"]))

    def on_snapshot(self) -> None:
        self.sender.tick()

    def on_close(self) -> None:
        self.sender.tick()
