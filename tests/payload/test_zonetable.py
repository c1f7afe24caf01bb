"""The live zone snapshot held in arrays (payload/geo/zonetable.py), the zone layers written from it feature
by feature, and the map's zone book forgetting a zone gone for long and giving it its id back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import shapely

from payload.config import MapSection
from payload.files.vector import features_csv, features_geojson, features_kml, write_features
from payload.geo.diseasemap import DiseaseMap, zone_features, zone_rows
from payload.geo.lonlat import geometries_lonlat, packed_lonlat
from payload.geo.sensor import default_sensor_model
from payload.geo.zones import FORGET_AFTER_CUTS, Zone
from payload.geo.zonetable import ZoneTable
from tests.payload.test_map import LABELS, ORIGIN, survey_looks


def _zones() -> list[Zone]:
    """Three zones: a holed polygon, an empty outline and a two-part one (every ring shape the table packs)."""
    holed = shapely.Polygon([(0, 0), (10, 0), (10, 10), (0, 10)], [[(2, 2), (2, 4), (4, 4), (4, 2)]])
    multi = shapely.MultiPolygon([shapely.box(20, 0, 22, 3), shapely.box(30, 5, 31, 6)])
    out = []
    for k, (label, geom) in enumerate((("rust", holed), ("powdery_mildew", shapely.Polygon()), ("rust", multi))):
        out.append(Zone(label, geom, 12.5 + k, (3.0 + k, 4.0), 0.91, 0.7, 5 + k, 3.25, (1.5, 0.5, 30.0), 1.2,
                        40 + k, f"{label}-{k + 1}", 0.125))
    return out


def _as_lists(zones: list[Zone]) -> list[dict]:
    """The snapshot as it was before the table: a list of feature dicts with (n, 2) ring arrays."""
    rows, polys = zone_rows(zones, ORIGIN), geometries_lonlat([z.geometry_en for z in zones], ORIGIN)
    return [{"properties": r, "polygons": p} for r, p in zip(rows, polys, strict=True)]


def test_the_snapshot_is_a_table_of_arrays_that_reads_as_the_feature_list() -> None:
    zones = _zones()
    table, want = zone_features(zones, ORIGIN), _as_lists(zones)
    assert isinstance(table, ZoneTable) and len(table) == 3
    for _ in range(2):  # read as often as wanted, always the same
        for got, w in zip(table, want, strict=True):
            assert got["properties"] == w["properties"]
            # the same Python types as the dicts (ints stay ints: JSON and CSV print them alike)
            assert [type(v) for v in got["properties"].values()] == [type(v) for v in w["properties"].values()]
            assert [len(p) for p in got["polygons"]] == [len(p) for p in w["polygons"]]
            for gp, wp in zip(got["polygons"], w["polygons"], strict=True):
                for gr, wr in zip(gp, wp, strict=True):
                    assert gr.dtype == np.float64 and gr.shape[1] == 2 and np.array_equal(gr, wr)
    assert table[-1]["properties"]["id"] == "rust-3" and [f["properties"]["id"] for f in table[1:]] == [
        "powdery_mildew-2", "rust-3"]
    assert table.feature("powdery_mildew-2")["polygons"] == []
    with pytest.raises(KeyError):
        table.feature("rust-9")
    with pytest.raises(IndexError):
        table[3]
    # every vertex in one (V, 2) array: 16 bytes a vertex, no Python object per ring or number
    packed = packed_lonlat([z.geometry_en for z in zones], ORIGIN)
    vertices = sum(len(r) for f in want for p in f["polygons"] for r in p)
    assert packed.lonlat.shape == (vertices, 2) and packed.lonlat.dtype == np.float64
    assert table.nbytes < 16 * vertices + 8 * 20 * len(zones) + 200
    assert len(zone_features(zones, None)) == 0 and len(zone_features([], ORIGIN)) == 0


def test_the_zone_layers_from_the_table_are_the_layers_from_the_list(tmp_path: Path) -> None:
    """Written feature by feature into the file: the same bytes as the whole layer built first."""
    zones = _zones()
    table, lists = zone_features(zones, ORIGIN), _as_lists(zones)
    write_features(tmp_path, "zones", table, ["geojson", "kml", "csv"], "cropscout disease zones")
    assert (tmp_path / "zones.geojson").read_text() == features_geojson(lists)
    assert (tmp_path / "zones.kml").read_text() == features_kml(lists, "cropscout disease zones")
    assert (tmp_path / "zones.csv").read_text() == features_csv(lists)
    fc = json.loads((tmp_path / "zones.geojson").read_text())
    assert fc["type"] == "FeatureCollection" and [f["id"] for f in fc["features"]] == [
        "rust-1", "powdery_mildew-2", "rust-3"]
    assert fc["features"][0]["geometry"]["type"] == "Polygon" and fc["features"][1]["geometry"] is None
    assert fc["features"][2]["geometry"]["type"] == "MultiPolygon"
    # GeoJSON of no feature is still a collection
    assert json.loads(features_geojson(zone_features([], ORIGIN))) == {"type": "FeatureCollection", "features": []}


def test_the_map_forgets_a_zone_gone_for_long_and_gives_its_id_back() -> None:
    """A patch refuted by later looks leaves the map's zones; after FORGET_AFTER_CUTS cuts without it the book
    keeps only its bounding box. Seen again, it takes its old id back and is not announced again, while a
    patch elsewhere gets a new id."""
    dm = DiseaseMap(default_sensor_model("healthy", LABELS), MapSection(), ORIGIN)
    new = []
    for rec in survey_looks((30.0, 20.0, 5.0), [5.0, 20.0, 35.0]):
        new += dm.add_look(rec)
    new += dm.finish()
    assert [z.id for z in new] == ["rust-1"] and [z.id for z in dm.zones] == ["rust-1"]
    # healthy looks over the same ground until the zone is gone (the map cuts every zones_every_frames looks)
    healthy = survey_looks((500.0, 500.0, 0.1), [5.0, 20.0, 35.0])
    for _ in range(4):
        for rec in healthy:
            dm.add_look(rec)
    dm.update_zones()
    assert dm.zones == []
    for _ in range(FORGET_AFTER_CUTS):  # however long ago it went, this many cuts without it are enough
        dm.update_zones()
    assert dm.book.forgotten == 1 and dm.book.known == []
    new = []
    for _ in range(6):  # the patch again, until the evidence turns
        for rec in survey_looks((30.0, 20.0, 5.0), [5.0, 20.0, 35.0]):
            new += dm.add_look(rec)
    new += dm.update_zones()
    assert [z.id for z in dm.zones] == ["rust-1"] and new == [] and dm.book.forgotten == 0
    for rec in survey_looks((130.0, 20.0, 5.0), [5.0, 20.0, 35.0], e_range=(100.0, 160.0)):
        new += dm.add_look(rec)
    new += dm.update_zones()
    assert [z.id for z in new] == ["rust-2"]
