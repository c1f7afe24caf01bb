"""The physical world: deterministic, area-correct, and as visible as physics allows (docs/WORLD.md)."""

from __future__ import annotations

import time
import tracemalloc
from dataclasses import dataclass

import cv2
import numpy as np
import pytest

from flight_sim.world import LABEL_OUTSIDE, STAGES, CropSection, LightSection, World, apply_haze, decode, encode
from payload.bundle import CLASSES


@dataclass(frozen=True)
class P:
    cls: str
    east_m: float
    north_m: float
    radius_m: float
    stage: str = "moderate"


def world(kind: str = "soybean", patches: tuple = (), seed: int = 7, size: float = 40.0, **light) -> World:
    return World(CropSection(kind=kind), LightSection(**light), list(patches), size, size, seed)


def render(w: World, x0: float, y0: float, side_m: float, gsd: float, t_s: float = 0.0):
    """A nadir square of side_m from its south-west corner (x0, y0); row 0 = north."""
    n = int(round(side_m / gsd))
    xs = x0 + (np.arange(n) + 0.5) * gsd
    ys = y0 + side_m - (np.arange(n) + 0.5) * gsd
    e, nn = np.meshgrid(xs, ys)
    s = w.shade(e.ravel(), nn.ravel(), np.full(e.size, gsd), t_s)
    return s, n


def box_mean(rgb: np.ndarray, n: int, k: int) -> np.ndarray:
    """Area average of an (n*n, 3) 0..255 rendering over k x k blocks, in linear light (as a sensor integrates)."""
    lin = decode(rgb).reshape(n // k, k, n // k, k, 3).mean(axis=(1, 3))
    return lin


def test_stages_match_the_shared_plan():
    assert STAGES == {"early": (0.3, 0.01), "moderate": (0.7, 0.08), "late": (1.0, 0.30)}


def test_deterministic_per_seed():
    pts = np.random.default_rng(0).uniform(0, 40, (2, 5000)).astype(np.float32)
    fp = np.full(5000, 0.004)
    patches = (P("rust", 20, 20, 10, "late"),)
    a = world(patches=patches).shade(pts[0], pts[1], fp)
    b = world(patches=patches).shade(pts[0], pts[1], fp)
    c = world(patches=patches, seed=8).shade(pts[0], pts[1], fp)
    for f in ("rgb", "leaf", "diseased", "labels"):
        assert np.array_equal(getattr(a, f), getattr(b, f))
    assert not np.array_equal(a.rgb, c.rgb)
    # a point's colour does not depend on which other points are asked about
    d = world(patches=patches).shade(pts[0][:100], pts[1][:100], fp[:100])
    assert np.array_equal(d.rgb, a.rgb[:100])


@pytest.mark.parametrize("kind", ["wheat", "soybean", "cucurbit"])
def test_area_correct_fine_box_averaged_matches_coarse(kind: str):
    """1 mm/px box-averaged to 32 mm/px has the mean colour of a direct 32 mm/px rendering."""
    w = world(kind, (P("rust", 20, 20, 60, "late"),))
    side = 1.024 if kind != "cucurbit" else 1.536
    fine, n = render(w, 15, 15, side, 0.001)
    coarse, m = render(w, 15, 15, side, 0.032)
    fine_mean = encode(box_mean(fine.rgb, n, 32).reshape(-1, 3).mean(axis=0))
    coarse_mean = encode(decode(coarse.rgb).mean(axis=0))
    # the fine rendering is one draw of a few hundred leaves: its mean differs from the expectation by
    # up to about 1 unit (seeds 0-4 measured -1.4..+0.4 for wheat); a bias would show as several
    assert np.abs(fine_mean - coarse_mean).max() < 1.5, (fine_mean, coarse_mean)
    assert abs(fine.diseased.mean() - coarse.diseased.mean()) < 0.01
    assert abs(fine.leaf.mean() - coarse.leaf.mean()) < 0.02
    # the pixel-to-pixel spread of the direct rendering is that of the averaged one (within a third)
    sd_fine = encode(box_mean(fine.rgb, n, 32)).reshape(-1, 3).std(axis=0)
    sd_coarse = coarse.rgb.std(axis=0)
    assert np.all(np.abs(sd_coarse / sd_fine - 1.0) < 0.35), (sd_fine, sd_coarse)


def test_pixel_variance_falls_as_footprint_grows():
    w = world("wheat")
    sds = []
    for gsd in (0.002, 0.008, 0.032, 0.128):
        s, _ = render(w, 10, 10, 128 * gsd, gsd)
        sds.append(float(decode(s.rgb)[:, 1].std()))
    assert all(a > b for a, b in zip(sds, sds[1:], strict=False)), sds


def _tile_shift(kind: str, stage: str, gsd: float, side: float) -> tuple[float, np.ndarray, object]:
    sick = world(kind, (P("rust", 20, 20, 15, stage),))
    well = world(kind)
    a, _ = render(sick, 20 - side / 2, 20 - side / 2, side, gsd)
    b, _ = render(well, 20 - side / 2, 20 - side / 2, side, gsd)
    return float(np.abs(a.rgb.mean(axis=0) - b.rgb.mean(axis=0)).max()), np.abs(a.rgb - b.rgb).max(axis=1), a


def test_early_rust_invisible_at_32mm_visible_close_or_late():
    """Physics: at 32 mm/px early rust shifts a tile's mean colour by less than sensor noise (< 1 RGB unit)."""
    early_far, px_far, _ = _tile_shift("wheat", "early", 0.032, 4.0)
    late_far, _, _ = _tile_shift("wheat", "late", 0.032, 4.0)
    early_near, px_near, _ = _tile_shift("wheat", "early", 0.001, 0.5)
    assert early_far < 1.0, early_far
    assert np.percentile(px_far, 99) < 3.0  # nor does any pixel stand out as a dot
    assert late_far > 8.0, late_far
    # at 1 mm/px early rust is there to see: individual pixels change by tens of units
    assert (px_near > 25).sum() > 50


@pytest.mark.parametrize(("gsd", "side", "median_mm"), [(0.00025, 0.2, (0.5, 2.0)), (0.001, 0.4, (1.0, 2.5))])
def test_rust_pustules_are_dots_of_their_real_size(gsd: float, side: float, median_mm: tuple[float, float]):
    """Pustule cores (orange to red-brown: red above green) form dots 0.5-2 mm across (at 1 mm/px: 1-2 pixels)."""
    w = world("soybean", (P("rust", 20, 20, 15, "moderate"),))
    s, n = render(w, 19.9, 19.9, side, gsd)
    rgb = s.rgb.reshape(n, n, 3)
    core = (rgb[..., 0] > rgb[..., 1] * 1.15).astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(core, connectivity=8)
    diam = 2.0 * np.sqrt(stats[1:, cv2.CC_STAT_AREA] * gsd * gsd * 1e6 / np.pi)  # equivalent diameter, mm
    assert diam.size > 50
    assert median_mm[0] <= np.median(diam) <= median_mm[1], np.median(diam)
    assert np.percentile(diam, 95) <= 2.6


def test_labels_inside_patch_outside_field():
    w = world("wheat", (P("powdery_mildew", 10, 10, 3, "late"), P("rust", 30, 30, 2, "early")))
    e = np.array([10, 12.9, 13.1, 30, 31.9, 20, -0.5, 40.5, 5], np.float32)
    n = np.array([10, 10, 10, 30, 30, 20, 5, 5, -1], np.float32)
    s = w.shade(e, n, np.full(e.size, 0.01))
    mildew, rust = CLASSES.index("powdery_mildew"), CLASSES.index("rust")
    assert s.labels.tolist() == [mildew, mildew, 0, rust, rust, 0, LABEL_OUTSIDE, LABEL_OUTSIDE, LABEL_OUTSIDE]
    assert s.leaf[6:].max() == 0.0 and s.diseased[6:].max() == 0.0
    assert s.diseased[[2, 5]].max() == 0.0
    # the label function alone gives the same truth (NaN: no ground, outside)
    assert w.labels(e, n).tolist() == s.labels.tolist()
    assert w.labels(np.array([np.nan]), np.array([1.0])).tolist() == [LABEL_OUTSIDE]


@pytest.mark.parametrize(("kind", "spacing"), [("wheat", 0.175), ("soybean", 0.76), ("cucurbit", 1.8),
                                               ("grapevine", 2.5)])
def test_row_spacing_visible_in_orthophoto(kind: str, spacing: float):
    gsd = spacing / 16
    side = spacing * 16
    w = World(CropSection(kind=kind, row_azimuth_deg=0.0), LightSection(), [], side, side, 3)
    rgb, labels = w.orthophoto(gsd)
    assert (labels == 0).all()
    profile = decode(rgb)[..., 1].mean(axis=0)  # rows run north: the pattern is across columns
    spec = np.abs(np.fft.rfft(profile - profile.mean()))
    freq = np.fft.rfftfreq(profile.size, d=gsd)
    peak = freq[1 + np.argmax(spec[1:])]
    assert abs(1.0 / peak - spacing) < 0.05 * spacing, (1.0 / peak, spacing)


def test_orthophoto_layout_and_limit():
    w = world("soybean", (P("rust", 5, 35, 4, "late"),))
    rgb, labels = w.orthophoto(0.5)
    assert rgb.shape == (80, 80, 3) and rgb.dtype == np.uint8
    # the patch in the north-west corner: top-left of the image
    assert labels[:10, :10].max() == CLASSES.index("rust") and labels[-10:, -10:].max() == 0
    with pytest.raises(ValueError):
        w.orthophoto(0.005)


def test_mildew_whiter_rust_redder_than_healthy():
    gsd, side = 0.004, 0.8
    well, _ = render(world("cucurbit"), 19.6, 19.6, side, gsd)
    rust, _ = render(world("cucurbit", (P("rust", 20, 20, 10, "late"),)), 19.6, 19.6, side, gsd)
    mildew, _ = render(world("cucurbit", (P("powdery_mildew", 20, 20, 10, "late"),)), 19.6, 19.6, side, gsd)
    h, r, m = (decode(x.rgb)[x.leaf > 0.9].mean(axis=0) for x in (well, rust, mildew))

    def chroma(c: np.ndarray) -> float:
        return float(c.max() - c.min()) / float(c.mean())

    assert r[0] / r[1] > h[0] / h[1] + 0.3  # redder
    assert m.mean() > h.mean() * 1.5 and chroma(m) < chroma(h)  # brighter and greyer


def test_haze_lowers_contrast():
    s, _ = render(world("cucurbit"), 10, 10, 4.0, 0.01)
    clear = s.rgb
    hazy = apply_haze(clear, 0.5, 100.0)
    assert hazy.std(axis=0).max() < 0.8 * clear.std(axis=0).min()
    assert np.array_equal(apply_haze(clear, 0.0, 100.0), clear)
    # more path, less contrast
    assert apply_haze(clear, 0.3, 200.0).std() < apply_haze(clear, 0.3, 30.0).std()


def test_light_sun_clouds_and_colour_temperature():
    pts = np.random.default_rng(1).uniform(0, 40, (2, 20000)).astype(np.float32)
    fp = np.full(20000, 0.05)

    def mean(**light) -> np.ndarray:
        return world("soybean", **light).shade(pts[0], pts[1], fp).rgb.mean(axis=0)

    base = mean()
    assert mean(sun_elevation_deg=15.0).mean() < base.mean() - 5
    warm = mean(colour_temp_k=3500.0)
    assert warm[0] / warm[2] > base[0] / base[2] * 1.1
    w = World(CropSection(), LightSection(cloud_cover=0.5, cloud_size_m=20.0, cloud_speed_m_s=5.0), [], 200, 200, 3)
    big = np.random.default_rng(2).uniform(0, 200, (2, 20000)).astype(np.float32)
    a = w.shade(big[0], big[1], fp, t_s=0.0).rgb[:, 1]
    b = w.shade(big[0], big[1], fp, t_s=30.0).rgb[:, 1]
    assert np.mean(np.abs(a - b) > 5) > 0.1  # the shadows moved
    assert w.radiance_scale(0.0) < world("soybean").radiance_scale(0.0)


def test_memory_bounded_for_a_10ha_field():
    tracemalloc.start()
    w = World(CropSection(kind="wheat"), LightSection(cloud_cover=0.3), [P("rust", 150, 150, 20, "late")],
              316.0, 316.0, 5)
    held, _ = tracemalloc.get_traced_memory()
    e = np.random.default_rng(3).uniform(140, 160, 307_200).astype(np.float32)
    n = np.random.default_rng(4).uniform(140, 160, 307_200).astype(np.float32)
    tracemalloc.reset_peak()
    w.shade(e, n, np.full(e.size, 0.001, np.float32))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert held < 2_000_000  # the world holds tables, not rasters
    assert peak < 100_000_000  # one frame's working arrays, shaded in cache-sized chunks


def test_shade_cost_scales_with_points_not_field():
    """Cost per point: 4x the points cost well under 8x the time, and a 100x larger field costs the same."""
    small = world("soybean", size=40.0)
    large = World(CropSection(kind="soybean"), LightSection(), [], 400.0, 400.0, 7)
    rng = np.random.default_rng(5)
    pts = rng.uniform(0, 40, (2, 200_000)).astype(np.float32)
    fp = np.full(200_000, 0.03, np.float32)

    cases = {"small_all": (small, 200_000), "small_quarter": (small, 50_000), "large_all": (large, 200_000)}
    best = dict.fromkeys(cases, float("inf"))
    # interleaved rounds, best of each: a load spike on a shared machine hits one round, not one case
    for _ in range(7):
        for name, (w, k) in cases.items():
            t0 = time.perf_counter()
            w.shade(pts[0][:k], pts[1][:k], fp[:k])
            best[name] = min(best[name], time.perf_counter() - t0)
    assert best["small_all"] < 8.0 * best["small_quarter"]
    assert best["large_all"] < 2.0 * best["small_all"]


def test_sky_and_empty_inputs():
    w = world("wheat")
    s = w.shade(np.array([np.nan, 5.0]), np.array([1.0, 5.0]), 0.01)
    assert s.labels.tolist() == [LABEL_OUTSIDE, 0] and np.isfinite(s.rgb).all()
    e = w.shade(np.zeros(0), np.zeros(0), np.zeros(0))
    assert e.rgb.shape == (0, 3) and e.labels.shape == (0,)


def test_chunking_does_not_change_a_point():
    w = world("cucurbit", (P("powdery_mildew", 20, 20, 10, "late"),))
    rng = np.random.default_rng(9)
    e, n = rng.uniform(10, 30, (2, 70_000)).astype(np.float32)
    fp = rng.uniform(0.0005, 0.08, 70_000).astype(np.float32)
    whole = w.shade(e, n, fp)
    part = w.shade(e[40_000:40_100], n[40_000:40_100], fp[40_000:40_100])
    assert np.allclose(whole.rgb[40_000:40_100], part.rgb, atol=1e-3)
    assert np.array_equal(whole.labels[40_000:40_100], part.labels)


def test_sub_pixel_texture_belongs_to_the_ground():
    """The same ground seen through a grid shifted by a quarter pixel shows the same texture; other ground does not."""
    w = World(CropSection(kind="wheat"), LightSection(), [], 40, 40, 3)
    g = 0.04
    a, _ = render(w, 10, 10, 128 * g, g)
    b, _ = render(w, 10, 10 + 0.25 * g, 128 * g, g)
    c, _ = render(w, 10, 10 + 3.5 * g, 128 * g, g)
    assert np.corrcoef(a.rgb[:, 1], b.rgb[:, 1])[0, 1] > 0.5
    assert abs(np.corrcoef(a.rgb[:, 1], c.rgb[:, 1])[0, 1]) < 0.2
