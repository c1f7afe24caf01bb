"""The simulator's operator errors: each names the problem and the fix (printed by the CLI, exit 2)."""

from __future__ import annotations

from payload.errors import TelemetryError, UserError


class TlogError(TelemetryError):
    """A telemetry log that cannot be replayed (not a tlog, truncated, no autopilot, no position)."""


class EndpointError(UserError):
    """An address the simulator cannot serve on (bad form, port in use)."""
