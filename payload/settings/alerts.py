"""The live alerts' settings (`alerts:`), read by payload/sinks/alerts.py."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from payload.configio import StrictModel


class AlertsSection(StrictModel):
    """Live STATUSTEXT to the ground station, once per confirmed zone."""

    enabled: bool = True
    severity: Literal["EMERGENCY", "ALERT", "CRITICAL", "ERROR", "WARNING", "NOTICE", "INFO", "DEBUG"] = "WARNING"
    min_interval_s: float = Field(default=5.0, ge=0, description="at most one alert per this many seconds")
