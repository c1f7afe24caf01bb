"""One map interface, two kinds: the ground grid (`DiseaseMap`) and the rack faces of a site (`FaceMap`).

The pipeline and the sinks hold a `MapKind` and never ask which kind it is: each kind owns its frame
(the ground's tangent plane, or (along, up) on each rack face), how a look becomes cells, how a new
zone is told, and whether its places are on Earth. The product sinks that need a kind's own data (the
ground's rasters and prescription, a face's picture) take it through `ground_map` / `face_map`, the
only places that look at the class: a sink whose kind the run does not hold is not built.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from payload.geo.diseasemap import DiseaseMap, MapCounts
from payload.geo.facemap import FaceMap
from payload.geo.sensor import SensorModel, default_sensor_model
from payload.geo.site import RackFace, site_faces
from payload.settings.map import MapSection
from payload.settings.view import ConfigView
from payload.sitefile import SiteLayout, load_site


class ZoneLike(Protocol):
    @property
    def id(self) -> str: ...


class MapKind(Protocol):
    """A disease map fed look records in order; its zones as plain features for the layers and alerts."""

    sensor: SensorModel
    cfg: MapSection
    counts: MapCounts
    zones_version: int

    @property
    def labels(self) -> tuple[str, ...]: ...

    @property
    def zones(self) -> Sequence[Any]: ...

    @property
    def georeferenced(self) -> bool:
        """Whether its places have a known position on Earth (WGS84 layers may be written)."""
        ...

    def add_look(self, rec: Mapping[str, Any]) -> Sequence[ZoneLike]: ...

    def finish(self) -> Sequence[ZoneLike]: ...

    def tile_values(self, rec: Mapping[str, Any]) -> list[float] | None:
        """Each tile of a placed, unclassified look: what a look there is worth (None: cannot say)."""
        ...

    def zone_features(self) -> Sequence[dict[str, Any]]: ...

    def describe_zone(self, props: Mapping[str, Any]) -> str:
        """A newly confirmed zone's log line, from its feature's properties."""
        ...


def ground_map(m: MapKind) -> DiseaseMap | None:
    """The ground grid, when the map is one (its rasters, coverage and prescription need the grid itself)."""
    return m if isinstance(m, DiseaseMap) else None


def face_map(m: MapKind) -> FaceMap | None:
    """The rack faces, when the map is them (the site products draw each face)."""
    return m if isinstance(m, FaceMap) else None


def default_sensor(labels: Sequence[str]) -> SensorModel:
    """The documented default sensor model for these labels (healthy = 'healthy', else the first label)."""
    healthy = "healthy" if "healthy" in labels else labels[0]
    return default_sensor_model(healthy, [x for x in labels if x != healthy])


class Site:
    """The site file of an indoor run, loaded once: its layout, rack faces and origin on Earth."""

    def __init__(self, cfg: ConfigView) -> None:
        self.layout: SiteLayout | None = load_site(cfg.site.file) if cfg.site is not None else None
        self.faces: list[RackFace] = site_faces(self.layout) if self.layout is not None else []
        self.origin = site_origin(cfg, self.layout)


def site_origin(cfg: ConfigView, site: SiteLayout | None) -> tuple[float, float, float] | None:
    """The local frame's configured origin on Earth: the site file's, else telemetry.origin, else None."""
    if site is not None and site.origin is not None:
        return (site.origin.lat, site.origin.lon, site.origin.alt)
    o = cfg.telemetry.origin
    return None if o is None else (o.lat, o.lon, o.alt)


def open_map(cfg: ConfigView, sensor: SensorModel, site: Site | None = None) -> MapKind:
    """The disease map the config describes: the ground grid, or one grid per rack face in a site."""
    site = site if site is not None else Site(cfg)
    if site.layout is not None and cfg.site is not None:
        return FaceMap(sensor, cfg.site.map, site.faces, site.origin)
    return DiseaseMap(sensor, cfg.map)
