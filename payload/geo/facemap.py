"""The disease map of an indoor farm: one evidence grid per rack face, in (along, up) metres on the face.

Why a grid per face and not the ground grid: a sideways camera sees vertical faces, whose points
stack above one another in east/north (every shelf of a bay falls in one ground cell). Unrolled,
a face is a flat 2-D sheet with its own metric coordinates (along from the rack's start, up from
the floor), and on that sheet everything the ground map does holds unchanged: the same
`EvidenceGrid` (occupancy-grid log-odds per cell), the same sensor model, the same
correlated-view weighting by camera travel, the same `extract_zones` and `ZoneBook`. Only the
coordinates differ: a tile's footprint is the quadrilateral its corners make on the face
(look records' `face_quad`, payload/geo/looks.py), and a zone's centroid on the face becomes a
site address (rack, bay, shelf) through payload/geo/site.py. Indoors the ground grid is not used.

Like `DiseaseMap`, the map is only ever fed look records, in order, so `payload export` replays a
flight into the same zones with the same ids.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from payload.geo.diseasemap import MapCounts, frame_weight
from payload.geo.frames import enu_to_geodetic
from payload.geo.grid import EvidenceGrid, frame_window
from payload.geo.sensor import SensorModel
from payload.geo.site import RackFace, SiteAddress, address, face_by_id
from payload.geo.tilevalue import UNSEEN, cell_values, footprint_values
from payload.geo.zones import Zone, ZoneBook, extract_zones
from payload.settings.map import MapSection


@dataclass
class FaceZone:
    """A zone on one rack face, with the site address of its centroid."""

    face_id: str
    zone: Zone
    address: SiteAddress

    @property
    def id(self) -> str:
        return f"{self.face_id}/{self.zone.id}"

    @property
    def label(self) -> str:
        return self.zone.label

    def text(self) -> str:
        """'rust rack B bay 4 shelf 2': what the grower reads in an alert."""
        return f"{self.zone.label} {self.address.text()}"


class FaceMap:
    """Evidence grids keyed by rack face, fed look records; zones in site terms."""

    def __init__(self, sensor: SensorModel, cfg: MapSection, faces: Sequence[RackFace],
                 origin: tuple[float, float, float] | None = None) -> None:
        self.sensor = sensor
        self.cfg = cfg
        self.faces = list(faces)
        self.origin = origin  # (lat, lon, alt) of the local frame's origin, when known: zones get lat/lon
        self.grids: dict[str, EvidenceGrid] = {}
        self.books: dict[str, ZoneBook] = {}
        self.zones: list[FaceZone] = []
        self.counts = MapCounts()
        self._prev: dict[str, tuple[float, float]] = {}
        self._since_zones = 0
        self.zones_version = 0

    @property
    def labels(self) -> tuple[str, ...]:
        return self.sensor.diseases

    def _grid(self, face_id: str) -> EvidenceGrid:
        g = self.grids.get(face_id)
        if g is None:
            g = EvidenceGrid(self.cfg.cell_m, len(self.sensor.diseases), chunk=self.cfg.chunk_cells,
                             clamp=self.cfg.clamp_logodds)
            self.grids[face_id] = g
            self.books[face_id] = ZoneBook()
        return g

    def add_look(self, rec: Mapping[str, Any]) -> list[FaceZone]:
        """Apply one look record; returns the zones confirmed for the first time by it (to alert)."""
        self.counts.looks += 1
        veh = rec.get("vehicle")
        if not rec.get("trusted") or not veh or veh.get("east_m") is None:
            self.counts.untrusted += 1
            return self._maybe_zones()
        by_face: dict[str, tuple[list[Any], list[np.ndarray]]] = {}
        for t in rec.get("tiles", []):
            fid, quad = t.get("face"), t.get("face_quad")
            if not fid or not quad:
                self.counts.tiles_without_footprint += 1
                continue
            quads, ev = by_face.setdefault(str(fid), ([], []))
            quads.append(quad)
            ev.append(self.sensor.evidence(str(t.get("label")), bool(t.get("flagged"))))
        cur = (float(veh["east_m"]), float(veh["north_m"]))
        run = str(rec.get("run_id", ""))
        w = frame_weight(self._prev.get(run), cur, self.cfg.decorrelation_m)
        self._prev[run] = cur
        for fid, (quads, ev) in by_face.items():
            self._grid(fid).add_footprints(np.asarray(quads, dtype=np.float64), np.asarray(ev), w)
        if by_face:
            self.counts.applied += 1
        return self._maybe_zones()

    def tile_values(self, rec: Mapping[str, Any]) -> list[float] | None:
        """What each tile of a look is worth to its rack face's grid (payload/geo/tilevalue.py); a face never
        seen is all new ground. None when the look cannot be placed (untrusted)."""
        veh = rec.get("vehicle")
        if not rec.get("trusted") or not veh or veh.get("east_m") is None:
            return None
        out: list[float] = []
        for t in rec.get("tiles", []):
            fid, quad = t.get("face"), t.get("face_quad")
            if not fid or not quad:
                out.append(0.0)
                continue
            grid = self.grids.get(str(fid))
            if grid is None:
                out.append(UNSEEN)
                continue
            q = np.asarray([quad], dtype=np.float64)
            win = frame_window(q, self.cfg.cell_m)
            ev, looks = grid.dense(win)
            values = cell_values(ev, looks, self.cfg.prior_logodds, self.cfg.coverage_min_looks,
                                 self.cfg.zone_threshold)
            out.append(float(footprint_values(q, self.cfg.cell_m, win, values)[0]))
        return out

    def _maybe_zones(self) -> list[FaceZone]:
        self._since_zones += 1
        if self._since_zones < self.cfg.zones_every_frames:
            return []
        return self.update_zones()

    def update_zones(self) -> list[FaceZone]:
        """Re-extract every face's zones now; returns those seen for the first time."""
        self._since_zones = 0
        self.zones_version += 1
        out: list[FaceZone] = []
        new: list[FaceZone] = []
        for fid in sorted(self.grids):
            face = face_by_id(self.faces, fid)
            zones = extract_zones(self.grids[fid], self.labels, self.cfg.prior_logodds, self.cfg.zone_threshold,
                                  self.cfg.min_zone_area_m2, self.cfg.pose_sigma_m)
            fresh = {id(z) for z in self.books[fid].assign(zones)}
            for z in zones:
                fz = FaceZone(fid, z, address(face.rack, face.side, z.centroid_en[0], z.centroid_en[1]))
                out.append(fz)
                if id(z) in fresh:
                    new.append(fz)
        self.zones = out
        return new

    def finish(self) -> list[FaceZone]:
        """The final zones; returns the ones new at this point."""
        return self.update_zones()

    @property
    def georeferenced(self) -> bool:
        """Only with a known origin: a local metre must never pass for a longitude (RFC 7946)."""
        return self.origin is not None

    def describe_zone(self, props: Mapping[str, Any]) -> str:
        return f"new zone {props['id']}: {props['text']} ({props['area_m2']:.2f} m2, peak p {props['peak_p']:.2f})"

    def zone_rows(self) -> list[dict[str, Any]]:
        """Each zone as flat JSON-ready columns in site terms (and lat/lon when the origin is known)."""
        rows = []
        for fz in self.zones:
            z = fz.zone
            r: dict[str, Any] = {"id": fz.id, "label": z.label, "text": fz.text(), "face_id": fz.face_id,
                                 **fz.address.as_dict()}
            r.update({k: v for k, v in z.as_dict().items() if k not in ("id", "label")})
            face = face_by_id(self.faces, fz.face_id)
            e, n, u = (float(x) for x in face.point(z.centroid_en[0], z.centroid_en[1]))
            r.update({"east_m": round(e, 3), "north_m": round(n, 3), "up_m": round(u, 3)})
            if self.origin is not None:
                lat, lon, alt = enu_to_geodetic(e, n, u, *self.origin)
                r.update({"lat": round(float(lat), 8), "lon": round(float(lon), 8), "alt_m": round(float(alt), 3)})
            rows.append(r)
        return rows

    def zone_features(self) -> list[dict[str, Any]]:
        """Zones as the layer writers take them (payload/sinks/maplayers.py): attributes, no polygons (a
        vertical face has no ground outline), and a WGS84 `point` only when the origin is known: RFC 7946
        coordinates are longitude/latitude, and local metres never go there."""
        return [{"properties": r, "polygons": [], "point": [r["lon"], r["lat"]] if "lat" in r else None}
                for r in self.zone_rows()]


def face_zone_alert(props: Mapping[str, Any]) -> str:
    """'rust rack B bay 4 shelf 2 p0.93' (fits a 50-character STATUSTEXT)."""
    tail = f" p{float(props.get('peak_p', 0.0)):.2f}"
    return (str(props.get("text", props.get("label", "?")))[: 50 - len(tail)] + tail).encode(
        "ascii", "replace").decode("ascii")

