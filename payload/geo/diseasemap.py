"""The disease map: look records -> evidence grid -> zones and coverage. One mechanism, live and in export.

`DiseaseMap.add_look` is the only way evidence enters the grid; the flight calls it with each look
record it has just written to detections.jsonl, and `payload export` calls it with the same records
read back (several flights' records in turn, to fuse them: log-odds add). Zones are re-extracted
every `map.zones_every_frames` looks, a count of records rather than a clock, so the export replays
the flight's schedule and ends with the same zones and ids.

Correlated views (docs/MAPS.md): frames a fifth of a second apart see nearly the same ground with
nearly the same errors, so they are not independent looks. Each look's evidence is weighted by
min(1, d / decorrelation_m), d the camera's travel since the previous look of the same run: at
5 m/s and 5 fps a frame counts fully; at 10 fps each counts half, and a hover adds almost nothing.
The clamp on each cell's evidence bounds what any sequence of looks can do.

A look's place is uncertain by each tile's `sigma_m` (payload/geo/placeerror.py, written into the
record): a tile's evidence is scaled by the share of its footprint expected to lie on its true
ground (`overlap_share`), and the zones' stated position error includes the looks' (`PlaceBook`).
A record without `sigma_m` (recorded before it existed) is taken as exactly placed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from payload.geo.frames import LocalFrame
from payload.geo.grid import EvidenceGrid, frame_window, posterior
from payload.geo.lonlat import packed_lonlat
from payload.geo.looks import LOOK_SCHEMA
from payload.geo.placeerror import PlaceBook, overlap_share
from payload.geo.sensor import SensorModel
from payload.geo.tilevalue import cell_values, footprint_values
from payload.geo.zones import ZONE_COLUMNS, Zone, ZoneBook, extract_zones, outline_geometries
from payload.geo.zonetable import ZoneTable, column
from payload.settings.map import MapSection


def frame_weight(prev_en: tuple[float, float] | None, cur_en: tuple[float, float], decorrelation_m: float) -> float:
    """The weight of a look whose camera moved from prev_en to cur_en (1 for the first look)."""
    if prev_en is None:
        return 1.0
    return min(1.0, math.hypot(cur_en[0] - prev_en[0], cur_en[1] - prev_en[1]) / decorrelation_m)


def is_look(rec: Mapping[str, Any]) -> bool:
    """Whether a JSONL record is a look record."""
    return rec.get("schema") == LOOK_SCHEMA


@dataclass
class MapCounts:
    """What the map did with the looks it was given."""

    looks: int = 0
    applied: int = 0
    untrusted: int = 0
    tiles_without_footprint: int = 0


class DiseaseMap:
    """The grid, its frame, the zone schedule and identities; fed look records in order."""

    def __init__(self, sensor: SensorModel, cfg: MapSection, origin: LocalFrame | None = None) -> None:
        self.sensor = sensor
        self.cfg = cfg
        self.origin = origin  # set from the first trusted look when not given
        self.grid = EvidenceGrid(cfg.cell_m, len(sensor.diseases), chunk=cfg.chunk_cells, clamp=cfg.clamp_logodds)
        self.book = ZoneBook()
        self.zones: list[Zone] = []
        self.counts = MapCounts()
        self._prev: dict[str, tuple[float, float]] = {}
        self._since_zones = 0
        self._outlines: dict[bytes, bytes] = {}  # zone outlines (WKB) of the last cut, by their cells (zones.py)
        self.zones_version = 0  # bumped at every extraction, so readers know when to refresh
        self.places = PlaceBook(cfg.cell_m * cfg.chunk_cells)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.sensor.diseases

    def add_look(self, rec: Mapping[str, Any]) -> list[Zone]:
        """Apply one look record; returns the zones confirmed for the first time by this look (to alert)."""
        self.counts.looks += 1
        if not rec.get("trusted") or not rec.get("vehicle") or rec["vehicle"].get("lat") is None:
            # a local-frame look without a known origin has no place on the ground grid
            self.counts.untrusted += 1
            return self._maybe_zones()
        veh = rec["vehicle"]
        if self.origin is None:
            self.origin = LocalFrame(float(veh["lat"]), float(veh["lon"]), 0.0)
        quads, ev, sig = [], [], []
        for t in rec.get("tiles", []):
            fp = t.get("footprint")
            if not fp:
                self.counts.tiles_without_footprint += 1
                continue
            quads.append(fp)
            ev.append(self.sensor.evidence(str(t.get("label")), bool(t.get("flagged"))))
            sig.append(float(t.get("sigma_m") or 0.0))
        # one conversion for the vehicle and every corner: the geodetic maths is most of a look's cost
        ll = np.concatenate([np.array([[float(veh["lat"]), float(veh["lon"])]]),
                             np.asarray(quads, dtype=np.float64).reshape(-1, 2)])
        e, n, _ = self.origin.to_enu(ll[:, 0], ll[:, 1], 0.0)
        cur = (float(e[0]), float(n[0]))
        run = str(rec.get("run_id", ""))
        w = frame_weight(self._prev.get(run), cur, self.cfg.decorrelation_m)
        self._prev[run] = cur
        if quads:
            en = np.stack([e[1:], n[1:]], axis=-1).reshape(len(quads), 4, 2)
            evidence = self._placed_evidence(en, np.asarray(ev, dtype=np.float64), np.asarray(sig), w)
            self.grid.add_footprints(en, evidence, w, self.cfg.prior_logodds if self.cfg.explain_away else None)
            self.counts.applied += 1
        return self._maybe_zones()

    def _placed_evidence(self, en: np.ndarray, ev: np.ndarray, sigma: np.ndarray, w: float) -> np.ndarray:
        """Each tile's evidence times the share of its footprint expected on its true ground; the applied
        evidence also weighs the tile's sigma in the zones' position error (`PlaceBook`)."""
        x, y = en[:, :, 0], en[:, :, 1]
        area = 0.5 * np.abs(np.sum(x * np.roll(y, -1, axis=1) - np.roll(x, -1, axis=1) * y, axis=1))
        share = overlap_share(sigma, area)
        out = ev * share[:, None]
        self.places.add(en.mean(axis=1), sigma, w * np.abs(out).sum(axis=1))
        return out

    def tile_values(self, rec: Mapping[str, Any]) -> list[float] | None:
        """What each tile of a look (placed, not yet classified) is worth to the map (payload/geo/tilevalue.py).

        None when the look cannot be placed on the grid (untrusted, no origin yet): the caller keeps its
        own order. A tile without a footprint is worth nothing here (the map would not use it either).
        """
        veh = rec.get("vehicle")
        if not rec.get("trusted") or not veh or veh.get("lat") is None or self.origin is None:
            return None
        tiles = rec.get("tiles", [])
        placed = [i for i, t in enumerate(tiles) if t.get("footprint")]
        out = [0.0] * len(tiles)
        if not placed:
            return out
        ll = np.asarray([tiles[i]["footprint"] for i in placed], dtype=np.float64).reshape(-1, 2)
        e, n, _ = self.origin.to_enu(ll[:, 0], ll[:, 1], 0.0)
        quads = np.stack([e, n], axis=-1).reshape(len(placed), 4, 2)
        win = frame_window(quads, self.cfg.cell_m)
        ev, looks = self.grid.dense(win)
        values = cell_values(ev, looks, self.cfg.prior_logodds, self.cfg.coverage_min_looks, self.cfg.zone_threshold)
        for i, v in zip(placed, footprint_values(quads, self.cfg.cell_m, win, values), strict=True):
            out[i] = float(v)
        return out

    def _maybe_zones(self) -> list[Zone]:
        self._since_zones += 1
        if self._since_zones < self.cfg.zones_every_frames:
            return []
        return self.update_zones()

    def update_zones(self) -> list[Zone]:
        """Re-extract the zones now; returns those seen for the first time."""
        self._since_zones = 0
        self.zones_version += 1
        zones = extract_zones(self.grid, self.labels, self.cfg.prior_logodds, self.cfg.zone_threshold,
                              self.cfg.min_zone_area_m2, self.cfg.pose_sigma_m, self._outlines, self.places.rms)
        new = self.book.assign(zones)
        self.zones = zones
        return new

    def finish(self) -> list[Zone]:
        """The final zones (re-extracted from everything added); returns the ones new at this point."""
        return self.update_zones()

    @property
    def georeferenced(self) -> bool:
        return True  # its origin is the first trusted look's vehicle, a WGS84 position

    def zone_features(self) -> ZoneTable:
        """The current zones as layer features: attributes and WGS84 polygons (a compact ZoneTable)."""
        return zone_features(self.zones, self.origin)

    def describe_zone(self, props: Mapping[str, Any]) -> str:
        return (f"new {props['label']} zone {props['id']} at {props['lat']:.6f}, {props['lon']:.6f} "
                f"({props['area_m2']:.1f} m2, peak p {props['peak_p']:.2f})")

    def probability(self) -> tuple[tuple[int, int, int, int] | None, np.ndarray, np.ndarray]:
        """(cell bounds, posterior (K+1, h, w) float32 with healthy first, looks (h, w)) over the seen ground."""
        b = self.grid.extent()
        ev, looks = self.grid.dense(b)
        return b, posterior(ev, self.cfg.prior_logodds).astype(np.float32), looks


def zone_rows(zones: Sequence[Zone], origin: LocalFrame | None) -> list[dict[str, Any]]:
    """Each zone's attributes with its centroid in WGS84 (lat, lon)."""
    rows = [z.as_dict() for z in zones]
    if origin is not None and rows:
        # one conversion for every centroid (elementwise: the same numbers as one call per zone)
        en = np.array([z.centroid_en for z in zones], dtype=np.float64)
        lat, lon, _ = origin.to_geodetic(en[:, 0], en[:, 1], 0.0)
        for r, a, b in zip(rows, np.asarray(lat).tolist(), np.asarray(lon).tolist(), strict=True):
            r["lat"], r["lon"] = round(float(a), 8), round(float(b), 8)
    return rows


MAPINFO_SCHEMA = "cropscout.mapinfo/1"


def mapinfo_record(sensor: SensorModel, cfg: MapSection) -> dict[str, Any]:
    """The record that opens a run's detections.jsonl: the sensor model and map settings the flight used."""
    return {"schema": MAPINFO_SCHEMA, "sensor_model": sensor.to_dict(), "map": cfg.model_dump(mode="json")}


def map_from_info(rec: Mapping[str, Any], origin: LocalFrame | None = None) -> DiseaseMap:
    """A fresh map with the sensor model and settings of a map-info record (what `payload export` replays with)."""
    from payload.geo.sensor import sensor_model_from_dict

    block = rec["sensor_model"]
    sensor = sensor_model_from_dict(block, str(block["healthy"]), list(block["diseases"]))
    # a flight recorded before `explain_away` existed shared its evidence evenly: replay it so
    settings = {"explain_away": False, **rec["map"]}
    return DiseaseMap(sensor, MapSection.model_validate(settings), origin)


def zone_features(zones: Sequence[Zone], origin: LocalFrame | None) -> ZoneTable:
    """Zones as plain data (attributes + WGS84 polygons): what the layer writers and other threads take.

    A ZoneTable (payload/geo/zonetable.py): a sequence of the same feature dicts, held in arrays, since
    the live snapshot keeps every zone of the flight.
    """
    if origin is None:
        zones = []
    # column by column (Zone.as_dict's columns, then lat, lon as zone_rows gives them): at each cut a
    # field full of zones would otherwise make, and drop, a dict and a dozen number objects per zone
    cols: dict[str, Any] = {name: column([get(z) for z in zones]) for name, get in ZONE_COLUMNS}
    if zones:
        en = np.array([z.centroid_en for z in zones], dtype=np.float64)
        lat, lon, _ = origin.to_geodetic(en[:, 0], en[:, 1], 0.0)  # type: ignore[union-attr]
        cols["lat"] = column([round(float(v), 8) for v in np.asarray(lat).tolist()])
        cols["lon"] = column([round(float(v), 8) for v in np.asarray(lon).tolist()])
    return ZoneTable(cols, packed_lonlat(outline_geometries([z.outline for z in zones]), origin))  # type: ignore[arg-type]
