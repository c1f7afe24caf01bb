"""The payload's configuration (one YAML file, `payload run --config payload.yaml`): the sections assembled.

Each section is its own model so that an error names the exact field. A section that one part of
the payload reads lives beside it: a backend's settings in its module (`payload/backends/`, joined
into `ModelSection` by the backend registry), a sink's in its module (`payload/sinks/`, registered
with the sink: `register_sink(..., key=, settings=)`), the others in `payload/settings/` (one module
per section; also the sections that more than one room reads, such as `sinks:` and `prescription:`,
which the sinks register by the class they import from there). This file keeps the sections that
belong to the whole run (source, tiling, scheduler, output, preflight), assembles `PayloadConfig`
from them and from every registered sink's section, and loads the file. It sits above the sinks in
the rooms; the rooms below read the config through `payload/settings/view.py` `ConfigView`.
Defaults are what a nadir-mounted camera on a small multirotor surveying at 30 m would want.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel, Field, create_model

from payload.backends.registry import ModelSection
from payload.configio import StrictModel, load_config
from payload.settings.camera import CameraPresetName, CameraSection
from payload.settings.geotag import GeotagSection
from payload.settings.map import MapSection, SiteSection
from payload.settings.prescription import PrescriptionSection, RxFormat, TerminalSection
from payload.settings.report import ReportSection
from payload.settings.sinks import LayerFormat, SinksSection
from payload.settings.telemetry import OriginSection, SigningSection, TelemetrySection
from payload.sinks.alerts import AlertsSection
from payload.sinks.base import registered_sections
from payload.sinks.mosaic import MosaicSection
from payload.sinks.registry import sink_factories

# every section stays importable from here, as configs, tools and tests have always named them
__all__ = [
    "AlertsSection", "CameraPresetName", "CameraSection", "GeotagSection", "LayerFormat", "MapSection",
    "ModelSection", "MosaicSection", "OriginSection", "OutputSection", "PayloadConfig", "PreflightSection",
    "PrescriptionSection", "ReportSection", "RxFormat", "SchedulerSection", "SigningSection", "SinksSection",
    "SiteSection", "SourceSection", "TelemetrySection", "TerminalSection", "TilingSection", "load_payload_config",
]


class SourceSection(StrictModel):
    """Where frames come from."""

    kind: Literal["opencv", "folder"] = "opencv"
    uri: str = Field(
        default="0", description="V4L2 index or device path, RTSP/HTTP URL or video file (opencv); folder path"
    )
    rate_hz: float | None = Field(default=None, gt=0, description="folder: frames per second when no time is known")
    time_from: Literal["exif", "filename", "rate"] = "exif"
    realtime: bool = Field(
        default=False,
        description="folder or video file: true = replay at the recorded pace (stale frames dropped as live); "
        "false = classify every frame, as fast as the classifier goes",
    )
    reconnect_min_s: float = Field(default=0.5, gt=0)
    reconnect_max_s: float = Field(default=10.0, gt=0)
    stall_timeout_s: float = Field(
        default=5.0,
        gt=0,
        description="opencv live camera or stream: a read that has not returned after this long is a stall (a USB "
        "camera wedged in its driver, a stream that stopped sending); it is counted and logged and the camera "
        "reopened. Must be longer than the camera's frame interval",
    )


class TilingSection(StrictModel):
    """How a frame is cut into tiles for the classifier."""

    rows: int = Field(default=3, ge=1, le=32)
    cols: int = Field(default=4, ge=1, le=32)
    overlap: float = Field(default=0.0, ge=0.0, lt=0.9)
    stagger: bool = Field(default=True, description="every second frame, cols - 1 columns centred on the seams "
                          "of the others: ground beside a patch gets seen without it (docs/MAPS.md)")


class SchedulerSection(StrictModel):
    """Threads, queues and statistics."""

    max_rate_hz: float | None = Field(default=None, gt=0, description="cap on frames classified per second")
    queue_size: int = Field(default=64, ge=1, le=100000)
    stats_interval_s: float = Field(default=10.0, gt=0)
    # when the chip cannot classify every tile of every frame: "map" classifies the newest frame's most
    # valuable tiles (unseen, then undecided ground; payload/pipeline/choose.py), "all" every tile of the
    # newest frame and drops the frames it cannot reach
    tile_choice: Literal["map", "all"] = "map"


class OutputSection(StrictModel):
    """Where records go."""

    dir: Path = Field(default=Path("flight_output"), description="the root of the flight folders: each `payload run` "
                      "writes to a new folder under it named by its UTC start (`payload flights DIR` lists them)")
    records: str = Field(default="classifications.jsonl", description="JSONL file of per-frame, per-tile results")


class PreflightSection(StrictModel):
    """Checks before the first frame."""

    min_free_disk_mb: float = Field(default=500.0, ge=0)
    strict: bool = Field(default=False, description="refuse to start when a check fails (else warn and fly)")
    wait_fix_s: float = Field(default=0.0, ge=0, description="wait this long for a GPS fix before reporting")


S = TypeVar("S", bound=BaseModel)


class _Config(StrictModel):
    """What every assembled config can do besides holding its sections (payload/settings/view.py ConfigView)."""

    def section(self, kind: type[S]) -> S:
        """The section whose settings class is `kind` (a sink asks for the section it registered)."""
        for name, f in type(self).model_fields.items():
            value = getattr(self, name)
            if f.annotation is kind and isinstance(value, kind):
                return value
        raise KeyError(f"the payload config has no section of type {kind.__name__}")


class _RunSections(_Config):
    """The sections that are not a sink's (the whole run's, a backend's, and the ones in payload/settings/)."""

    model: ModelSection
    source: SourceSection = SourceSection()
    tiling: TilingSection = TilingSection()
    scheduler: SchedulerSection = SchedulerSection()
    output: OutputSection = OutputSection()
    telemetry: TelemetrySection = TelemetrySection()
    camera: CameraSection = CameraSection()
    geotag: GeotagSection = GeotagSection()
    map: MapSection = MapSection()
    site: SiteSection | None = None
    report: ReportSection = ReportSection()
    preflight: PreflightSection = PreflightSection()


# The sections' order in the file's schema and in a list of errors, as it has always been. A sink's section
# not named here comes after them, in the sinks' priority order.
SECTION_ORDER = ("model", "source", "tiling", "scheduler", "output", "telemetry", "camera", "geotag", "sinks", "map",
                 "site", "mosaic", "report", "prescription", "alerts", "preflight")


def _assemble() -> type[_Config]:
    """PayloadConfig: the run's sections and every registered sink's section, each in its place."""
    if not sink_factories():  # payload.sinks.registry imports every sink module
        raise RuntimeError("no sink registered")
    fields: dict[str, Any] = {name: (f.annotation, f) for name, f in _RunSections.model_fields.items()}
    for key, settings in registered_sections().items():
        if key in fields:
            raise ValueError(f"a sink's config section {key!r} is already a section of the payload config")
        fields[key] = (settings, settings())
    rank = {key: i for i, key in enumerate(SECTION_ORDER)}
    ordered = dict(sorted(fields.items(), key=lambda kv: rank.get(kv[0], len(rank))))
    return create_model("PayloadConfig", __base__=_Config, __module__=__name__,
                        __doc__="The whole payload configuration.", **ordered)


if TYPE_CHECKING:
    # what the payload's code may read by name; a sink's section is read through `section(its class)`
    PayloadConfig = _RunSections
else:
    PayloadConfig = _assemble()


def load_payload_config(path: str | Path) -> PayloadConfig:
    """Load and validate a payload YAML file (raises ConfigError with a readable message)."""
    return load_config(path, PayloadConfig)
