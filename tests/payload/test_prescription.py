"""Treatment zones, the scout list and the grid prescription: pure geometry against hand-worked answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import shapely

from payload.config import MapSection, PrescriptionSection
from payload.errors import PrescriptionError
from payload.geo.frames import LocalFrame
from payload.geo.zones import Zone, mask_polygon
from payload.grower.gridrx import grid_prescription
from payload.grower.scout import scout_list
from payload.grower.treatment import plan_treatment, priority, treatment_zones, vertex_count

LABELS = ["rust", "powdery_mildew"]


def zone(label: str, geom: shapely.geometry.base.BaseGeometry, zid: str = "", peak: float = 0.9) -> Zone:
    c = geom.centroid
    return Zone(label, geom, float(geom.area), (c.x, c.y), peak, 0.8 * peak, 6, 4.0, (1.0, 1.0, 0.0), 1.0,
                int(geom.area / 0.25), zid)


def staircase_disk(ce: float, cn: float, r: float, cell: float = 0.5) -> shapely.Polygon:
    """A disk as the grid draws it: the outline of the 0.5 m cells whose centre is inside (many vertices)."""
    n = int(2 * r / cell) + 4
    c0, r0 = int((ce - r) / cell) - 2, int((cn - r) / cell) - 2
    yy, xx = np.mgrid[0:n, 0:n]
    m = np.hypot((c0 + xx + 0.5) * cell - ce, (r0 + yy + 0.5) * cell - cn) <= r
    return mask_polygon(m, r0, c0, cell)


def test_a_10_m_square_with_a_5_m_margin_is_a_rounded_square_of_known_area() -> None:
    (t,) = treatment_zones([zone("rust", shapely.box(0, 0, 10, 10), "rust-1")], PrescriptionSection(), LABELS)
    # 10 x 10 + four 10 x 5 sides + four quarter circles of 5 m drawn with 8 segments each:
    # 100 + 200 + (32 / 2) * 25 * sin(2 pi / 32); the true circle would add pi * 25 = 78.54
    polygonal = 300.0 + 16 * 25 * math.sin(2 * math.pi / 32)
    assert t.area_m2 == pytest.approx(polygonal, rel=1e-6)
    assert t.area_m2 == pytest.approx(300.0 + math.pi * 25, rel=2e-3)
    assert t.geometry_en.bounds == pytest.approx((-5, -5, 15, 15))
    d = t.as_dict()
    assert (d["id"], d["class"], d["class_code"], d["rate"], d["unit"], d["disease_zones"]) == (
        "T1", "rust", 1, 1.0, "l/ha", "rust-1")
    assert d["area_ha"] == pytest.approx(polygonal / 10_000, abs=1e-4)


def test_zones_of_a_class_merge_when_their_margins_touch() -> None:
    cfg = PrescriptionSection(rates={"rust": 2.5})
    near = [zone("rust", shapely.box(0, 0, 4, 4), "rust-1"), zone("rust", shapely.box(13, 0, 17, 4), "rust-2")]
    (t,) = treatment_zones(near, cfg, LABELS)  # 9 m apart, 5 m margins: they overlap
    assert t.disease_zone_ids == ("rust-1", "rust-2") and t.rate == 2.5
    far = [zone("rust", shapely.box(0, 0, 4, 4), "rust-1"), zone("rust", shapely.box(15, 0, 19, 4), "rust-2")]
    assert len(treatment_zones(far, cfg, LABELS)) == 2  # 11 m apart: a 1 m strip stays untreated


def test_two_classes_one_product_per_ground_and_each_disease_keeps_its_own() -> None:
    rust = shapely.box(0, 0, 4, 4)
    mildew = shapely.box(10, 0, 14, 4)  # 6 m apart: the 5 m margins overlap by 4 m
    cfg = PrescriptionSection(rates={"rust": 1.0, "powdery_mildew": 2.0})
    assert priority(LABELS, cfg) == ["powdery_mildew", "rust"]  # the higher rate wins the overlap by default
    zs = treatment_zones([zone("rust", rust, "rust-1"), zone("powdery_mildew", mildew, "pm-1")], cfg, LABELS)
    by = {t.label: t for t in zs}
    assert set(by) == {"rust", "powdery_mildew"}
    assert by["rust"].geometry_en.covers(rust) and by["powdery_mildew"].geometry_en.covers(mildew)
    assert by["rust"].geometry_en.intersection(by["powdery_mildew"].geometry_en).area == pytest.approx(0, abs=1e-6)
    # the strip between them (x in 4..10) is mildew's margin: x = 7 is mildew ground
    assert by["powdery_mildew"].geometry_en.contains(shapely.Point(7, 2))
    # together they treat exactly the union of the two margins
    union = shapely.union(rust.buffer(5, quad_segs=8), mildew.buffer(5, quad_segs=8))
    assert shapely.union(by["rust"].geometry_en, by["powdery_mildew"].geometry_en).symmetric_difference(
        union).area == pytest.approx(0, abs=1e-3)
    # with rust first by configuration, the strip is rust's, but the mildew zone stays mildew's
    cfg2 = PrescriptionSection(rates={"rust": 1.0, "powdery_mildew": 2.0}, priority=["rust"])
    by2 = {t.label: t for t in treatment_zones([zone("rust", rust), zone("powdery_mildew", mildew)], cfg2, LABELS)}
    assert by2["rust"].geometry_en.contains(shapely.Point(7, 2))
    assert by2["powdery_mildew"].geometry_en.covers(mildew)


def test_the_vertex_budget_is_kept_without_uncovering_the_disease() -> None:
    disk = staircase_disk(20.0, 20.0, 6.0)
    assert vertex_count(disk.buffer(5.0, quad_segs=8)) > 40
    for budget in (40, 16, 8):
        plan = plan_treatment([zone("rust", disk, "rust-1")], PrescriptionSection(max_vertices=budget), LABELS)
        (t,) = plan.zones
        assert vertex_count(t.geometry_en) <= budget and t.geometry_en.is_valid
        assert t.geometry_en.covers(disk)
        # the margin is kept but for the simplification's tolerance
        assert t.geometry_en.buffer(plan.simplify_tolerance_m + 1e-6).covers(disk.buffer(5.0 - 1.0))


def test_a_budget_too_small_for_two_touching_classes_is_simplified_as_one_coverage() -> None:
    a, b = staircase_disk(10.0, 10.0, 4.0), staircase_disk(20.0, 10.0, 4.0)
    zs = treatment_zones([zone("rust", a), zone("powdery_mildew", b)], PrescriptionSection(max_vertices=24), LABELS)
    assert all(vertex_count(t.geometry_en) <= 24 for t in zs)
    inter = shapely.intersection(zs[0].geometry_en, zs[1].geometry_en).area
    assert inter == pytest.approx(0, abs=1e-6)  # shared borders stay shared: no overlap appears
    assert shapely.union_all([t.geometry_en for t in zs]).covers(shapely.union(a, b))


def _row_of_zones(n: int, gap: float = 20.0) -> list[Zone]:
    return [zone("rust", shapely.box(i * gap, 0, i * gap + 4, 4), f"rust-{i + 1}") for i in range(n)]


def test_more_zones_than_a_strict_terminal_takes_are_merged_nearest_first() -> None:
    zones = _row_of_zones(5)
    zones[4] = zone("rust", shapely.box(100, 0, 104, 4), "rust-5")  # the last one is further away
    cfg = PrescriptionSection(terminal={"max_zones": 3})
    plan = plan_treatment(zones, cfg, LABELS)
    assert len(plan.zones) == 3 and plan.merges == 2
    assert all("terminal.max_zones = 3" in n for n in plan.notes)
    assert shapely.union_all([t.geometry_en for t in plan.zones]).covers(shapely.union_all(
        [z.geometry_en for z in zones]))
    # the far zone stays on its own; the merged ones say so
    far = [t for t in plan.zones if t.disease_zone_ids == ("rust-5",)]
    assert len(far) == 1 and not far[0].merged
    assert sum(t.merged for t in plan.zones) >= 1


def test_a_strict_terminal_can_refuse_instead_with_the_fix_in_the_message() -> None:
    cfg = PrescriptionSection(terminal={"max_zones": 3, "on_too_many": "refuse"})
    with pytest.raises(PrescriptionError, match=r"5 treatment zones, more than prescription.terminal.max_zones = 3"
                       r".*on_too_many: merge"):
        plan_treatment(_row_of_zones(5), cfg, LABELS)
    # one zone per class and still too many: no merge can help (one product per zone)
    two = [zone("rust", shapely.box(0, 0, 4, 4)), zone("powdery_mildew", shapely.box(50, 0, 54, 4))]
    with pytest.raises(PrescriptionError, match="each class is already one zone"):
        plan_treatment(two, PrescriptionSection(terminal={"max_zones": 1}), LABELS)


def test_a_rate_for_a_class_the_model_lacks_is_refused() -> None:
    with pytest.raises(PrescriptionError, match=r"prescription.rates names 'mildew'.*rust, powdery_mildew"):
        plan_treatment([], PrescriptionSection(rates={"mildew": 1.0}), LABELS)


def test_grid_cells_take_the_rate_of_the_zone_they_touch() -> None:
    frame = LocalFrame(48.0, 16.0, 0.0)
    cfg = PrescriptionSection(margin_m=0.0, rates={"rust": 3.0})
    tz = treatment_zones([zone("rust", shapely.box(10, 10, 20, 20), "rust-1")], cfg, LABELS)
    g = grid_prescription(tz, shapely.box(0, 0, 40, 30), 5.0, frame, priority(LABELS, cfg))
    assert g.shape == (6, 8)  # 30 m north by 40 m east in 5 m cells
    treated = {(int(r), int(c)) for r, c in zip(*np.nonzero(g.codes), strict=True)}
    assert treated == {(2, 2), (2, 3), (3, 2), (3, 3)}  # the 10 m square fills exactly four cells
    assert set(np.unique(g.rates)) == {0.0, 3.0} and g.rates[2, 2] == 3.0 and g.codes[2, 2] == 1
    # a cell's lon/lat box is cell_m on the ground
    w, s, e, n = g.cell_box(0, 0)
    e0, n0, _ = frame.to_enu(s, w)
    e1, n1, _ = frame.to_enu(n, e)
    assert (float(e1 - e0), float(n1 - n0)) == pytest.approx((5.0, 5.0), abs=0.01)
    # a zone reaching 1 m into a cell gets the whole cell treated (a spot sprayer errs towards treating)
    tz2 = treatment_zones([zone("rust", shapely.box(10, 10, 21, 20), "rust-1")], cfg, LABELS)
    g2 = grid_prescription(tz2, shapely.box(0, 0, 40, 30), 5.0, frame, priority(LABELS, cfg))
    assert int((g2.codes > 0).sum()) == 6


def test_scout_list_has_unconfirmed_suspects_and_unseen_ground() -> None:
    mcfg, rcfg = MapSection(), PrescriptionSection()
    confirmed = [zone("rust", shapely.box(10, 10, 14, 14), "rust-1", peak=0.9)]
    suspects = [
        zone("rust", shapely.box(9, 9, 15, 15), peak=0.9),  # the confirmed zone's own fringe: not listed
        zone("powdery_mildew", shapely.box(70, 70, 73, 73), peak=0.35),  # unconfirmed: listed
        zone("rust", shapely.box(30, 70, 30.5, 70.5), peak=0.7),  # strong but tiny: listed
    ]
    # a 20 m hole, a 1 m strip between two passes (not worth a walk), and a bite out of the edge (outside the
    # field, for all the map knows)
    seen = shapely.box(0, 0, 100, 100).difference(shapely.box(40, 40, 60, 60)).difference(
        shapely.box(20, 10, 21, 90)).difference(shapely.box(80, 90, 100, 100))
    items = scout_list(suspects, confirmed, seen, mcfg, rcfg)
    assert [(i.id, i.kind, i.label) for i in items] == [
        ("S1", "suspect", "rust"), ("S2", "suspect", "powdery_mildew"), ("S3", "gap", "")]
    assert "under the zone minimum" in items[0].why and "under the zone threshold 0.50" in items[1].why
    # the hole opened by 1 m: its corners rounded off, 400 - (4 - pi) m2
    assert items[2].area_m2 == pytest.approx(400.0 - (4.0 - math.pi), rel=1e-3)
    assert items[2].point_en == pytest.approx((50.0, 50.0))
    assert "not healthy" in items[2].why
    assert items[1].as_dict()["peak_p"] == 0.35


def test_a_negative_rate_is_a_config_error() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        PrescriptionSection(rates={"rust": -1.0})
    with pytest.raises(ValidationError, match="taskdata: grid needs prescription.grid_cell_m"):
        PrescriptionSection(taskdata="grid")


def test_a_zone_unsure_of_its_place_is_treated_further_out() -> None:
    """The margin grows by two of the zone's placement sigmas (its looks' error, payload/geo/placeerror.py)."""
    sure = zone("rust", shapely.box(0, 0, 10, 10), "rust-1")
    unsure = zone("rust", shapely.box(0, 0, 10, 10), "rust-1")
    unsure.place_sigma_m = 1.5
    (a,) = treatment_zones([sure], PrescriptionSection(), LABELS)
    (b,) = treatment_zones([unsure], PrescriptionSection(), LABELS)
    assert a.geometry_en.bounds == pytest.approx((-5, -5, 15, 15))
    assert b.geometry_en.bounds == pytest.approx((-8, -8, 18, 18))  # 5 m + 2 x 1.5 m
    # two zones 12 m apart: plain 5 m margins leave a 2 m strip; an unsure one's margin reaches across
    far = zone("rust", shapely.box(22, 0, 32, 10), "rust-2")
    assert len(treatment_zones([sure, far], PrescriptionSection(), LABELS)) == 2
    assert len(treatment_zones([unsure, far], PrescriptionSection(), LABELS)) == 1
