"""The build configuration: one YAML file, validated strictly, with named profiles.

A profile is a set of overrides on top of the file's values: `default` is the file as written
(ResNet-50, ImageNet weights), `quick` is a small CNN trained from scratch on less data at a smaller
input, so a real bundle builds offline in minutes (demo, tests).
The file may redefine a profile under `profiles:`; built-in profiles fill in what it does not.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from payload.configio import StrictModel, read_yaml, validate_config
from payload.errors import ConfigError

from .synthetic import CLASSES


class DataConfig(StrictModel):
    """Where images come from and how they are split."""

    source: Literal["synthetic", "folder"] = "synthetic"
    # synthetic source: "canopy" draws crop canopy as a drone tile sees it, at ground resolutions of
    # 1-64 mm per pixel (compile/canopy.py, docs/TRAINING_DATA.md); "family" a leaf close-up whose
    # look is domain-randomised (compile/family.py); "single" every image with the one look the old
    # simulator painted (compile/synthetic.py)
    generator: Literal["canopy", "family", "single"] = "canopy"
    folder: str | None = None  # PlantVillage layout: one sub-folder per class
    # folder name -> model class; folder classes not listed are ignored (and reported)
    class_map: dict[str, Literal["healthy", "rust", "powdery_mildew"]] = Field(default_factory=dict)
    synthetic_per_class: int = Field(600, ge=3, description="synthetic images per class, all splits")
    val_fraction: float = Field(0.15, gt=0, lt=0.5)
    test_fraction: float = Field(0.15, gt=0, lt=0.5)
    seed: int = 1234
    # Held-out generator families (synthetic source): images whose looks come from regions of the
    # generator's parameter space that training never sees (compile/family.py HELD_OUT), scored
    # separately. null = as many per class as the test split has; 0 = none.
    heldout_per_class: int | None = Field(None, ge=0)
    # Folder source: class folders (keys of data.class_map) kept out of training and scored as the
    # held-out set, e.g. another crop's rust, or photos from another source. Every class the model
    # knows must keep training images.
    heldout_folders: list[str] = Field(default_factory=list)
    # Synthetic images go through a JPEG encode/decode at a quality drawn from this range, as every
    # camera frame does (MJPEG USB cameras, IP cameras, image folders). Without it a model trained on
    # clean renders lost rust recall on JPEG frames: chroma subsampling smears small orange lesions.
    # null = clean images. (Folder sources are photos that already went through a camera.)
    jpeg_quality: tuple[int, int] | None = (60, 95)
    # Fine-tuning on labelled flight tiles (`compile build --labels DIR... --init-from BUNDLE`,
    # compile/labels.py, docs/TRAINING_DATA.md "Retraining from labels"). The labelled training tiles are
    # repeated so that they make up this share of the training stream (and so of each shuffled batch, on
    # average): a few dozen labels among thousands of synthetic images would otherwise barely move the
    # model, and all labels alone would make it forget the synthetic looks it still needs.
    labels_share: float = Field(0.3, gt=0, lt=1)
    # Labels held back for the before/after figures, never trained on: with several label folders
    # (fields), this share of the folders (at least one, at least one kept for training), whole; with
    # one folder, this share of its tiles per class (evaluation is then within one field).
    labels_holdout: float = Field(0.3, gt=0, lt=1)

    @model_validator(mode="after")
    def _folder_needs_path(self) -> DataConfig:
        if self.source == "folder" and not self.folder:
            raise ValueError("data.source 'folder' needs data.folder (the path of the image folder)")
        return self

    @model_validator(mode="after")
    def _jpeg_quality_range(self) -> DataConfig:
        if self.jpeg_quality is not None:
            lo, hi = self.jpeg_quality
            if not 1 <= lo <= hi <= 100:
                raise ValueError(f"data.jpeg_quality must be [low, high] with 1 <= low <= high <= 100 (JPEG "
                                 f"quality), got [{lo}, {hi}]; null turns it off")
        return self


class AugmentConfig(StrictModel):
    """Keras preprocessing layers, applied in training only."""

    # auto = on with real backbone weights (imagenet or a file), off with `none`: a frozen random
    # ResNet is invariant to nothing, and augmentation then cost it 0.17-0.35 validation accuracy
    # (configs/build.yaml history); with ImageNet features it helps as intended. Off for the small
    # CNN too (its weights are `none`); whether it helps a net that learns every weight is unmeasured.
    enabled: bool | Literal["auto"] = "auto"
    # With the activation cache (train.activation_cache) each training image is augmented this many
    # times, each variant pushed through the frozen stages once and reused; epochs draw one variant
    # per image. Without the cache every pass augments afresh and this is unused.
    variants: int = Field(4, ge=1, le=64)
    rotation_deg: float = Field(20.0, ge=0, le=180)
    shift: float = Field(0.2, ge=0, lt=1)
    zoom: float = Field(0.2, ge=0, lt=1)
    horizontal_flip: bool = True
    brightness: tuple[float, float] = (0.7, 1.3)
    contrast: float = Field(0.1, ge=0, lt=1)
    shear: float = Field(0.1, ge=0, lt=1)

    def active(self, weights: str) -> bool:
        """Whether augmentation runs for a backbone with these `model.weights` (resolves `auto`)."""
        if self.enabled == "auto":
            return weights.strip().lower() != "none"
        return bool(self.enabled)


Stage = Literal["conv1", "conv2", "conv3", "conv4", "conv5"]
STAGE_ORDER: tuple[str, ...] = ("conv1", "conv2", "conv3", "conv4", "conv5")
# The stages a random (weights: none) backbone's head reads under `head_stages: auto`. Measured with
# `python -m tools.stage_probe --size 224` (a linear head on each stage's pooled features, family
# images, held-out looks): conv1+conv2 0.98 held-out, conv5 alone 0.75 (avg) / 0.67 (max); deep random stages mix
# colour and texture away.
RANDOM_HEAD_STAGES: tuple[str, ...] = ("conv1", "conv2")


Backbone = Literal["resnet50", "small"]


class ModelConfig(StrictModel):
    """Backbone, which stages learn, and the classification head.

    `backbone: resnet50` (the default) is transfer learning from ImageNet weights: a grower with the
    internet gets features learnt on a million photos. `backbone: small` is three convolutions whose
    every weight is learnt from the synthetic training data (compile/model.py `small_cnn`), for offline
    builds (`--weights none`, CI, demos): a frozen ResNet-50 with random weights cannot learn features
    that carry over to the simulated world, a small net trained end to end can (docs/TRAINING_DATA.md).
    The ResNet-only fields (trainable_stages, head_stages) are ignored by the small backbone.
    """

    backbone: Backbone = "resnet50"
    input_size: int = Field(224, ge=32, le=640)
    weights: str = Field("imagenet", description="imagenet | none | path of a .h5/.weights.h5 file")
    # Gaussian low-pass in front of the small backbone, sigma in model-input pixels (0 = none). The
    # one-to-two-pixel band is where the training generator and the world disagree (leaf-blade grain,
    # gaps): a net blind to it cannot learn the generator's grain as a disease cue.
    lowpass_px: float = Field(0.0, ge=0, le=8)
    trainable_stages: list[Stage] = Field(
        default_factory=lambda: ["conv5"]
    )  # ResNet-50's residual stages 1-4 are conv2..conv5: stages 1-3 frozen, stage 4 learns
    # Which stages the head reads, each globally pooled (compile/model.py). `auto`: conv5 with real
    # weights (transfer learning's usual head), conv1+conv2 with a random backbone, whose deep stages
    # carry almost nothing (measured: `python -m tools.stage_probe`, docs/TRAINING_DATA.md).
    head_stages: Literal["auto"] | list[Stage] = "auto"
    # avg sees how much of the image is diseased, max sees a small cluster in one corner of a tile
    head_pooling: list[Literal["avg", "max"]] = Field(default_factory=lambda: ["avg", "max"])
    head_units: list[int] = Field(default_factory=lambda: [256, 128])
    head_dropout: list[float] = Field(default_factory=lambda: [0.3, 0.2])

    @model_validator(mode="after")
    def _head_lengths(self) -> ModelConfig:
        if len(self.head_units) != len(self.head_dropout):
            raise ValueError("model.head_units and model.head_dropout need the same number of entries")
        if isinstance(self.head_stages, list) and not self.head_stages:
            raise ValueError("model.head_stages needs at least one stage (conv1..conv5), or 'auto'")
        return self

    @field_validator("weights")
    @classmethod
    def _small_learns_every_weight(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("backbone") == "small" and value.strip().lower() != "none":
            raise ValueError(
                f"model.weights {value!r} does not fit model.backbone 'small': the small CNN has no pretrained "
                "weights, every weight is learnt from the training data; set model.weights: none (`--weights "
                "none`), or for ImageNet transfer learning model.backbone: resnet50 (the default profile) with "
                "model.lowpass_px: 0"
            )
        return value

    @field_validator("lowpass_px")
    @classmethod
    def _lowpass_needs_small(cls, value: float, info: ValidationInfo) -> float:
        if value > 0 and info.data.get("backbone", "resnet50") != "small":
            raise ValueError(
                f"model.lowpass_px {value:g} needs model.backbone: small (the low-pass sits in front of the small "
                "CNN; ResNet-50's ImageNet features expect the image as the camera gives it); set "
                "model.lowpass_px: 0, or model.backbone: small with model.weights: none"
            )
        return value

    @field_validator("head_pooling")
    @classmethod
    def _canonical_pooling(cls, value: list[str]) -> list[str]:
        # one canonical order: the head concatenates stage by stage, avg before max
        if not value:
            raise ValueError("needs 'avg', 'max' or both")
        return [k for k in ("avg", "max") if k in value]

    @property
    def small(self) -> bool:
        """The small CNN backbone (every weight learnt), not ResNet-50."""
        return self.backbone == "small"

    def resolved_head_stages(self) -> list[str]:
        """The ResNet stages the head reads, shallow to deep (`auto` resolved against the weights).

        Empty for the small backbone: it has no ResNet stages (its head reads its last convolution).
        """
        if self.small:
            return []
        if self.head_stages == "auto":
            stages = list(RANDOM_HEAD_STAGES) if self.weights.strip().lower() == "none" else ["conv5"]
        else:
            stages = list(self.head_stages)
        return sorted(set(stages), key=STAGE_ORDER.index)

    def resolved_trainable_stages(self) -> list[str]:
        """Trainable ResNet stages the head can see: a stage deeper than the deepest head stage is not in the graph.

        Empty for the small backbone, which has no ResNet stages: every one of its layers trains.
        """
        if self.small:
            return []
        deepest = STAGE_ORDER.index(self.resolved_head_stages()[-1])
        return sorted({s for s in self.trainable_stages if STAGE_ORDER.index(s) <= deepest}, key=STAGE_ORDER.index)


class HeadOnlyTrain(StrictModel):
    """The schedule when no backbone stage trains (the head alone, on cached pooled features)."""

    epochs: int = Field(30, ge=1)
    batch_size: int = Field(32, ge=1)
    learning_rate: float = Field(1e-3, gt=0)


class TrainConfig(StrictModel):
    """Optimiser and schedule."""

    epochs: int = Field(30, ge=1)
    batch_size: int = Field(16, ge=1)
    steps_per_epoch: int | None = Field(None, ge=1, description="null = one pass over the training split")
    learning_rate: float = Field(1e-3, gt=0)
    early_stopping_patience: int = Field(5, ge=1)
    reduce_lr_patience: int = Field(2, ge=1)
    reduce_lr_factor: float = Field(0.3, gt=0, lt=1)
    class_weights: bool = True
    # Frozen stages compute the same thing every epoch: with the cache on, the input of the first
    # trainable stage is computed once per image (and augmentation variant), kept as float16, and
    # only the trainable stages and the head train on it (compile/actcache.py). Off = every step
    # runs the whole network, as before (for comparison, or when neither bound below fits).
    activation_cache: bool = True
    # Fine-tuning conv5 on a real backbone wants small steps (3e-4, batch 16); a dense head on
    # fixed features does not, and an epoch of it costs milliseconds: with `weights: none` and the
    # 224 px default data, 14 epochs at 3e-4 gave int8 test accuracy 0.987, 30 at 1e-3 batch 32
    # 0.993 (docs/TRAINING_DATA.md). null = the values above in both cases.
    head_only: HeadOnlyTrain | None = None
    activation_cache_mb: int = Field(2048, ge=0, description="RAM for cached activations; larger goes to disk")
    activation_cache_disk_mb: int = Field(
        16384, ge=0, description="disk (np.memmap in the build's temp folder) beyond RAM; larger = cache off"
    )


class EvalConfig(StrictModel):
    """How decision thresholds are chosen (on the validation split)."""

    target_recall: float = Field(0.99, gt=0, le=1)
    cost_missed_disease: float = Field(75000.0, ge=0)
    cost_false_alarm: float = Field(20.0, ge=0)
    # No threshold below this: a tile the model gives 90 % to other classes is not flagged, whatever
    # one hard validation image asks for. Measured: a quick build whose hardest validation mildew
    # image scored < 0.01 shipped a 0.01 mildew threshold, and over `flight-sim random-scenario
    # --seed 31` flagged 1,718 tiles as mildew, 1,504 of them scoring < 0.3 (median 0.03).
    min_threshold: float = Field(0.1, ge=0.01, le=0.99)
    # The working ground resolution (card `working_gsd_mm`): canopy tiles at the reference disease
    # stage are scored at each of these mm per model-input pixel; `gsd_images` tiles per disease and
    # resolution (and half as many healthy ones for the false-alarm rate). Canopy generator only.
    gsd_ladder_mm: list[float] = Field(default_factory=lambda: [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0])
    gsd_images: int = Field(40, ge=0)
    gsd_min_recall: float = Field(0.9, gt=0, le=1)


class QuantizeConfig(StrictModel):
    """Full-integer post-training quantization."""

    representative_images: int = Field(200, ge=1)
    agreement_floor: float = Field(0.98, ge=0, le=1)


class EdgeTpuConfig(StrictModel):
    """Running edgetpu_compiler."""

    compiler: str = "edgetpu_compiler"  # a name on PATH or a path
    min_runtime_version: int = Field(14, ge=10, le=16)
    timeout_s: float = Field(600.0, gt=0)
    cpu_only: bool = False
    # `edgetpu_compiler --num_segments N`: the model cut into N segments, one per Edge TPU, which the
    # payload runs as a pipeline (model.device must then name N devices). Worth it when the parameters
    # do not fit one chip's ~8 MB cache (docs/CORAL.md); 1 = one whole model (one device, or a pool).
    num_segments: int = Field(1, ge=1, le=8)


class BuildConfig(StrictModel):
    """Everything one bundle build needs."""

    data: DataConfig = Field(default_factory=DataConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvalConfig = Field(default_factory=EvalConfig)
    quantize: QuantizeConfig = Field(default_factory=QuantizeConfig)
    edgetpu: EdgeTpuConfig = Field(default_factory=EdgeTpuConfig)
    # profile name -> overrides in the same shape as this file; validated when applied
    profiles: dict[str, dict[str, Any]] = Field(default_factory=dict)

    def resolved_train(self) -> TrainConfig:
        """The schedule this build runs: `train.head_only` applies when no backbone stage trains.

        Never for the small backbone: every one of its layers trains, `train` is its schedule.
        """
        h = self.train.head_only
        if h is None or self.model.small or self.model.resolved_trainable_stages():
            return self.train
        return self.train.model_copy(update={"epochs": h.epochs, "batch_size": h.batch_size,
                                             "learning_rate": h.learning_rate})


# Small input, small data, few epochs, a small CNN trained end to end, no augmentation: a real
# bundle in about two minutes on 2 shared cores, offline, for demos and tests.
QUICK_PROFILE: dict[str, Any] = {
    # Canopy views, like the default. No ImageNet weights offline, and a frozen ResNet-50 with random
    # weights gave a head features it could fit to the generator (0.77 int8 test accuracy on canopy
    # views) but nothing that carries over to the simulated world (it flagged 65-100 % of healthy
    # canopy there and found no rust: README "The world at real scale"). The small CNN learns every
    # weight (model.backbone: small, compile/model.py small_cnn); the Gaussian low-pass in front
    # (model.lowpass_px) hides the one-to-two-pixel band where the generator and the world disagree.
    # no JPEG step: measured on simulator tiles with the old conv5 head, 160 steps with it called
    # soil rust on 16 % of non-disease tiles (817 of 5,170) against 0.1 % without
    "data": {"synthetic_per_class": 1000, "jpeg_quality": None, "generator": "canopy"},
    "augment": {"enabled": False},
    # 96 px keeps lesions several pixels wide; weights none (the small CNN takes no other): this
    # profile is for offline demos and tests (no download); the card, the report and the build's
    # output say it is a small CNN trained from scratch, not ResNet-50. A model to fly: the default
    # profile with `--weights imagenet`.
    "model": {"backbone": "small", "lowpass_px": 1.5, "input_size": 96, "weights": "none"},
    # Every layer trains, so an epoch is a pass of the whole net over 2,100 images (the images are
    # made once and kept in memory, compile/actcache.py fit_images); 12 epochs at batch 32 and 2e-3
    # (Adam, ReduceLROnPlateau): validation accuracy 0.88, int8 test 0.85, build 90 s against 71 s and
    # 107 s for the random-ResNet profile in runs just before and after, beside other jobs on 2 cores
    # (`python -m compile build --profile quick --weights none --cpu-only --out D`). 8 epochs: 0.81
    # (int8 test 0.80) in 70 s.
    "train": {"epochs": 12, "batch_size": 32, "steps_per_epoch": None, "learning_rate": 2e-3},
    # a 450-image test split: one low-margin flip costs 0.002
    "quantize": {"representative_images": 64, "agreement_floor": 0.95},
    # Even odds at least: a tile is flagged only when the net gives the disease >= 0.5. A net trained
    # from scratch on 2,100 synthetic images is not calibrated for a field it never saw: at the
    # recall-first floor 0.1 it flagged 21-54 % of the physical world's healthy canopy (README,
    # tools.detectability), scoring it 0.02-0.17 at the median and up to 0.3-0.8 at p90, while late
    # disease scored 1.0 at the median. The map fuses a dozen looks per cell, so a patch is still
    # found when single tiles miss (docs/WORLD.md, "The operating point").
    "evaluate": {"min_threshold": 0.5},
}
BUILTIN_PROFILES: dict[str, dict[str, Any]] = {"default": {}, "quick": QUICK_PROFILE}


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Return `base` with `over` merged in (nested mappings merge, everything else replaces)."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_build_data(path: str | Path | None) -> tuple[dict[str, Any], str]:
    """Raw mapping from a YAML file (or the built-in defaults when path is None) and its name."""
    if path is None:
        return {}, "<built-in defaults>"
    p = Path(path)
    data = read_yaml(p)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{p}: invalid configuration\n  - the file must hold a mapping of keys to values, not {type(data).__name__}"
        )
    return data, str(p)


def load_build_config(path: str | Path | None = None, profile: str = "default") -> BuildConfig:
    """Validate the file, then apply the named profile's overrides and validate again."""
    data, source = read_build_data(path)
    base = validate_config(data, BuildConfig, source)  # errors name the file's own fields
    profiles = {**BUILTIN_PROFILES, **base.profiles}
    if profile not in profiles:
        raise ConfigError(f"{source}: unknown profile {profile!r}; choose one of {', '.join(sorted(profiles))}")
    merged = deep_merge(data, profiles[profile])
    return validate_config(merged, BuildConfig, f"{source} (profile {profile})")


def class_names() -> list[str]:
    """The model's output classes, in output order."""
    return list(CLASSES)
