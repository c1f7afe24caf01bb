"""`ConfigView`: the payload's config as the rooms below `payload/config.py` see it.

`PayloadConfig` is assembled in `payload/config.py`, above the sinks (each sink brings its own
section), so the rooms it is assembled from cannot import it. What they read of it is this protocol:
the sections that belong to the whole payload, by name, and any other section by its settings class
(`section(AlertsSection)`: a sink asks for the section it registered). `PayloadConfig` satisfies it.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

from pydantic import BaseModel

from payload.settings.geotag import GeotagSection
from payload.settings.map import MapSection, SiteSection
from payload.settings.telemetry import TelemetrySection

S = TypeVar("S", bound=BaseModel)


class ConfigView(Protocol):
    """The run's configuration, read-only."""

    @property
    def telemetry(self) -> TelemetrySection: ...

    @property
    def geotag(self) -> GeotagSection: ...

    @property
    def map(self) -> MapSection: ...

    @property
    def site(self) -> SiteSection | None: ...

    def section(self, kind: type[S]) -> S:
        """The config's section whose settings class is `kind` (a sink's own section)."""
        ...
