"""The prescription's settings (`prescription:`), read by payload/grower/ and payload/sinks/prescription.py."""

from __future__ import annotations

import importlib.util
import logging
from typing import Annotated, Literal

from pydantic import Field, field_validator

from payload.configio import StrictModel

RxFormat = Literal["shp", "gpkg", "isoxml"]


def _drone_rx_formats() -> list[RxFormat]:
    """The default formats: the ones the drone extra can write (shp with pyshp, isoxml with isoxml).

    gpkg needs pyogrio (GDAL), a workstation dependency the drone extra lacks; in the defaults it made an
    error path run at the end of every flight. It stays selectable, and `payload export --prescription`
    writes it wherever pyogrio is installed.
    """
    return ["shp", "isoxml"]


def pyogrio_available() -> bool:
    """Whether zones.gpkg can be written here (without importing GDAL just to find out)."""
    return importlib.util.find_spec("pyogrio") is not None


class TerminalSection(StrictModel):
    """What a strict sprayer terminal accepts (docs/PRESCRIPTIONS.md): checked before any file is written."""

    short_names: bool = Field(
        default=False,
        description="8.3 upper-case file names in the Shapefile zip (RXZONES.SHP ...; RXNORATE.SHP with "
        "placeholder rates): terminals that read a USB stick with a FAT driver from the 1990s",
    )
    max_zones: int | None = Field(
        default=None, ge=1, le=100000,
        description="most treatment zones the terminal loads (Agrotax AgFusion: 100); null = no limit",
    )
    on_too_many: Literal["merge", "refuse"] = Field(
        default="merge",
        description="more zones than max_zones: merge the nearest zones of a class until they fit (the sprayer "
        "treats the ground between them; said in the log and prescription.json), or refuse and write no "
        "prescription",
    )


class PrescriptionSection(StrictModel):
    """Treatment zones, the scout list and the terminal files (payload/grower/, sinks/prescription.py;
    docs/PRESCRIPTIONS.md). Written at the end of the run and by `payload export --prescription`."""

    enabled: bool = Field(default=True, description="write the prescription files at the end of the run")
    margin_m: float = Field(default=5.0, ge=0.0, le=100.0,
                            description="agronomic margin: every disease zone is treated this far beyond its edge")
    rates: dict[str, Annotated[float, Field(ge=0.0)]] = Field(
        default_factory=dict,
        description="application rate per disease class (in `unit`), e.g. {rust: 1.2, powdery_mildew: 0.8}; a "
        "class not listed gets default_rate; ground outside every treatment zone gets 0",
    )
    default_rate: float = Field(default=1.0, ge=0.0,
                                description="rate of a class missing from `rates` (1.0: an on/off map)")
    unit: Literal["l/ha", "kg/ha"] = Field(
        default="l/ha", description="unit of the rates (ISO-XML: l/ha is DDI 1, kg/ha is DDI 6)")
    products: dict[str, str] = Field(
        default_factory=dict,
        description="product name per disease class (ISO-XML product designator); default '<class> treatment'",
    )
    priority: list[str] = Field(
        default_factory=list,
        description="where treatment zones of two classes overlap, the earlier class's product is applied "
        "(a disease zone itself always keeps its own class); default: higher rate first, then the model's "
        "class order",
    )
    max_vertices: int = Field(default=64, ge=8, le=100000,
                              description="vertex budget per treatment zone (all its rings); the outline is "
                              "simplified outwards until it fits, never into the disease zone")
    min_zone_m2: float = Field(default=1.0, ge=0.0,
                               description="treatment zone pieces smaller than this (slivers left where "
                               "classes meet) are dropped")
    grid_cell_m: float | None = Field(
        default=None, gt=0.5, le=100.0,
        description="also write a grid prescription of square cells this size (spot-spray drones); null = none",
    )
    taskdata: Literal["zones", "grid"] = Field(
        default="zones", description="ISO-XML TASKDATA as treatment-zone polygons or as a grid (needs grid_cell_m)")
    scout_threshold: float = Field(
        default=0.2, gt=0.0, lt=1.0,
        description="ground whose disease probability reaches this but not map.zone_threshold (or a zone "
        "smaller than map.min_zone_area_m2) goes on the scout list",
    )
    scout_min_gap_m2: float = Field(default=25.0, ge=0.0,
                                    description="unseen parts of the flown area at least this large (and 2 m "
                                    "wide) go on the scout list")
    formats: list[RxFormat] = Field(default_factory=_drone_rx_formats,
                                    description="shp: prescription.zip (prescription_placeholder_rates.zip while a "
                                    "rate is the placeholder default_rate), isoxml: TASKDATA/, gpkg: zones.gpkg (needs "
                                    "pyogrio, which the drone extra lacks; not in the default)")
    terminal: TerminalSection = TerminalSection()

    @property
    def rates_placeholder(self) -> bool:
        """No rate set for any class: every zone gets default_rate, an on/off map rather than a dose."""
        return not self.rates

    @field_validator("formats")
    @classmethod
    def _gpkg_needs_pyogrio(cls, v: list[RxFormat]) -> list[RxFormat]:
        """Say at load time, not at the end of a flight, that zones.gpkg cannot be written on this machine.

        A warning, not an error: one config file may serve the drone and the workstation, where
        `payload export --prescription` writes the GeoPackage.
        """
        if "gpkg" in v and not pyogrio_available():
            logging.getLogger(__name__).warning(
                "prescription.formats has gpkg, but pyogrio is not installed here (the drone extra lacks it): "
                "zones.gpkg will be skipped. Remove gpkg from prescription.formats, or install pyogrio "
                "(the workstation extra); `payload export DIR --prescription` on a workstation writes it")
        return v

    @field_validator("taskdata")
    @classmethod
    def _grid_needs_a_cell(cls, v: str, info) -> str:  # noqa: ANN001 - pydantic's ValidationInfo
        """A grid TASKDATA without a cell size is a config error, not a surprise at the end of a flight."""
        if v == "grid" and info.data.get("grid_cell_m") is None:
            raise ValueError("taskdata: grid needs prescription.grid_cell_m (e.g. 5)")
        return v
