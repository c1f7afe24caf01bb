"""The evidence grid, sensor model, zones and the disease map against hand-worked answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import shapely

from payload.config import MapSection
from payload.geo.diseasemap import DiseaseMap, frame_weight
from payload.geo.frames import LocalFrame
from payload.geo.grid import (
    EV_MAX,
    LOOKS_MAX,
    LSB,
    EvidenceGrid,
    decode_cells,
    encode_cells,
    frame_cell_evidence,
    posterior,
)
from payload.geo.looks import LOOK_SCHEMA
from payload.geo.sensor import (
    SensorModelError,
    default_sensor_model,
    sensor_model_from_dict,
)
from payload.geo.zones import Zone, ZoneBook, extract_zones, mask_polygon

LABELS = ("rust", "powdery_mildew")


def square(e0: float, n0: float, side: float) -> np.ndarray:
    return np.array([[e0, n0 + side], [e0 + side, n0 + side], [e0 + side, n0], [e0, n0]], dtype=float)


def _share(quad: np.ndarray, cell: float = 1.0, s: int = 4) -> tuple[int, int, np.ndarray]:
    i0, j0, _ev, covered = frame_cell_evidence(quad[None], np.ones((1, 1)), cell, s)
    return i0, j0, covered


def test_cell_shares_aligned_and_half_offset() -> None:
    i0, j0, f = _share(square(0, 0, 2))
    assert (i0, j0) == (0, 0) and f.shape == (2, 2) and np.all(f == 1.0)
    i0, j0, f = _share(square(0.5, 0.5, 1.0))
    assert (i0, j0) == (0, 0)
    assert f == pytest.approx(np.full((2, 2), 0.25))
    # orientation does not matter, and a diamond covers its own area (2 cells) of its bounding cells
    _, _, f = _share(square(0, 0, 2)[::-1])
    assert np.all(f == 1.0)
    diamond = np.array([[1, 0], [2, 1], [1, 2], [0, 1]], dtype=float)
    _, _, f = _share(diamond, s=16)
    assert f.sum() == pytest.approx(2.0, abs=0.15)  # within a subsample row along each slanted edge
    # negative coordinates: cells count from the origin on both sides
    i0, j0, f = _share(square(-3.0, -1.0, 2.0))
    assert (i0, j0) == (-1, -3) and np.all(f == 1.0)


def test_two_tiles_of_a_frame_share_a_cell_by_area() -> None:
    """Adjacent tiles split a cell they both cover: evidence is each tile's times its share."""
    quads = np.stack([square(0, 0, 1.5), square(1.5, 0, 1.5)])  # the boundary at e = 1.5 halves cell 1
    i0, j0, ev, covered = frame_cell_evidence(quads, np.array([[1.0], [-1.0]]), 1.0)
    assert (i0, j0) == (0, 0) and np.all(covered[0] == [1.0, 1.0, 1.0])
    assert ev[0, 0].tolist() == pytest.approx([1.0, 0.0, -1.0])
    # the upper row is half covered: its middle cell gets a quarter of each tile, which cancel
    assert ev[0, 1].tolist() == pytest.approx([0.5, 0.0, -0.5])
    assert covered[1].tolist() == pytest.approx([0.5, 0.5, 0.5])


def test_bad_footprint_is_refused() -> None:
    with pytest.raises(ValueError, match="finite"):
        frame_cell_evidence(np.array([[[0, 0], [1, np.nan], [1, 1], [0, 1]]]), np.ones((1, 1)), 1.0)


def test_grid_adds_weighted_evidence_and_clamps() -> None:
    g = EvidenceGrid(1.0, 2, chunk=8, clamp=3.0)
    g.add_footprints(square(0, 0, 4)[None], np.array([[1.0, -0.5]]), weight=0.5)
    ev, looks = g.dense((0, 4, 0, 4))
    assert ev[0] == pytest.approx(np.full((4, 4), 0.5), abs=LSB / 2 + 1e-6)
    assert ev[1] == pytest.approx(np.full((4, 4), -0.25), abs=LSB / 2 + 1e-6)
    assert np.all(looks == 1)
    for _ in range(20):
        g.add_footprints(square(0, 0, 4)[None], np.array([[1.0, -1.0]]))
    ev, looks = g.dense((0, 4, 0, 4))
    assert ev[0].max() == pytest.approx(3.0, abs=LSB) and ev[1].min() == pytest.approx(-3.0, abs=LSB)
    assert np.all(looks == LOOKS_MAX)  # 21 looks, saturated at 15
    # a footprint across chunk corners lands in four chunks, only where it touched
    g2 = EvidenceGrid(1.0, 1, chunk=8)
    g2.add_footprints(square(-2, -2, 4)[None], np.array([[1.0]]))
    assert sorted(g2.chunks) == [(-1, -1), (-1, 0), (0, -1), (0, 0)]
    assert g2.nbytes == 4 * (8 * 8 * 2)  # one 16-bit word per cell and disease, look count inside


def test_cells_pack_evidence_and_looks_into_16_bits() -> None:
    rng = np.random.default_rng(3)
    ev = rng.integers(-EV_MAX, EV_MAX + 1, size=(2, 5, 7))
    ev[0, 0, 0], ev[1, 0, 1], ev[0, 0, 2] = -EV_MAX, EV_MAX, 0
    looks = rng.integers(0, LOOKS_MAX + 1, size=(5, 7))
    words = encode_cells(ev, looks)
    assert words.dtype == np.uint16
    back, lk = decode_cells(words)
    assert np.array_equal(back, ev) and np.array_equal(lk, looks)
    # the clamp and the 12-bit range agree: the largest clamp the grid takes still fits
    g = EvidenceGrid(1.0, 1, chunk=8, clamp=EV_MAX * LSB)
    for _ in range(30):
        g.add_footprints(square(0, 0, 2)[None], np.array([[-1.0]]))
    ev1, lk1 = g.dense((0, 2, 0, 2))
    assert ev1.min() == pytest.approx(-EV_MAX * LSB) and np.all(lk1 == LOOKS_MAX)
    with pytest.raises(ValueError, match="clamp"):
        EvidenceGrid(1.0, 1, clamp=9.0)


def test_posterior_is_a_softmax_with_the_prior() -> None:
    ev = np.array([[0.0, 3.0], [0.0, 1.0]])  # two cells, two diseases
    p = posterior(ev, -2.0)
    # cell 1: logits (0, 1, -1)
    z = np.exp([0.0, 1.0, -1.0])
    assert p[:, 1] == pytest.approx(z / z.sum())
    z0 = np.exp([0.0, -2.0, -2.0])
    assert p[:, 0] == pytest.approx(z0 / z0.sum())


def test_mask_polygon_follows_cell_edges() -> None:
    m = np.array([[1, 1, 0], [0, 1, 1]], dtype=bool)
    g = mask_polygon(m, 10, 20, 0.5)
    assert g.area == pytest.approx(4 * 0.25)
    assert g.bounds == pytest.approx((10.0, 5.0, 11.5, 6.0))


def _disk_grid(cx: float, cy: float, r: float, cell: float = 0.5) -> EvidenceGrid:
    g = EvidenceGrid(cell, 2, chunk=16)
    n = int(40 / cell)
    for i in range(n):
        for j in range(n):
            e, nn = (j + 0.5) * cell, (i + 0.5) * cell
            ev = [4.0, 0.0] if math.hypot(e - cx, nn - cy) <= r else [-1.0, -1.0]
            g.add_footprints(square(j * cell, i * cell, cell)[None], np.array([ev]))
    return g


def test_a_disk_of_evidence_is_one_zone_at_its_centre() -> None:
    g = _disk_grid(20.0, 15.0, 4.0)
    zones = extract_zones(g, LABELS, -2.0, 0.5, 1.0, pose_sigma_m=1.0)
    assert len(zones) == 1
    z = zones[0]
    assert z.label == "rust" and z.cells > 0
    assert z.centroid_en == pytest.approx((20.0, 15.0), abs=0.05)
    assert z.area_m2 == pytest.approx(math.pi * 16, rel=0.05)
    assert z.geometry_en.area == pytest.approx(z.area_m2)
    # a disk: the spread is round, sigma r/2 in each axis
    assert z.ellipse_m[0] == pytest.approx(z.ellipse_m[1], rel=0.1)
    assert z.uncertainty_m >= 1.0
    assert z.peak_p == pytest.approx(math.exp(2) / (1 + math.exp(2) + math.exp(-2)), abs=1e-3)


def test_two_diseases_compete_for_a_cell() -> None:
    """Mildew ground that also drew some rust calls is a mildew zone only (the quick model's failure)."""
    s = default_sensor_model("healthy", LABELS)
    g = EvidenceGrid(1.0, 2, chunk=8)
    fp = square(0, 0, 6)[None]
    for call in ["powdery_mildew"] * 6 + ["rust"] * 3:
        g.add_footprints(fp, s.evidence(call, True)[None])
    zones = extract_zones(g, LABELS, -2.0, 0.5, 1.0, 1.0)
    assert [z.label for z in zones] == ["powdery_mildew"]
    # the same rust calls alone would have made a rust zone
    g2 = EvidenceGrid(1.0, 2, chunk=8)
    for _ in range(3):
        g2.add_footprints(fp, s.evidence("rust", True)[None])
    assert [z.label for z in extract_zones(g2, LABELS, -2.0, 0.5, 1.0, 1.0)] == ["rust"]


def test_sensor_model_default_and_card_block() -> None:
    s = default_sensor_model("healthy", LABELS)
    assert list(s.evidence("rust", True)) == [1.0, 0.0]
    assert list(s.evidence("rust", False)) == [-0.4, -0.4]  # not flagged: nothing was called
    assert list(s.evidence("healthy", False)) == [-0.4, -0.4]
    back = sensor_model_from_dict(s.to_dict(), "healthy", LABELS)
    assert back.llr == s.llr
    bad = s.to_dict() | {"llr": {"healthy": [0.1], "rust": [1, 0], "powdery_mildew": [0, 1]}}
    with pytest.raises(SensorModelError, match=r"llr\['healthy'\]"):
        sensor_model_from_dict(bad, "healthy", LABELS)


def test_frame_weight_discounts_a_hover() -> None:
    assert frame_weight(None, (0.0, 0.0), 1.0) == 1.0
    assert frame_weight((0.0, 0.0), (0.0, 0.0), 1.0) == 0.0
    assert frame_weight((0.0, 0.0), (0.3, 0.4), 1.0) == pytest.approx(0.5)
    assert frame_weight((0.0, 0.0), (3.0, 4.0), 1.0) == 1.0


def test_zone_ids_survive_growth_and_new_zones_are_reported_once() -> None:
    book = ZoneBook()
    g = _disk_grid(10.0, 10.0, 3.0)
    first = extract_zones(g, LABELS, -2.0, 0.5, 1.0, 1.0)
    assert [z.id for z in book.assign(first)] == ["rust-1"]
    g2 = _disk_grid(10.5, 10.0, 3.5)
    again = extract_zones(g2, LABELS, -2.0, 0.5, 1.0, 1.0)
    assert book.assign(again) == [] and again[0].id == "rust-1"


def _zone(label: str, geom: object, peak: float) -> Zone:
    return Zone(label, geom, 1.0, (0.0, 0.0), peak, peak, 1, 1.0, (0.0, 0.0, 0.0), 1.0, 1)  # type: ignore[arg-type]


def test_zone_book_oldest_touching_id_of_the_class_wins_once_per_cut() -> None:
    """The R-tree search keeps the rules: class first, oldest id first, one zone per id in a cut."""
    book = ZoneBook()
    a, b, far = shapely.box(0, 0, 2, 2), shapely.box(1.5, 0, 4, 2), shapely.box(50, 50, 51, 51)
    first = [_zone("rust", a, 0.9), _zone("rust", b, 0.8), _zone("powdery_mildew", a, 0.7)]
    assert sorted(z.id for z in book.assign(first)) == ["powdery_mildew-1", "rust-1", "rust-2"]
    # one zone now touches both rust outlines: it takes the oldest; a second touching zone takes the other
    merged, beside = _zone("rust", shapely.box(0, 0, 4, 2), 0.95), _zone("rust", shapely.box(3, 1, 5, 3), 0.6)
    mildew_far = _zone("powdery_mildew", far, 0.9)
    new = book.assign([beside, merged, mildew_far])
    assert (merged.id, beside.id) == ("rust-1", "rust-2")
    assert [z.id for z in new] == ["powdery_mildew-2"]  # touches no mildew outline: new, and reported
    # outlines follow the zones: rust-2 now lies where `beside` was
    again = _zone("rust", shapely.box(4.5, 2.5, 6, 4), 0.5)
    assert book.assign([again]) == [] and again.id == "rust-2"


def test_zone_book_forgets_zones_gone_for_long_and_a_returning_zone_keeps_its_id() -> None:
    """Memory follows the zones alive; ids stay stable: a zone back over a forgotten one takes its id again."""
    book = ZoneBook(forget_after=3)
    a, b = _zone("rust", shapely.box(0, 0, 2, 2), 0.9), _zone("rust", shapely.box(10, 0, 12, 2), 0.8)
    assert sorted(z.id for z in book.assign([a, b])) == ["rust-1", "rust-2"]
    for _ in range(2):  # rust-1 is gone for two cuts: still known by its outline
        keep = _zone("rust", shapely.box(10, 0, 12, 2), 0.8)
        book.assign([keep])
    assert book.forgotten == 0 and len(book.known) == 2
    book.assign([_zone("rust", shapely.box(10, 0, 12, 2), 0.8)])  # the third cut without it: forgotten
    assert book.forgotten == 1 and [k.id for k in book.known] == ["rust-2"]
    # it comes back, touching its old bounds: the same id, not reported again
    back = _zone("rust", shapely.box(1, 1, 3, 3), 0.7)
    mildew = _zone("powdery_mildew", shapely.box(0, 0, 2, 2), 0.7)  # another class over the same ground
    new = book.assign([back, mildew, _zone("rust", shapely.box(10, 0, 12, 2), 0.8)])
    assert back.id == "rust-1" and [z.id for z in new] == ["powdery_mildew-1"]
    assert book.forgotten == 0 and sorted(k.id for k in book.known) == ["powdery_mildew-1", "rust-1", "rust-2"]
    # a new zone elsewhere gets a new id: ids are never reused
    for _ in range(3):
        book.assign([])
    far = _zone("rust", shapely.box(50, 50, 51, 51), 0.9)
    assert book.assign([far]) == [far] and far.id == "rust-3" and book.forgotten == 3


def test_outline_cache_gives_the_zones_a_fresh_extraction_gives() -> None:
    """Zones cut with the outline cache are the zones cut without it, as the grid changes between cuts."""
    g = _disk_grid(10.0, 10.0, 3.0)
    cache: dict = {}
    for step, (cx, r) in enumerate([(10.0, 3.0), (10.0, 3.0), (12.0, 4.0), (30.0, 2.5)]):
        if step:
            for i in range(int(40 / 0.5)):
                for j in range(int(40 / 0.5)):
                    e, n = (j + 0.5) * 0.5, (i + 0.5) * 0.5
                    if math.hypot(e - cx, n - 10.0) <= r:
                        g.add_footprints(square(j * 0.5, i * 0.5, 0.5)[None], np.array([[2.0, 0.0]]))
        cached = extract_zones(g, LABELS, -2.0, 0.5, 1.0, 1.0, cache)
        fresh = extract_zones(g, LABELS, -2.0, 0.5, 1.0, 1.0)
        assert [(z.label, z.cells, z.centroid_en) for z in cached] == [(z.label, z.cells, z.centroid_en) for z in fresh]
        assert all(a.geometry_en.equals(b.geometry_en) for a, b in zip(cached, fresh, strict=True))
        assert len(cache) == len(cached)  # one cut's outlines, no more



def test_a_zone_keeps_its_outline_packed_and_gives_back_the_same_geometry() -> None:
    """The outline lives as WKB bytes between cuts (no GEOS object); the geometry made from it is the traced one,
    vertex for vertex (type, ring order, start point), so every writer sees the same coordinates as before."""
    rng = np.random.default_rng(5)
    for k in range(40):
        m = rng.random((4, 5)) > 0.35
        if not m.any():
            continue
        traced = mask_polygon(m, 7 + k, 300 + 3 * k, 0.5)
        z = _zone("rust", traced, 0.9)
        assert isinstance(z.outline, bytes) and not hasattr(z, "__dict__")
        back = z.geometry_en
        assert back.geom_type == traced.geom_type and back.equals_exact(traced, 0.0)
        assert np.array_equal(shapely.get_coordinates(back), shapely.get_coordinates(traced))
    g = _disk_grid(10.0, 10.0, 3.0)
    (zone,) = extract_zones(g, LABELS, -2.0, 0.5, 1.0, 1.0)
    assert isinstance(zone.outline, bytes) and zone.geometry_en.area == pytest.approx(zone.area_m2)


# --- the whole map on a synthetic survey: nadir square tiles, a round rust patch -------------------

ORIGIN = LocalFrame(-35.0, 149.0, 0.0)


def _look(run: str, veh_en: tuple[float, float], tiles: list[tuple[np.ndarray, str, bool]], trusted: bool = True
          ) -> dict:
    lat, lon, _ = ORIGIN.to_geodetic(veh_en[0], veh_en[1], 0.0)
    recs = []
    for quad, label, flagged in tiles:
        la, lo, _ = ORIGIN.to_geodetic(quad[:, 0], quad[:, 1], 0.0)
        recs.append({"label": label, "flagged": flagged, "scores": [],
                     "footprint": [[float(a), float(b)] for a, b in zip(la, lo, strict=True)]})
    return {"schema": LOOK_SCHEMA, "run_id": run, "trusted": trusted, "flags": [] if trusted else ["no_fix"],
            "vehicle": {"lat": float(lat), "lon": float(lon)}, "tiles": recs}


def survey_looks(patch: tuple[float, float, float], lines_n: list[float], run: str = "a", tile: float = 8.0,
                 step: float = 1.0, e_range: tuple[float, float] = (0.0, 60.0)) -> list[dict]:
    """A camera of 3 x 4 square tiles flying east along each line; a tile calls rust when the patch
    covers more than 15 % of it (the true share, from a fine lattice)."""
    pe, pn, pr = patch
    looks = []
    sub = (np.arange(16) + 0.5) / 16
    for ln in lines_n:
        for e in np.arange(e_range[0], e_range[1], step):
            tiles = []
            for r in range(3):
                for c in range(4):
                    e0, n0 = e - 2 * tile + c * tile, ln - 1.5 * tile + r * tile
                    xs, ys = np.meshgrid(e0 + sub * tile, n0 + sub * tile)
                    share = float(np.mean(np.hypot(xs - pe, ys - pn) <= pr))
                    hit = share > 0.15
                    tiles.append((square(e0, n0, tile), "rust" if hit else "healthy", hit))
            looks.append(_look(run, (float(e), ln), tiles))
    return looks


def test_the_map_localises_a_patch_finer_than_a_tile() -> None:
    cfg = MapSection(zones_every_frames=20)
    dm = DiseaseMap(default_sensor_model("healthy", LABELS), cfg, ORIGIN)
    alerted = []
    for rec in survey_looks((30.0, 20.0, 5.0), [5.0, 20.0, 35.0]):
        alerted += dm.add_look(rec)
    dm.finish()
    assert [z.id for z in alerted] == ["rust-1"]  # alerted once, as it was confirmed
    (z,) = dm.zones
    assert math.hypot(z.centroid_en[0] - 30.0, z.centroid_en[1] - 20.0) < 1.0
    assert 0.3 * math.pi * 25 < z.area_m2 < 3.0 * math.pi * 25


def test_untrusted_looks_do_not_touch_the_grid_and_hover_adds_little() -> None:
    cfg = MapSection()
    dm = DiseaseMap(default_sensor_model("healthy", LABELS), cfg, ORIGIN)
    tiles = [(square(0, 0, 8), "rust", True)]
    dm.add_look(_look("a", (4.0, 4.0), tiles, trusted=False))
    assert dm.grid.chunks == {} and dm.counts.untrusted == 1
    for _ in range(50):  # hovering: the same view 50 times
        dm.add_look(_look("a", (4.0, 4.0), tiles))
    ev, looks = dm.grid.dense((0, 16, 0, 16))
    assert ev[0].max() == pytest.approx(1.0, abs=1e-3)  # one look's worth of evidence
    assert looks.max() == LOOKS_MAX  # but every look is counted (up to the 4-bit count's 15)


def test_two_half_flights_fuse_into_the_whole_map() -> None:
    whole = DiseaseMap(default_sensor_model("healthy", LABELS), MapSection(), ORIGIN)
    for rec in survey_looks((30.0, 20.0, 5.0), [5.0, 20.0, 35.0]):
        whole.add_look(rec)
    whole.finish()
    fused = DiseaseMap(default_sensor_model("healthy", LABELS), MapSection(), ORIGIN)
    for rec in survey_looks((30.0, 20.0, 5.0), [5.0, 20.0, 35.0], run="a", e_range=(0.0, 30.0)):
        fused.add_look(rec)
    for rec in survey_looks((30.0, 20.0, 5.0), [5.0, 20.0, 35.0], run="b", e_range=(30.0, 60.0)):
        fused.add_look(rec)
    fused.finish()
    assert [z.label for z in fused.zones] == [z.label for z in whole.zones] == ["rust"]
    a, b = whole.zones[0].centroid_en, fused.zones[0].centroid_en
    assert math.hypot(a[0] - b[0], a[1] - b[1]) < 0.5


def test_products_are_read_back_by_gdal(tmp_path) -> None:
    """GeoTIFFs (rasterio: GDAL in its wheel) carry a CRS and transform that put the zone where the map has it."""
    rasterio = pytest.importorskip("rasterio")
    from rasterio.warp import transform as warp

    from payload.sinks.maplayers import write_map_products

    dm = DiseaseMap(default_sensor_model("healthy", LABELS), MapSection(), ORIGIN)
    for rec in survey_looks((30.0, 20.0, 5.0), [5.0, 20.0, 35.0]):
        dm.add_look(rec)
    dm.finish()
    written = write_map_products(tmp_path, dm, ["geojson", "kml", "csv"], rasters=True)
    assert tmp_path / "probability_rust.tif" in written and tmp_path / "looks.tif" in written
    (z,) = dm.zones
    lat, lon, _ = ORIGIN.to_geodetic(z.centroid_en[0], z.centroid_en[1], 0.0)
    with rasterio.open(tmp_path / "probability_rust.tif") as src:
        assert src.crs is not None and src.res == (0.5, 0.5)
        xs, ys = warp("EPSG:4326", src.crs, [float(lon)], [float(lat)])
        assert (xs[0], ys[0]) == pytest.approx(z.centroid_en, abs=0.01)  # the tangent plane is the map's frame
        row, col = src.index(xs[0], ys[0])
        assert src.read(1)[row, col] > 0.5
        far_row, far_col = src.index(55.0, 35.0)  # healthy ground the survey saw
        assert src.read(1)[far_row, far_col] < 0.1
    with rasterio.open(tmp_path / "looks.tif") as src:
        assert src.dtypes == ("uint8",) and src.read(1).max() > 3
    import json

    zones = json.loads((tmp_path / "zones.geojson").read_text())
    (f,) = zones["features"]
    assert f["geometry"]["type"] == "Polygon" and "crs" not in zones
    ring = f["geometry"]["coordinates"][0]
    assert ring[0] == ring[-1]
    area2 = sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(ring, ring[1:], strict=False))
    assert area2 > 0  # RFC 7946: exterior counter-clockwise
    assert f["properties"]["id"] == "rust-1" and abs(f["properties"]["lat"] - float(lat)) < 1e-7
    cov = json.loads((tmp_path / "coverage.geojson").read_text())
    assert [c["properties"]["min_looks"] for c in cov["features"]] == [1, 3]


def test_zone_and_coverage_layers_are_read_by_gdal(tmp_path) -> None:
    """GeoJSON and KML polygons open in GDAL's vector drivers (pyogrio) with the zones' geometry and attributes."""
    pyogrio = pytest.importorskip("pyogrio")
    from payload.sinks.maplayers import write_map_products

    dm = DiseaseMap(default_sensor_model("healthy", LABELS), MapSection(), ORIGIN)
    for rec in survey_looks((30.0, 20.0, 5.0), [5.0, 20.0, 35.0]):
        dm.add_look(rec)
    dm.finish()
    write_map_products(tmp_path, dm, ["geojson", "kml"], rasters=False)
    (z,) = dm.zones
    meta, _fids, geoms, fields = pyogrio.raw.read(tmp_path / "zones.geojson")
    assert meta["crs"] == "EPSG:4326" and meta["geometry_type"] == "Polygon"
    cols = dict(zip(meta["fields"], fields, strict=True))
    assert list(cols["id"]) == ["rust-1"] and cols["area_m2"][0] == pytest.approx(z.area_m2)
    assert len(geoms) == 1 and geoms[0] is not None
    info = pyogrio.read_info(tmp_path / "zones.kml", layer="rust")  # the KML folder is GDAL's layer
    assert info["features"] == 1
    _m, _f, kml_geoms, _v = pyogrio.raw.read(tmp_path / "zones.kml", layer="rust")
    assert kml_geoms[0] is not None and len(kml_geoms[0]) > 100  # WKB of the polygon
    cov = pyogrio.read_info(tmp_path / "coverage.geojson")
    assert cov["features"] == 2
    seen = pyogrio.read_bounds(tmp_path / "coverage.geojson")[1]  # (fids, bounds[4, n])
    lat, lon, _ = ORIGIN.to_geodetic(30.0, 20.0, 0.0)
    assert seen[0, 0] < float(lon) < seen[2, 0] and seen[1, 0] < float(lat) < seen[3, 0]


def test_explain_away_shares_a_call_by_the_cells_probability_and_keeps_its_total() -> None:
    prior = -2.0
    g = EvidenceGrid(1.0, 1, chunk=8)
    # the west half (2 x 4 cells) already believed diseased: evidence +4 -> p = sigmoid(2) = 0.881
    g.add_footprints(square(0, 0, 2)[None] + [0, 0], np.array([[4.0]]))
    g.add_footprints(square(0, 2, 2)[None], np.array([[4.0]]))
    before, _ = g.dense((0, 4, 0, 4))
    g.add_footprints(square(0, 0, 4)[None], np.array([[1.0]]), explain_prior=prior)
    after, _ = g.dense((0, 4, 0, 4))
    inc = (after - before)[0]
    p_hot, p_cold = 1 / (1 + math.exp(-2.0)), 1 / (1 + math.exp(2.0))
    mean = (p_hot + p_cold) / 2
    assert inc[:, :2] == pytest.approx(np.full((4, 2), p_hot / mean), abs=2 * LSB)
    assert inc[:, 2:] == pytest.approx(np.full((4, 2), p_cold / mean), abs=2 * LSB)
    assert inc.sum() == pytest.approx(16.0, abs=16 * LSB)  # the tile's total evidence is unchanged


def test_explain_away_is_even_on_unseen_ground_and_leaves_healthy_calls_even() -> None:
    g, h = EvidenceGrid(1.0, 2, chunk=8), EvidenceGrid(1.0, 2, chunk=8)
    g.add_footprints(square(0, 0, 4)[None], np.array([[1.0, -0.5]]), explain_prior=-2.0)
    h.add_footprints(square(0, 0, 4)[None], np.array([[1.0, -0.5]]))
    assert np.array_equal(g.dense((0, 4, 0, 4))[0], h.dense((0, 4, 0, 4))[0])
    g.add_footprints(square(0, 0, 2)[None], np.array([[4.0, 0.0]]))
    before, _ = g.dense((0, 4, 0, 4))
    g.add_footprints(square(0, 0, 4)[None], np.array([[-1.0, -1.0]]), explain_prior=-2.0)
    after, _ = g.dense((0, 4, 0, 4))
    assert (after - before) == pytest.approx(np.full((2, 4, 4), -1.0), abs=LSB)


def test_explain_away_gives_ground_seen_only_beside_a_patch_less_of_its_evidence() -> None:
    # Fixed cross-track tiles: column A (e 0-2) sees the patch from another line, column B (e 1-5) always
    # sees the patch's east part (e 1-2) with healthy ground (e 2-5) and calls the disease.
    def run(explain: bool) -> np.ndarray:
        g = EvidenceGrid(0.5, 1, chunk=16)
        for _ in range(6):
            g.add_footprints(square(0, 0, 2)[None], np.array([[0.4]]), explain_prior=-2.0 if explain else None)
            g.add_footprints(square(1, 0, 4)[None], np.array([[0.4]]), explain_prior=-2.0 if explain else None)
        return g.dense((0, 4, 0, 10))[0][0]

    even, explained = run(False), run(True)
    beside = (slice(None), slice(6, 10))  # e 3-5 m: only ever seen together with the patch
    assert even[beside] == pytest.approx(np.full((4, 4), 2.4), abs=4 * LSB)  # 6 calls x 0.4, shared evenly
    assert explained[beside].max() < 0.85 * 2.4  # the patch, seen by both columns, took more of each call
    core = (slice(None), slice(2, 4))  # e 1-2 m: the patch under both columns
    assert explained[core].min() > even[core].min() > 4.0


def test_a_sliver_closer_than_the_pose_error_belongs_to_its_patch_zone() -> None:
    def zones_with_gap(gap_cells: int, sigma: float) -> list:
        g = EvidenceGrid(0.5, 2, chunk=32)
        g.add_footprints(square(0, 0, 4)[None], np.array([[5.0, 0.0]]))  # a 4 m x 4 m patch, 64 cells
        e0 = 4.0 + 0.5 * gap_cells
        g.add_footprints(square(e0, 1, 1)[None], np.array([[5.0, 0.0]]))  # a 1 m x 1 m sliver beside it
        return extract_zones(g, LABELS, -2.0, 0.5, 0.5, pose_sigma_m=sigma)

    one = zones_with_gap(4, sigma=1.0)  # 2 m of undecided ground between them: within twice the pose error
    assert len(one) == 1 and one[0].cells == 64 + 4 and one[0].area_m2 == pytest.approx(17.0)
    assert one[0].geometry_en.area == pytest.approx(17.0)  # the gap is not painted into the zone
    assert len(zones_with_gap(5, sigma=1.0)) == 2  # 2.5 m apart: two zones
    assert len(zones_with_gap(2, sigma=0.0)) == 2  # a perfect pose: every piece on its own


def test_zone_polygons_in_one_conversion_match_a_vertex_by_vertex_conversion() -> None:
    from payload.geo.lonlat import geometries_lonlat, geometry_lonlat

    holed = shapely.Polygon([(0, 0), (10, 0), (10, 10), (0, 10)], [[(2, 2), (2, 4), (4, 4), (4, 2)]])
    multi = shapely.MultiPolygon([shapely.box(20, 0, 22, 3), shapely.box(30, 5, 31, 6)])
    out = geometries_lonlat([holed, shapely.Polygon(), multi], ORIGIN)
    assert len(out) == 3 and out[1] == [] and [len(p) for p in out[2]] == [1, 1] and len(out[0][0]) == 2
    assert all(isinstance(r, np.ndarray) and r.dtype == np.float64 for p in out for poly in p for r in poly)
    assert [[r.tolist() for r in poly] for poly in out[0]] == geometry_lonlat(holed, ORIGIN)
    for geom, polys in ((holed, out[0]), (multi, out[2])):
        for poly, rings in zip(shapely.get_parts(shapely.orient_polygons(geom)), polys, strict=True):
            for ring, got in zip([poly.exterior, *poly.interiors], rings, strict=True):
                want = []
                for e, n in ring.coords:
                    lat, lon, _ = ORIGIN.to_geodetic(float(e), float(n), 0.0)
                    want.append([round(float(lon), 8), round(float(lat), 8)])
                assert got.tolist() == want


def _with_sigma(looks: list[dict], sigma: float) -> list[dict]:
    for rec in looks:
        for t in rec["tiles"]:
            t["sigma_m"] = sigma
    return looks


def test_a_zones_position_error_grows_when_its_looks_are_unsure_of_their_place() -> None:
    cfg = MapSection(zones_every_frames=20)
    maps = {}
    for sigma in (0.0, 1.5):
        dm = DiseaseMap(default_sensor_model("healthy", LABELS), cfg, ORIGIN)
        for rec in _with_sigma(survey_looks((30.0, 20.0, 5.0), [5.0, 20.0, 35.0]), sigma):
            dm.add_look(rec)
        dm.finish()
        maps[sigma] = dm
    (sure,), (unsure,) = maps[0.0].zones, maps[1.5].zones
    assert sure.place_sigma_m == 0.0 and unsure.place_sigma_m == pytest.approx(1.5)
    assert unsure.as_dict()["place_sigma_m"] == 1.5
    # the stated error adds the looks' placement error in quadrature to the rest
    rest = sure.uncertainty_m ** 2 - cfg.pose_sigma_m ** 2
    assert unsure.uncertainty_m > sure.uncertainty_m + 0.5
    assert unsure.uncertainty_m ** 2 == pytest.approx(cfg.pose_sigma_m ** 2 + 1.5 ** 2 + rest, rel=0.2)
    # each tile's evidence is scaled by the share of its 8 m footprint expected on its true ground
    share = (1 - math.sqrt(2 / math.pi) * 1.5 / 8.0) ** 2
    ev = []
    for sigma in (0.0, 1.5):
        dm = DiseaseMap(default_sensor_model("healthy", LABELS), cfg, ORIGIN)
        dm.add_look(_with_sigma(survey_looks((30.0, 20.0, 5.0), [5.0], e_range=(0.0, 1.0)), sigma)[0])
        ev.append(dm.grid.dense((-64, 64, -64, 64))[0])
    seen = ev[0] != 0
    assert seen.sum() > 500 and np.allclose(ev[1][seen], share * ev[0][seen], atol=0.005)  # 1/250 steps


def test_a_look_recorded_without_sigma_is_taken_as_exactly_placed() -> None:
    """Flights recorded before looks carried sigma_m replay to the map they made."""
    cfg = MapSection(zones_every_frames=20)
    a = DiseaseMap(default_sensor_model("healthy", LABELS), cfg, ORIGIN)
    b = DiseaseMap(default_sensor_model("healthy", LABELS), cfg, ORIGIN)
    for rec in survey_looks((30.0, 20.0, 5.0), [5.0, 20.0]):
        a.add_look(rec)
    for rec in _with_sigma(survey_looks((30.0, 20.0, 5.0), [5.0, 20.0]), 0.0):
        b.add_look(rec)
    ea, _ = a.grid.dense((0, 128, 0, 128))
    eb, _ = b.grid.dense((0, 128, 0, 128))
    assert np.array_equal(ea, eb)
