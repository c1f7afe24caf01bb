"""The payload's configuration (one YAML file, `payload run --config payload.yaml`).

Each section is its own model so that an error names the exact field. Defaults are what a
nadir-mounted camera on a small multirotor surveying at 30 m would want.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from payload.configio import StrictModel, load_config


class ModelSection(StrictModel):
    """Which model bundle to run and on what."""

    bundle: Path = Field(description="folder written by `make edgetpu` (model_card.json inside)")
    backend: Literal["auto", "edgetpu", "cpu"] = "auto"
    device: str | None = Field(
        default=None, description="Edge TPU to use: usb, usb:N, pci, pci:N, :N; empty = first found"
    )
    num_threads: int = Field(default=2, ge=1, le=64)


class SourceSection(StrictModel):
    """Where frames come from."""

    kind: Literal["opencv", "folder"] = "opencv"
    uri: str = Field(
        default="0", description="V4L2 index or device path, RTSP/HTTP URL or video file (opencv); folder path"
    )
    rate_hz: float | None = Field(default=None, gt=0, description="folder: frames per second when no time is known")
    time_from: Literal["exif", "filename", "rate"] = "exif"
    realtime: bool = Field(default=False, description="folder: release frames at their recorded capture pace")
    reconnect_min_s: float = Field(default=0.5, gt=0)
    reconnect_max_s: float = Field(default=10.0, gt=0)


class TilingSection(StrictModel):
    """How a frame is cut into tiles for the classifier."""

    rows: int = Field(default=3, ge=1, le=32)
    cols: int = Field(default=4, ge=1, le=32)
    overlap: float = Field(default=0.0, ge=0.0, lt=0.9)


class SchedulerSection(StrictModel):
    """Threads, queues and statistics."""

    max_rate_hz: float | None = Field(default=None, gt=0, description="cap on frames classified per second")
    queue_size: int = Field(default=64, ge=1, le=100000)
    stats_interval_s: float = Field(default=10.0, gt=0)


class OutputSection(StrictModel):
    """Where records go."""

    dir: Path = Path("flight_output")
    records: str = Field(default="classifications.jsonl", description="JSONL file of per-frame, per-tile results")


class PayloadConfig(StrictModel):
    """The whole payload configuration."""

    model: ModelSection
    source: SourceSection = SourceSection()
    tiling: TilingSection = TilingSection()
    scheduler: SchedulerSection = SchedulerSection()
    output: OutputSection = OutputSection()


def load_payload_config(path: str | Path) -> PayloadConfig:
    """Load and validate a payload YAML file (raises ConfigError with a readable message)."""
    return load_config(path, PayloadConfig)
