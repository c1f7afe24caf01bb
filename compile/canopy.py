"""Crop canopy as a drone camera tile sees it: compile's own training generator, at real physical scale.

A tile is a square of ground `size * gsd_mm` millimetres wide, seen straight down at a ground
resolution (GSD) drawn log-uniformly from 1 to 64 mm per model-input pixel. The scene is built in
millimetres (rows at their spacing, leaves at their size, lesions at theirs) and filtered to the
model's pixels by area, analytically where a feature is smaller than a pixel (`SUPERSAMPLE` can
add a finer grid, area-averaged down), so what a pixel shows is the area average of what lies
under it:

- leaves are cells of a staggered lattice, one leaf per cell with a crop-specific outline and an
  analytic one-pixel edge ramp (a leaf narrower than a pixel becomes its area share, never a
  jagged dot); two or three layers overlap, lower ones darker, and rows leave soil between them;
- lesions are a Poisson field of lesion centres on infected leaves, convolved with the lesion's
  area-normalised footprint: a lesion wider than a fine pixel is drawn as a disc (a streak on
  cereals), one narrower adds exactly its area share to its pixel's colour, so sub-pixel rust
  shifts colour by its area and adds the right pixel-to-pixel variance;
- light and camera come after: cast shadows from the canopy's height and the sun's elevation,
  cloud shadow, haze (airlight), exposure, white balance, blur and sensor noise (JPEG in
  compile/data.py, like every synthetic source).

The label rule (`visible`): a disease image is only drawn when its disease is physically visible
at its resolution (and visibly so at half its severity); otherwise its stage is drawn again. The
held-out colour bands (`HELD_OUT`) are chosen so that no training image can produce their colours
(`colour_margin`, and the test that sweeps exposure and white balance over training's ranges).

Nothing here is shared with the flight simulator's world (flight_sim/world/): the literature's
sizes and colours are common facts, the drawing is this module's own. numpy + OpenCV, vectorised
(the only Python loops run over two or three leaf layers), deterministic for a seeded generator.
Sizes and colours, with their sources, are in docs/TRAINING_DATA.md.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from .noise import smooth_noise
from .synthetic import CLASSES, HEALTHY, _check_class

Part = Literal["train", "heldout"]

GSD_RANGE_MM: tuple[float, float] = (1.0, 64.0)  # mm per model-input pixel, drawn log-uniformly
GSD_LADDER_MM: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)


@dataclass(frozen=True)
class Crop:
    """A crop's geometry in millimetres (docs/TRAINING_DATA.md gives the sources)."""

    row_mm: tuple[float, float]  # row spacing
    leaf_w_mm: tuple[float, float]  # leaf (leaflet) width
    leaf_len_mm: tuple[float, float]  # leaf length (= width for round leaves)
    outline: str  # lanceolate | ovate | lobed | palmate
    closure: tuple[float, float]  # share of the row spacing the canopy covers
    height_mm: tuple[float, float]  # canopy height (casts the shadow on the soil)
    layers: int
    cereal: bool  # rust in stripes along the veins (cereals) or in clusters (broad leaves)


CROPS: dict[str, Crop] = {
    "wheat": Crop((150, 200), (10, 20), (150, 300), "lanceolate", (0.75, 1.0), (500, 900), 3, True),
    "soybean": Crop((380, 760), (50, 100), (70, 130), "ovate", (0.45, 1.0), (400, 1000), 2, False),
    "cucurbit": Crop((1500, 2000), (100, 300), (100, 300), "lobed", (0.35, 0.85), (250, 500), 2, False),
    "grapevine": Crop((2000, 3000), (100, 200), (100, 200), "palmate", (0.25, 0.5), (1200, 2000), 2, False),
    # held out (factor `crop`): broad strap leaves in wide rows, a cereal shape training never sees
    "maize": Crop((700, 800), (60, 100), (500, 1000), "lanceolate", (0.5, 0.95), (1500, 2500), 2, True),
}
TRAIN_CROPS: tuple[str, ...] = ("wheat", "soybean", "cucurbit", "grapevine")
HELD_OUT_CROP = "maize"

# Colours are RGB as an ideal camera at nominal exposure and daylight white balance records the
# material in full sun (0-255). Paths are sampled by t in [0, 1], piecewise linear.
LEAF_PATH = np.array([
    [118.0, 150.0, 48.0],  # yellow-green: young or nitrogen-poor leaves
    [62.0, 128.0, 48.0],  # mid green
    [36.0, 88.0, 36.0],  # dark green
])
GLAUCOUS = np.array([  # held out (factor `leaf_colour`): waxy blue-green leaves (glaucous cultivars, brassicas)
    [56.0, 118.0, 118.0],
    [72.0, 132.0, 134.0],
])
RUST_PATH = np.array([
    [200.0, 108.0, 36.0],  # orange: fresh leaf-rust urediniospores
    [150.0, 62.0, 28.0],  # red-brown: common and stem rust
    [92.0, 48.0, 30.0],  # dark brown: old pustules, telia
])
# Stripe rust's urediniospores are yellow-orange (CIMMYT Wheat Doctor, Stripe rust). The band sits
# below full scale: an orange leaf-rust pustule over-exposed until red clips turns yellow-orange
# (255, ~171, ~36), so the earlier band (232-240, 170-180, 30-38) lay 6.7 RGB units from training's
# clipped colours, held out in parameters but not in pixels. Same hue (G/R 0.75), darker.
STRIPE_RUST = np.array([  # held out (factor `rust_colour`)
    [212.0, 160.0, 24.0],
    [224.0, 172.0, 32.0],
])
HALO = np.array([200.0, 190.0, 70.0])  # chlorotic (yellow) halo around a pustule
MILDEW_PATH = np.array([
    [240.0, 240.0, 234.0],  # bright white: young sporulating colonies
    [170.0, 174.0, 166.0],  # dirty grey: old mycelium with cleistothecia
])
SOIL_PATH = np.array([
    [178.0, 168.0, 148.0],  # pale crop residue and dry straw between rows (no-till; docs/REAL_FRAMES.md)
    [150.0, 126.0, 96.0],  # pale dry loam
    [112.0, 88.0, 62.0],  # loam
    [66.0, 52.0, 40.0],  # dark moist soil
])
AIRLIGHT = np.array([196.0, 206.0, 222.0])  # the bluish-white veil haze adds (scaled 0.8-1.05)

# Per-channel jitter of every material's colour, the camera's and the scene's ranges (training).
JITTER = 0.04
GAIN = (0.7, 1.3)  # exposure: sun, cloud, auto-exposure error
WB = (-0.07, 0.07)  # white-balance error: R x (1+k), B x (1-k)
# every brightness factor a surface meets in `render` besides the exposure: lower layers (0.62-1),
# leaf tone and tilt (0.78-1.2), midrib (up to 1.25), soil texture (0.78-1.22), pustule grain
# (about +-0.36 at three sigmas), cast shadows (down to 0.35) and cloud shadow (down to 0.6)
SHADE = (0.1, 1.6 * 1.6)  # the last 1.6: leaf-scale texture (MICRO_TEXTURE, up to +2 sigmas)
# A camera beyond the generator's own exposure error and white balance (`Scene.exposure`,
# `Scene.saturation`, applied in `render_with_truth` after the scene is drawn). Exposure, linear,
# log-uniform: Raspberry Pi's libcamera AGC (imx219.json `rpi.agc`) raises the exposure until the
# brightest 2 % of the frame reach half of full scale, so over a dark canopy sunlit leaves run
# bright and an orange pustule clips red and turns yellow; the generator's GAIN never clips.
# Saturation about each pixel's luma: cameras' colour matrices and picture styles differ as much as
# the real scenes of docs/REAL_FRAMES.md differ from each other. Measured with the transfer probe
# (docs/WORLD.md, "A wider camera in training"): without them a learned model flags 0.28-0.89 of
# the world's healthy canopy at 4-16 mm/px; with exposure alone 0.31-0.75, with saturation alone
# 0.00-0.50, with both 0.00-0.08 (one seed, 4242).
CAMERA_EXPOSURE = (0.6, 3.5)
CAMERA_SATURATION = (0.4, 1.1)
CAMERA_GAMMA = 2.2  # the exposure acts on linear light: encoded values scale by exposure ** (1 / 2.2)
LUMA = np.array([0.299, 0.587, 0.114], np.float32)
HAZE = (0.75, 1.0)  # transmittance of the air column (1 = clear)
HELD_OUT_HAZE = (0.4, 0.55)  # held out (factor `haze`): a hazy morning, a dusty lens
AIRLIGHT_LEVEL = (0.8, 1.05)

HELD_OUT_FACTORS: dict[str, tuple[str, ...]] = {
    "healthy": ("leaf_colour", "crop", "haze"),
    "rust": ("leaf_colour", "rust_colour", "crop", "haze"),
    "powdery_mildew": ("leaf_colour", "crop", "haze"),
}
HELD_OUT: tuple[str, ...] = ("leaf_colour", "rust_colour", "crop", "haze")

# Disease sizes (mm) and the reference stages (incidence, severity) of the shared plan.
PUSTULE_MM = (0.5, 2.0)  # rust pustule diameter
HALO_SCALE = 1.3  # halo diameter / pustule diameter: a narrow ring (sources describe halos, not their width)
STRIPE_ASPECT = (3.0, 7.0)  # a cereal stripe: a chain of pustules along a vein
COLONY_MM = (5.0, 20.0)  # powdery-mildew colony diameter
STAGES: dict[str, tuple[float, float]] = {"early": (0.3, 0.01), "moderate": (0.7, 0.08), "late": (1.0, 0.30)}
REFERENCE_STAGE = "moderate"

# Label rule thresholds (docs/TRAINING_DATA.md, "The label rule").
SPECKLE_SIGMAS = 5.0  # a lesion's pixel must differ from leaf by this many noise sigmas
TEXTURE_SIGMA = 4.0  # healthy canopy's own pixel-to-pixel variation, added to sensor noise
MIN_LESIONS = 40  # speckle needs this many lesions in the diseased region
MIN_SHIFT = 20.0  # or the symptoms shift the region's mean colour by this many RGB units
MIN_REGION = 0.05  # and the region covers at least this share of the tile
# a training disease image must stay visible at 1/CLEAR_MARGIN of its severity: cases near the
# rule's edge are as ambiguous as the invisible ones and are left out with them
CLEAR_MARGIN = 2.0
# The scene grid's pixels per model-input pixel. 1: leaf edges, lesions and sub-pixel leaves are
# area-filtered analytically (`_canopy`, `_lesion_kernel`), so a finer grid only costs time.
SUPERSAMPLE = 1
# Relative pixel-to-pixel spread of canopy at the scale where leaves become pixel-sized: the
# facets, folds, veins and sunlit/shaded sides the leaf model does not draw one by one. Measured
# on a real soybean canopy at 11-16 mm/px: fine texture (std of a tile minus its 3 px blur) 18-19
# against 5-7 from the leaf model alone (docs/REAL_FRAMES.md); 0.1-0.3 of a leaf's level spans it.
MICRO_TEXTURE = (0.1, 0.3)
MATCHED_HEALTHY = 0.6  # share of healthy images drawn at the resolutions disease images end up at


def along(path: np.ndarray, t: float) -> np.ndarray:
    """The colour at t in [0, 1] on a piecewise-linear colour path."""
    t = float(np.clip(t, 0.0, 1.0)) * (len(path) - 1)
    i = min(int(t), len(path) - 2)
    return path[i] * (1 - (t - i)) + path[i + 1] * (t - i)


@dataclass(frozen=True)
class Scene:
    """Everything one tile's image is drawn from (sampled by `sample_scene`, drawn by `render`)."""

    cls: str
    part: Part
    held_out: str | None
    gsd_mm: float
    crop: str
    row_mm: float
    leaf_w_mm: float
    leaf_len_mm: float
    closure: float
    height_mm: float
    row_angle: float
    row_offset_mm: float  # across-row position of the tile's centre from a row's centreline
    leaf_rgb: tuple[float, float, float]
    soil_rgb: tuple[float, float, float]
    incidence: float
    severity: float
    region: float  # share of the tile the disease patch covers (1 = the whole tile)
    lesion_mm: float  # pustule or colony diameter
    lesion_rgb: tuple[float, float, float]
    mildew_alpha: float  # how opaque a mildew coating is
    stripe: float  # stripe aspect (cereal rust), 1 = round
    sun_elev_deg: float
    sun_az: float
    shadow_depth: float  # 0 overcast .. deep direct-sun shadows
    cloud: float  # depth of a cloud shadow's edge crossing the tile
    haze: float  # transmittance
    airlight: float
    gain: float
    wb: float
    blur_px: float
    noise: float
    texture: float = 0.0  # leaf-scale facets, folds and veins: a canopy pixel's relative spread
    exposure: float = 1.0  # the camera's exposure on linear light (CAMERA_EXPOSURE), clipping at full scale
    saturation: float = 1.0  # the camera's colour saturation about each pixel's luma (CAMERA_SATURATION)

    @property
    def encoded_gain(self) -> float:
        """The whole gain on encoded values: the exposure error times the camera's exposure."""
        return self.gain * self.exposure ** (1.0 / CAMERA_GAMMA)


def _jitter(rng: np.random.Generator, rgb: np.ndarray) -> tuple[float, float, float]:
    out = rgb * rng.uniform(1 - JITTER, 1 + JITTER, 3)
    return (float(out[0]), float(out[1]), float(out[2]))


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def sample_scene(cls: str, rng: np.random.Generator, part: Part = "train", gsd_mm: float | None = None,
                 stage: tuple[float, float] | None = None, held_out: str | None = None) -> Scene:
    """Draw a tile's scene from the training region, or (part='heldout') with one factor held out.

    `gsd_mm` and `stage` (incidence, severity, the whole tile in the patch) pin the resolution
    and the disease for the build's GSD ladder; otherwise a disease scene's stage is drawn until
    its disease is visible at its resolution (the label rule, `visible`). `held_out` pins the
    held-out factor of a redrawn held-out tile, so the factor a record reports is the one drawn.
    """
    _check_class(cls)
    if cls == HEALTHY and gsd_mm is None and rng.random() < MATCHED_HEALTHY:
        # the label rule keeps disease images where disease is visible, mostly at fine resolution;
        # healthy images drawn at the same resolutions keep resolution itself from being a cue
        gsd_mm = sample_scene(str(rng.choice(["rust", "powdery_mildew"])), rng).gsd_mm
    held = None
    if part == "heldout":
        held = held_out if held_out is not None else str(rng.choice(HELD_OUT_FACTORS[cls]))
    crop_name = HELD_OUT_CROP if held == "crop" else str(rng.choice(TRAIN_CROPS))
    crop = CROPS[crop_name]
    leaf_w = float(rng.uniform(*crop.leaf_w_mm))
    leaf_len = leaf_w if crop.outline in ("lobed", "palmate") else max(float(rng.uniform(*crop.leaf_len_mm)), leaf_w)
    if held == "leaf_colour":
        leaf = along(GLAUCOUS, rng.uniform())
    else:
        leaf = along(LEAF_PATH, rng.uniform())
    if cls == "rust":
        lesion = along(STRIPE_RUST, rng.uniform()) if held == "rust_colour" else along(RUST_PATH, rng.uniform())
        lesion_mm = float(rng.uniform(*PUSTULE_MM))
    elif cls == "powdery_mildew":
        lesion = along(MILDEW_PATH, rng.uniform())
        lesion_mm = float(rng.uniform(*COLONY_MM))
    else:
        lesion, lesion_mm = np.zeros(3), 0.0
    sunny = rng.random() < 0.7
    scene = Scene(
        cls=cls, part=part, held_out=held,
        gsd_mm=float(gsd_mm) if gsd_mm is not None else _log_uniform(rng, *GSD_RANGE_MM),
        crop=crop_name, row_mm=float(rng.uniform(*crop.row_mm)), leaf_w_mm=leaf_w, leaf_len_mm=leaf_len,
        closure=float(rng.uniform(*crop.closure)), height_mm=float(rng.uniform(*crop.height_mm)),
        row_angle=float(rng.uniform(0, np.pi)),
        row_offset_mm=0.0,
        leaf_rgb=_jitter(rng, leaf), soil_rgb=_jitter(rng, along(SOIL_PATH, rng.uniform())),
        incidence=0.0, severity=0.0,
        region=1.0 if (stage is not None or rng.random() < 0.4) else float(rng.uniform(0.12, 1.0)),
        lesion_mm=lesion_mm, lesion_rgb=_jitter(rng, lesion), mildew_alpha=float(rng.uniform(0.6, 0.9)),
        stripe=float(rng.uniform(*STRIPE_ASPECT)) if (cls == "rust" and crop.cereal) else 1.0,
        sun_elev_deg=float(rng.uniform(25, 75)), sun_az=float(rng.uniform(0, 2 * np.pi)),
        shadow_depth=float(rng.uniform(0.35, 0.65)) if sunny else float(rng.uniform(0.0, 0.15)),
        cloud=float(rng.uniform(0.15, 0.4)) if rng.random() < 0.25 else 0.0,
        haze=float(rng.uniform(*HELD_OUT_HAZE)) if held == "haze" else float(rng.uniform(*HAZE)),
        airlight=float(rng.uniform(*AIRLIGHT_LEVEL)),
        gain=float(rng.uniform(*GAIN)), wb=float(rng.uniform(*WB)),
        blur_px=float(rng.uniform(0.0, 1.2)) if rng.random() < 0.6 else 0.0,
        noise=float(rng.uniform(1.0, 6.0)),
        texture=float(rng.uniform(*MICRO_TEXTURE)),
        exposure=_log_uniform(rng, *CAMERA_EXPOSURE), saturation=float(rng.uniform(*CAMERA_SATURATION)),
    )
    # a disease tile is centred on the canopy (disease lives on leaves); a healthy one may be
    # centred anywhere, the bare soil between wide rows included
    band = scene.closure * scene.row_mm / 2
    on_canopy = cls != HEALTHY or rng.random() < 0.8
    scene = replace(scene, row_offset_mm=float(rng.uniform(-band, band) if on_canopy
                                               else rng.uniform(-scene.row_mm / 2, scene.row_mm / 2)))
    if cls == HEALTHY:
        return scene
    if stage is not None:
        return replace(scene, incidence=float(stage[0]), severity=float(stage[1]))
    for _ in range(12):
        s = replace(scene, incidence=float(rng.uniform(0.2, 1.0)), severity=_log_uniform(rng, 0.003, 0.4))
        if visible(replace(s, severity=s.severity / CLEAR_MARGIN)):
            return s
    # not even a late stage shows here (an open vineyard seen from high up through haze, say):
    # such a tile is not a disease image at all, so draw another tile
    late = replace(scene, incidence=1.0, severity=0.4, region=1.0)
    return late if visible(late) else sample_scene(cls, rng, part, gsd_mm, stage, held)


def canopy_cover(scene: Scene, size: int = 96) -> float:
    """Expected share of the tile that is visible leaf: a tile narrower than the canopy band sits
    on it (disease tiles are centred on the canopy), a wider one sees rows and the soil between."""
    tile = size * scene.gsd_mm
    return float(0.9 * min(1.0, scene.closure * max(1.0, scene.row_mm / tile)))


def symptom_contrast(scene: Scene) -> tuple[float, float]:
    """(lesion area with its halo in mm^2, mean RGB distance of that area from the leaf, at nominal light)."""
    leaf = np.asarray(scene.leaf_rgb)
    if scene.cls == "rust":
        core = np.pi / 4 * scene.lesion_mm ** 2 * scene.stripe
        halo = core * (HALO_SCALE ** 2 - 1)
        dist = (core * np.linalg.norm(np.asarray(scene.lesion_rgb) - leaf) + halo * np.linalg.norm(HALO - leaf))
        return core + halo, float(dist / (core + halo))
    area = np.pi / 4 * scene.lesion_mm ** 2
    return area, float(scene.mildew_alpha * np.linalg.norm(np.asarray(scene.lesion_rgb) - leaf))


def visible(scene: Scene, size: int = 96) -> bool:
    """The label rule: is this scene's disease physically visible at its resolution?

    Visible when the diseased region covers at least MIN_REGION of the tile and either
    (speckle) a single lesion's pixel differs from its leaf by SPECKLE_SIGMAS noise sigmas
    (sensor noise and the canopy's own texture) and the region holds at least MIN_LESIONS
    lesions, or (colour) the symptoms shift the region's mean colour by at least MIN_SHIFT RGB
    units (symptomatic share of the ground times the symptoms' distance from the leaf). Both are
    taken after haze and exposure, which scale contrast. A scene
    that fails is not drawn as a disease image (`sample_scene` draws its stage again), so no
    label contradicts its pixels. The rule reasons on expected values; `canopy_image` also
    redraws a disease tile whose few leaves all escaped infection.
    """
    if scene.cls == HEALTHY:
        return False
    if scene.region < MIN_REGION:
        return False
    area, contrast = symptom_contrast(scene)
    dim = scene.haze * scene.encoded_gain
    px_area = scene.gsd_mm ** 2
    cover = canopy_cover(scene, size)
    share = scene.incidence * scene.severity * cover  # symptomatic share of the region's ground
    region_mm2 = scene.region * (size * scene.gsd_mm) ** 2
    lesions = share * region_mm2 / area
    # leaf-scale texture varies a leaf's brightness: it hides a lesion only as far as the lesion's
    # difference from its leaf lies along the leaf's own colour (white mildew much, orange rust little)
    leaf = np.asarray(scene.leaf_rgb)
    diff = np.asarray(scene.lesion_rgb) - leaf
    along_leaf = abs(float(diff @ leaf)) / max(float(np.linalg.norm(diff) * np.linalg.norm(leaf)), 1e-9)
    texture = texture_scale(scene, scene.gsd_mm) * float(np.linalg.norm(leaf)) * scene.encoded_gain * along_leaf
    sigma = float(np.hypot(scene.noise, TEXTURE_SIGMA + texture))
    if min(area / px_area, 1.0) * contrast * dim >= SPECKLE_SIGMAS * sigma and lesions >= MIN_LESIONS:
        return True
    return share * contrast * dim >= MIN_SHIFT


def texture_scale(scene: Scene, pixel_mm: float) -> float:
    """The canopy's relative leaf-scale spread at this pixel size: full where a leaf is at most four
    pixels wide, fading on leaves many pixels wide (their surface is drawn smooth; edges and midrib are drawn)."""
    return scene.texture * min(1.0, 4.0 * pixel_mm / scene.leaf_w_mm)


def _outline(a: np.ndarray, b: np.ndarray, outline: str) -> np.ndarray:
    """Normalised distance to the leaf's edge in its cell (< 1 inside); a across, b along, each in [-1, 1]."""
    if outline == "lanceolate":  # a strap narrowing to a point at both ends
        half = np.sqrt(np.clip(1.0 - b * b, 0.0, 1.0)) ** 0.7 + 1e-3
        return np.maximum(np.abs(a) / half, np.abs(b))
    r = np.sqrt(a * a + b * b)
    if outline == "ovate":  # an egg-shaped leaflet
        return r * (1.0 + 0.18 * b)
    theta = np.arctan2(b, a)
    if outline == "lobed":  # cucurbit: round with five shallow lobes
        return r / (0.86 + 0.14 * np.cos(5 * theta))
    return r / (0.72 + 0.28 * np.abs(np.cos(2.5 * theta)))  # palmate (vine): deeper sinuses


def _canopy(scene: Scene, n: int, fine_mm: float, rng: np.random.Generator):
    """Fine-grid canopy: (rgb radiance, leaf share, infected-leaf share), bottom layer to top.

    Each layer is a staggered lattice of leaf cells; every per-leaf random number (presence in
    the row band, tone, infection, jitter, size) is drawn once per cell into a table and gathered
    by the pixels of that cell, so a pixel costs the same whether the tile holds ten leaves or ten
    thousand.
    """
    crop = CROPS[scene.crop]
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    x = (xx + 0.5) * np.float32(fine_mm)
    y = (yy + 0.5) * np.float32(fine_mm)
    ca, sa = np.cos(scene.row_angle), np.sin(scene.row_angle)
    leaf = np.asarray(scene.leaf_rgb, np.float32)
    soil_tex = (1.0 + 0.12 * smooth_noise(n, n, 400.0 / fine_mm, rng)
                + 0.10 * smooth_noise(n, n, 25.0 / fine_mm, rng)).astype(np.float32)
    rgb = np.asarray(scene.soil_rgb, np.float32) * soil_tex[..., None]
    cover = np.zeros((n, n), np.float32)
    infected = np.zeros((n, n), np.float32)
    cell_w, cell_l = scene.leaf_w_mm * 1.1, scene.leaf_len_mm * 1.05
    hw_px = scene.leaf_w_mm / 2 / fine_mm  # half a leaf's width in fine pixels: the edge ramp's scale
    shape_share = 0.62 if crop.outline == "lanceolate" else 0.72  # leaf area / cell area
    half = n * fine_mm / 2
    u_mid = -half * sa + half * ca  # the tile centre's across-row coordinate
    px_cell = cell_w * cell_l / fine_mm ** 2  # a leaf cell's area in pixels
    # a pixel averages ~1/px_cell cells: per-cell randomness shrinks by the square root (area filter)
    keep = np.float32(np.sqrt(min(px_cell, 1.0)))
    band = scene.closure * scene.row_mm / 2
    for layer in range(crop.layers):  # bottom to top: the top layer is sunlit, lower ones shaded
        ang = scene.row_angle + (rng.uniform(-1.0, 1.0) if crop.cereal else rng.uniform(0, np.pi))
        c, s = np.cos(ang), np.sin(ang)
        p = (x * np.float32(c) + y * np.float32(s)) / np.float32(cell_w)  # across the leaf, in cells
        i = np.floor(p)
        i0 = int(i.min())
        ni = int(i.max()) - i0 + 1
        stagger = rng.uniform(0, 1, ni).astype(np.float32)  # columns of leaves do not line up
        ii = (i - i0).astype(np.int32)
        q = (-x * np.float32(s) + y * np.float32(c)) / np.float32(cell_l) + stagger[ii]
        j = np.floor(q)
        j0 = int(j.min())
        nj = int(j.max()) - j0 + 1
        cell = ii * nj + (j - j0).astype(np.int32)
        # per-cell table: jitter a, jitter b, size, presence, tone, infection
        table = rng.uniform(0, 1, (ni * nj, 6)).astype(np.float32)
        ci = np.repeat(np.arange(ni) + i0, nj).astype(np.float32)
        cj = np.tile(np.arange(nj) + j0, ni).astype(np.float32)
        cx = (ci + 0.5) * cell_w
        cy = (cj + 0.5 - np.repeat(stagger, nj)) * cell_l
        u = (cx * c - cy * s) * -sa + (cx * s + cy * c) * ca - u_mid + scene.row_offset_mm
        dist = np.abs(u - scene.row_mm * np.round(u / scene.row_mm))  # cell centre to the nearest row
        grow = np.clip((band - dist) / max(scene.leaf_len_mm * 0.5, 1.0) + 0.8, 0.0, 0.95)
        t = table[cell]  # (n, n, 6)
        g = grow[cell]
        present = g + ((t[..., 3] < g).astype(np.float32) - g) * keep
        scale = 0.85 + 0.2 * t[..., 2]
        a = ((p - i - 0.5) * 2 - (t[..., 0] - 0.5) * 0.2) / scale
        b = ((q - j - 0.5) * 2 - (t[..., 1] - 0.5) * 0.2) / scale
        d = _outline(a, b, crop.outline)
        ramp = np.clip(0.5 + (1.0 - d) * np.float32(hw_px), 0.0, 1.0)
        w = np.float32(min(hw_px, 1.0))  # below a pixel a leaf is its area share of its cell
        alpha = (w * ramp + (1 - w) * np.float32(shape_share) * (d < 2.5)) * present
        tone = 0.99 + (0.26 * t[..., 4] - 0.13 + 0.08 * np.clip(a, -1, 1)) * keep  # tilt: one side faces the sun
        lit = np.float32(0.62 + 0.38 * (layer + 1) / crop.layers)
        midrib = np.clip(0.5 + (0.06 - np.abs(a)) * np.float32(hw_px), 0, 1) * np.float32(min(hw_px / 4, 1.0) * 0.25)
        col = leaf * (tone * lit * (1 + midrib))[..., None]
        al = alpha[..., None]
        rgb = rgb + (col - rgb) * al
        inc = np.float32(scene.incidence)
        sick = inc + ((t[..., 5] < inc).astype(np.float32) - inc) * keep
        infected = infected + (sick - infected) * alpha
        cover = cover + (1 - cover) * alpha
    # sub-leaf structure (MICRO_TEXTURE, texture_scale) on the leaves, not the soil
    scale = np.float32(texture_scale(scene, fine_mm))
    grain = np.clip(rng.standard_normal((n, n)).astype(np.float32), -2.0, 2.0)
    rgb = rgb * (1.0 + scale * cover * grain)[..., None]
    return rgb, cover, infected


def _lesion_kernel(diam_px: float, aspect: float, angle: float) -> np.ndarray:
    """Area footprint of one lesion on the fine grid (sums to its area in pixels; sub-pixel: one cell)."""
    import cv2

    r = diam_px / 2
    if r * aspect < 0.5:
        return np.full((1, 1), np.pi * r * r * aspect, np.float32)
    half = int(np.ceil(r * aspect)) + 1
    k = 4  # supersample the kernel so its edge is anti-aliased
    m = np.zeros(((2 * half + 1) * k, (2 * half + 1) * k), np.uint8)
    centre = ((2 * half + 1) * k / 2, (2 * half + 1) * k / 2)
    cv2.ellipse(m, (centre, (2 * r * aspect * k, 2 * r * k), np.degrees(angle)), 255, -1)
    ker = cv2.resize(m.astype(np.float32) / 255.0, (2 * half + 1, 2 * half + 1), interpolation=cv2.INTER_AREA)
    return ker.astype(np.float32)


def _region(n: int, share: float, rng: np.random.Generator) -> np.ndarray:
    """The disease patch's footprint on the tile: 1 inside, falling to 0 at a wavy edge, cut by the border."""
    if share >= 0.999:
        return np.ones((n, n), np.float32)
    yy, xx = (np.mgrid[0:n, 0:n].astype(np.float32) + 0.5) / n
    cy, cx = rng.uniform(-0.1, 1.1, 2)
    r = np.sqrt(share / np.pi) * 1.15
    d = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2) / r + 0.25 * smooth_noise(n, n, n / 3, rng)
    return np.clip((1.0 - d) * 6.0 + 0.5, 0.0, 1.0).astype(np.float32)


def render(scene: Scene, size: int, rng: np.random.Generator) -> np.ndarray:
    """The tile's image (uint8 RGB, size x size) as the camera records it."""
    return render_with_truth(scene, size, rng)[0]


def render_with_truth(scene: Scene, size: int, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """The tile's image and the share of its area that shows symptoms (lesions, halo, coating).

    The share is 0 for a tile whose leaves all escaped infection (few big leaves at fine resolution,
    incidence below 1): such a tile shows no disease whatever its label.
    """
    import cv2

    k = SUPERSAMPLE
    n = size * k
    fine_mm = scene.gsd_mm / k
    rgb, cover, infected = _canopy(scene, n, fine_mm, rng)
    symptoms = 0.0
    if scene.cls != HEALTHY and scene.severity > 0:
        region = _region(n, scene.region, rng)
        sick = infected * region
        diam_px = scene.lesion_mm / fine_mm
        ker = _lesion_kernel(diam_px, scene.stripe, scene.row_angle + rng.uniform(-0.6, 0.6))
        unit_px = float(ker.sum())
        # lesions cluster on a leaf: a smooth clumping field with mean 1 modulates their density
        # (30 mm blobs; a pixel wider than that averages several, so their spread shrinks with it)
        clump = np.exp(0.8 * min(1.0, 30.0 / fine_mm) * smooth_noise(n, n, 30.0 / fine_mm, rng)).astype(np.float32)
        clump /= clump.mean()
        if scene.cls == "rust":
            halo_ker = _lesion_kernel(diam_px * HALO_SCALE, scene.stripe, 0.0)
            unit_px = float(halo_ker.sum())  # severity counts the lesion with its halo
        lam = np.float32(scene.severity / unit_px) * clump * sick
        counts = rng.poisson(lam).astype(np.float32)
        core = np.minimum(cv2.filter2D(counts, -1, ker, borderType=cv2.BORDER_REFLECT), 1.0)
        symptoms = float(core.mean())
        if scene.cls == "rust":
            ring = cv2.filter2D(counts, -1, _lesion_kernel(diam_px * HALO_SCALE, scene.stripe, 0.0),
                                borderType=cv2.BORDER_REFLECT)
            halo = np.clip(np.minimum(ring, 1.0) - core, 0.0, 1.0)[..., None]
            grain = (1 + 0.12 * rng.standard_normal((n, n)).astype(np.float32))[..., None]
            cr = core[..., None]
            rgb = rgb * (1 - cr - halo) + np.asarray(scene.lesion_rgb, np.float32) * grain * cr \
                + HALO.astype(np.float32) * halo
        else:
            cov = (core * np.float32(scene.mildew_alpha))[..., None]
            rgb = rgb * (1 - cov) + np.asarray(scene.lesion_rgb, np.float32) * cov
    # the canopy's shadow on the soil and on lower leaves: its cover, shifted away from the sun
    shift = scene.height_mm / np.tan(np.radians(scene.sun_elev_deg)) / fine_mm * 0.5
    m = np.float32([[1, 0, shift * np.cos(scene.sun_az)], [0, 1, shift * np.sin(scene.sun_az)]])
    cast = cv2.warpAffine(cover, m, (n, n), borderMode=cv2.BORDER_REFLECT)
    shade = 1.0 - np.float32(scene.shadow_depth) * cast * (1.0 - 0.6 * cover)
    if scene.cloud > 0:  # a cloud shadow's soft edge crossing the tile
        shade = shade * (1.0 - np.float32(scene.cloud) * np.clip(smooth_noise(n, n, n / 1.5, rng) + 0.5, 0, 1))
    rgb = rgb * shade[..., None]
    img = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)  # the pixel's area average
    air = AIRLIGHT.astype(np.float32) * np.float32(scene.airlight)
    img = img * np.float32(scene.haze) + air * np.float32(1 - scene.haze)
    img = img * np.float32(scene.encoded_gain) * np.array([1 + scene.wb, 1.0, 1 - scene.wb], np.float32)
    img = saturate(np.minimum(img, np.float32(255.0)), scene.saturation)  # the sensor clips, then colour processing
    if scene.blur_px > 0:
        img = cv2.GaussianBlur(img, (0, 0), scene.blur_px)
    noise = rng.standard_normal(img.shape, dtype=np.float32) * np.float32(scene.noise)
    img = img + noise * np.sqrt(np.clip(img, 1.0, None) / np.float32(128.0))  # shot noise grows with signal
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), symptoms


def saturate(rgb: np.ndarray, s: float) -> np.ndarray:
    """Colours moved away from (s > 1) or toward (s < 1) each pixel's luma, which stays; within 0-255."""
    if s == 1.0:
        return rgb
    luma = (rgb @ LUMA)[..., None]
    return np.clip(luma + np.float32(s) * (rgb - luma), 0.0, 255.0)


def canopy_image(cls: str, size: int, rng: np.random.Generator, part: Part = "train") -> np.ndarray:
    """One training (or held-out) image of class `cls`: a freshly sampled scene, rendered.

    A disease tile must show a symptom: at fine resolution a tile holds one or two big leaves, and
    at incidence below 1 they may all have escaped infection; such a tile is drawn again.
    """
    scene = sample_scene(cls, rng, part)
    for _ in range(30):
        img, symptoms = render_with_truth(scene, size, rng)
        if cls == HEALTHY or symptoms > 0:
            break
        scene = sample_scene(cls, rng, part, held_out=scene.held_out)
    return img


def ladder_image(cls: str, size: int, gsd_mm: float, rng: np.random.Generator,
                 stage: str = REFERENCE_STAGE) -> np.ndarray:
    """An evaluation tile for the GSD ladder: the whole tile inside a patch at `stage`, at `gsd_mm`.

    A disease tile always shows some symptom: a tile whose few leaves all escaped infection is drawn
    again, since no camera could find disease there at any resolution. Whether the symptoms are
    visible at `gsd_mm` is not asked: that is what the ladder measures.
    """
    for _ in range(50):
        scene = sample_scene(cls, rng, "train", gsd_mm=gsd_mm, stage=STAGES[stage] if cls != HEALTHY else None)
        img, symptoms = render_with_truth(scene, size, rng)
        if cls == HEALTHY or symptoms > 0:
            break
    return img


# ---- pixel disjointness of the held-out colour bands -------------------------------------------

def _path_points(path: np.ndarray, n: int = 24) -> np.ndarray:
    return np.stack([along(path, t) for t in np.linspace(0, 1, n)])


def _jittered(points: np.ndarray, jitter: float) -> np.ndarray:
    # the jitter box's corners and centre: a sample of the box, not all of it; the margin asked of a
    # held-out band is well above the few units a colour can move between these points
    corners = np.concatenate([np.array(np.meshgrid(*[[1 - jitter, 1 + jitter]] * 3)).reshape(3, -1).T, np.ones((1, 3))])
    return (points[:, None, :] * corners[None]).reshape(-1, 3)


def training_materials() -> np.ndarray:
    """Every base colour a training image can show, per-channel jitter included (N, 3)."""
    paths = [LEAF_PATH, RUST_PATH, MILDEW_PATH, SOIL_PATH, HALO[None]]
    return _jittered(np.concatenate([_path_points(p) if len(p) > 1 else p for p in paths]), JITTER)


def camera_reach(materials: np.ndarray, gain: tuple[float, float], wb: tuple[float, float],
                 shade: tuple[float, float], haze: tuple[float, float],
                 airlight: tuple[float, float] = AIRLIGHT_LEVEL) -> tuple[np.ndarray, tuple[float, float]]:
    """Colours before the exposure gain: wb x (haze x shade x material + airlight), and the gain range.

    The gain is a scalar on the whole pixel, so the set training reaches is these points times
    any gain in the range (`nearest_distance` takes that range analytically).
    """
    ks = np.linspace(wb[0], wb[1], 5)
    taus = np.linspace(haze[0], haze[1], 3) if haze[1] > haze[0] else np.array([haze[0]])
    shades = np.linspace(shade[0], shade[1], 6) if shade[1] > shade[0] else np.array([shade[0]])
    levels = np.linspace(airlight[0], airlight[1], 3) if haze[0] < 1.0 else np.array([1.0])
    pts = []
    for tau in taus:
        for lev in levels:
            scene = (tau * shades[:, None, None] * materials[None]) + (1 - tau) * lev * AIRLIGHT
            scene = scene.reshape(-1, 3)
            for k in ks:
                pts.append(scene * np.array([1 + k, 1.0, 1 - k]))
    return np.unique(np.round(np.concatenate(pts), 1), axis=0), gain


def nearest_distance(targets: np.ndarray, reach: np.ndarray, gain: tuple[float, float],
                     stop_below: float = 0.0) -> float:
    """Smallest RGB distance from any target colour to any reachable colour times a gain in range.

    Returns early once a distance below `stop_below` is found: the margin is then nil anyway.
    """
    best = np.inf
    reach = np.asarray(reach, np.float32)
    pp = np.einsum("ij,ij->i", reach, reach)
    for chunk in np.array_split(np.asarray(targets, np.float32), max(1, len(targets) // 16)):
        dot = chunk @ reach.T  # (t, r)
        g = np.clip(dot / np.maximum(pp, 1e-9), gain[0], gain[1])
        d2 = np.einsum("ij,ij->i", chunk, chunk)[:, None] - 2 * g * dot + g * g * pp[None]
        best = min(best, float(np.sqrt(max(float(d2.min()), 0.0))))
        if best < stop_below:
            break
    return best


def heldout_band(factor: str) -> np.ndarray:
    """The held-out colours of a colour factor, as the held-out images show them in full sun at
    nominal exposure and white balance (jitter included)."""
    if factor == "leaf_colour":
        return _jittered(_path_points(GLAUCOUS, 8), JITTER)
    if factor == "rust_colour":
        return _jittered(_path_points(STRIPE_RUST, 8), JITTER)
    if factor == "haze":  # a sunlit training leaf under the held-out haze
        leaves = _jittered(_path_points(LEAF_PATH, 6), JITTER)
        out = [tau * leaves + (1 - tau) * lev * AIRLIGHT for tau in np.linspace(*HELD_OUT_HAZE, 3)
               for lev in AIRLIGHT_LEVEL]
        return np.concatenate(out)
    raise ValueError(f"{factor!r} is not a colour factor; colour factors: leaf_colour, rust_colour, haze")


COLOUR_FACTORS: tuple[str, ...] = ("leaf_colour", "rust_colour", "haze")


def chain_reach(pre: np.ndarray, gain: tuple[float, float], saturation: tuple[float, float],
                n_gain: int = 16, n_sat: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """What the camera's clip and saturation make of `pre` (colours before the gain): (unclipped, clipped).

    Unclipped: each point saturated by `n_sat` values across `saturation`; saturation about luma
    commutes with a scalar gain, so `nearest_distance` still takes the gain range analytically.
    Clipped: `n_gain` gains across the range, the points with a channel past full scale clipped
    there, then saturated (a sample, on colours rounded to 3 units: over-exposed orange turns
    yellow, and that is where a held-out band can be reached).
    """
    sats = np.linspace(saturation[0], saturation[1], n_sat)
    pre = np.unique(np.round(pre), axis=0)  # 1 RGB unit: far below any margin asked
    unclipped = np.concatenate([_saturate_free(pre, float(v)) for v in sats])
    coarse = np.unique(np.round(pre / 3.0) * 3.0, axis=0).astype(np.float32)
    clipped = []
    for g in np.geomspace(gain[0], gain[1], n_gain):
        q = coarse * np.float32(g)
        q = np.minimum(q[(q > 255.0).any(axis=1)], np.float32(255.0))
        clipped += [saturate(q, float(v)) for v in sats]
    both = np.concatenate(clipped) if clipped else np.zeros((0, 3), np.float32)
    return unclipped, np.unique(np.round(both, 1), axis=0)


def _saturate_free(pre: np.ndarray, s: float) -> np.ndarray:
    # no 0-255 clip: the unclipped set is taken before the gain, which may still darken or brighten it
    luma = (pre @ LUMA)[:, None]
    return (luma + s * (pre - luma)).astype(np.float32)


@functools.lru_cache(maxsize=1)
def _training_reach() -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    pre, gain = camera_reach(training_materials(), GAIN, WB, SHADE, HAZE)
    full = (gain[0] * CAMERA_EXPOSURE[0] ** (1 / CAMERA_GAMMA), gain[1] * CAMERA_EXPOSURE[1] ** (1 / CAMERA_GAMMA))
    unclipped, clipped = chain_reach(pre, full, CAMERA_SATURATION)
    return unclipped, clipped, full


def colour_margin(factor: str) -> float:
    """RGB distance from a held-out band to the nearest colour a training image can produce: through
    the generator's exposure error, white balance, haze and shade, then the camera's exposure (which
    clips) and saturation."""
    unclipped, clipped, gain = _training_reach()
    band = heldout_band(factor)
    return min(nearest_distance(band, unclipped, gain, stop_below=0.5),
               nearest_distance(band, clipped, (1.0, 1.0), stop_below=0.5))


__all__ = ["CLASSES", "CROPS", "GSD_LADDER_MM", "HELD_OUT", "HELD_OUT_FACTORS", "STAGES", "Scene", "camera_reach",
           "canopy_image", "colour_margin", "heldout_band", "ladder_image", "nearest_distance", "render",
           "sample_scene", "training_materials", "visible"]
