"""The classifier with its preprocessing inside the graph, in an Edge-TPU-friendly form.

Two backbones (`model.backbone`), one head. `resnet50` (the product's default) is ImageNet transfer
learning: Keras' ResNet50 weights expect "caffe" inputs, BGR channel order with the ImageNet mean
subtracted. `preprocess_input` does the flip with a strided slice and a pack, which the Edge TPU
compiler maps poorly; here the flip and the mean are one fixed 1x1 convolution (a 3x3 permutation
matrix and a bias), which quantizes to a single CONV_2D.

`small` (offline builds, `weights: none`) is three convolutions whose every weight is learnt from
the training data, behind a fixed 1x1 convolution (0-255 to [-1, 1]) and an optional fixed Gaussian
low-pass (`model.lowpass_px`): see `small_cnn` for why. The deployed model takes RGB 0-255 either way.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import keras
import numpy as np
from keras import layers

from .config import AugmentConfig, ModelConfig
from .errors import WeightsError
from .synthetic import CLASSES

log = logging.getLogger(__name__)

CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
STAGES = ("conv1", "conv2", "conv3", "conv4", "conv5")
# The last layer of each stage in keras.applications.ResNet50: its output is the next stage's input.
STAGE_OUTPUT = {
    "conv1": "pool1_pool",
    "conv2": "conv2_block3_out",
    "conv3": "conv3_block4_out",
    "conv4": "conv4_block6_out",
    "conv5": "conv5_block3_out",
}
BASE_NAME = "resnet50"
SMALL_NAME = "small_cnn"  # the small backbone's sub-model (model.backbone: small)
SMALL_TAG = "small"  # its pooling layers' names: pool_small_avg, pool_small_max(_flat), as pool_conv2_avg...
SMALL_FILTERS = (24, 32, 48)  # the 1x1 colour mix, then two 3x3 stride-2 convolutions
FEATURES = "features"  # the head's pooled features (also the activation cache's cut when no stage trains)
FEATURES_NORM = "features_norm"


def caffe_preprocess_kernel() -> tuple[np.ndarray, np.ndarray]:
    """Kernel (1,1,3,3) and bias (3,) of the 1x1 conv equal to caffe-style `preprocess_input`.

    Output channel j (B, G, R) takes input channel 2 - j (R, G, B) and subtracts the BGR mean.
    """
    kernel = np.zeros((1, 1, 3, 3), dtype=np.float32)
    for out_c in range(3):
        kernel[0, 0, 2 - out_c, out_c] = 1.0
    bias = -np.array(CAFFE_MEAN_BGR, dtype=np.float32)
    return kernel, bias


def stage_of(layer_name: str) -> str | None:
    """ResNet50 layer names start with their stage (conv1_..., conv4_block3_..., pool1_...)."""
    head = layer_name.split("_", 1)[0]
    if head == "pool1":
        return "conv1"
    return head if head in STAGES else None


def describe_weights(weights: str, backbone: str = "resnet50") -> str:
    """How the card and report name the backbone's initial weights; a random one is said loudly.

    Always starts with "none" when nothing pretrained is loaded (the payload's report and the build's
    warnings read it so); the small backbone is named, since its weights, random at first, are all learnt.
    """
    w = weights.strip()
    if backbone == "small":
        return "none (small CNN, every weight learnt from the training data)"
    if w.lower() == "none":
        return "none (random init)"
    if w.lower() == "imagenet":
        return "imagenet"
    return f"file: {Path(w).name}"


def check_weights(cfg: ModelConfig) -> None:
    """Fail fast on backbone weights that cannot be had, before any data is made or trained on.

    Builds the backbone once at the smallest input ResNet50 accepts (the weights do not depend
    on the input size): `imagenet` downloads (or finds Keras' cached copy of) the notop file, a
    path is loaded and must fit. Raises WeightsError with the fix; a second or so when it works.
    Nothing to load for the small backbone (its config requires `weights: none`).
    """
    if cfg.small or cfg.weights.strip().lower() == "none":
        return
    _backbone(cfg, 32)


def _backbone(cfg: ModelConfig, size: int):
    weights = cfg.weights.strip()
    if weights.lower() == "none":
        return keras.applications.ResNet50(include_top=False, weights=None, input_shape=(size, size, 3))
    if weights.lower() == "imagenet":
        try:
            return keras.applications.ResNet50(include_top=False, weights="imagenet", input_shape=(size, size, 3))
        except Exception as err:  # Keras raises a bare Exception on a failed download
            if "URL fetch failure" in str(err) or "fetch" in str(err).lower() or isinstance(err, OSError):
                raise WeightsError(
                    "model.weights 'imagenet' needs to download the ResNet50 ImageNet weights and this machine "
                    f"is offline ({str(err).splitlines()[0][:160]}); build with `--weights none` (random init, "
                    "for offline demos and tests) or `--weights PATH` of a local "
                    "'resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5' file (or set model.weights)"
                ) from None
            raise
    path = Path(weights)
    if not path.is_file():
        raise WeightsError(
            f"model.weights {weights!r} is neither 'imagenet', 'none' nor an existing file; give the path of a "
            "ResNet50 (include_top=False) weights file"
        )
    base = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(size, size, 3))
    try:
        base.load_weights(str(path))
    except Exception as err:  # h5py/keras raise ValueError, OSError, KeyError... for a mismatched file
        raise WeightsError(
            f"model.weights {path} does not fit ResNet50 without its top ({type(err).__name__}: "
            f"{str(err).splitlines()[0][:200]}); use a 'notop' ResNet50 weights file saved by Keras"
        ) from None
    return base


def gaussian_kernel_1d(sigma_px: float) -> np.ndarray:
    """A normalised 1-D Gaussian of `sigma_px` pixels, k = 2 ceil(3 sigma) + 1 taps; sums to 1.

    Three sigmas each side hold all but 0.3 % of the weight; normalising the truncated kernel keeps
    a flat image flat (the low-pass changes no colour, only detail).
    """
    if sigma_px <= 0:
        raise ValueError(f"a Gaussian needs sigma > 0, got {sigma_px}")
    r = int(math.ceil(3.0 * sigma_px))
    x = np.arange(-r, r + 1, dtype=np.float64)
    g = np.exp(-(x**2) / (2.0 * sigma_px**2))
    return (g / g.sum()).astype(np.float32)


def gaussian_kernel(sigma_px: float) -> np.ndarray:
    """The 2-D Gaussian (k, k) the two passes of the small backbone's low-pass make together; sums to 1."""
    g = gaussian_kernel_1d(sigma_px)
    return np.outer(g, g).astype(np.float32)


def small_cnn(cfg: ModelConfig) -> keras.Model:
    """The small backbone (`model.backbone: small`): RGB 0-255 in, its last convolution's maps out.

    scale_to_unit (fixed 1x1 conv: 0-255 to [-1, 1]) -> [lowpass_v, lowpass_h (fixed depthwise
    Gaussian, sigma `lowpass_px`)] -> 1x1 conv 24 (a learnt colour mix) -> 3x3/2 conv 32 -> 3x3/2
    conv 48, ReLU.

    Why this net: offline there are no ImageNet weights, and a ResNet-50 with random frozen weights
    gives features from which a head learns the generator but nothing that carries over to the
    simulated world (docs/TRAINING_DATA.md). A net this small trains end to end on a few thousand
    images in a minute or two on a CPU, and what it learns does carry over (tools/transfer_probe.py
    trains the same convolutions). Why a low-pass: the one-to-two-pixel band (leaf-blade grain,
    gaps between leaves) is where the training generator and the world disagree most; with it
    filtered out on both sides the net cannot learn the generator's grain as a cue. 'same' padding
    weighs the border pixels towards 0 (mid grey after scale_to_unit) alike in training and flight.

    Edge TPU form: the scaling is one CONV_2D (like caffe_preprocess), the low-pass two
    DEPTHWISE_CONV_2D, a (k, 1) column pass then a (1, k) row pass: a Gaussian is separable, so the two
    compute exactly the (k, k) kernel (zero padding included) with 2k taps instead of k^2. In int8 on
    the CPU (ai-edge-litert: the build's int8 evaluation, the payload's CPU fallback) one 11x11
    depthwise op cost 10-15 ms a 96 px tile, the two passes under 1 ms (`python -m tools.lowpass_cost`,
    2 shared cores). All quantize to int8 like any convolution; none trains.
    """
    size = cfg.input_size
    inputs = keras.Input((size, size, 3), name="small_input")
    scale = layers.Conv2D(3, 1, name="scale_to_unit", trainable=False)
    x = scale(inputs)
    scale.set_weights([np.eye(3, dtype=np.float32)[None, None] / np.float32(127.5), -np.ones(3, np.float32)])
    if cfg.lowpass_px > 0:
        g = gaussian_kernel_1d(cfg.lowpass_px)
        k = g.size
        for name, shape in (("lowpass_v", (k, 1)), ("lowpass_h", (1, k))):
            lowpass = layers.DepthwiseConv2D(shape, padding="same", use_bias=False, name=name, trainable=False)
            x = lowpass(x)
            # kernel (kh, kw, channels, multiplier 1): the same 1-D Gaussian for every channel
            lowpass.set_weights([np.broadcast_to(g.reshape(*shape, 1, 1), (*shape, 3, 1)).copy()])
    f1, f2, f3 = SMALL_FILTERS
    x = layers.Conv2D(f1, 1, activation="relu", name="small_conv1")(x)
    x = layers.Conv2D(f2, 3, strides=2, padding="same", activation="relu", name="small_conv2")(x)
    x = layers.Conv2D(f3, 3, strides=2, padding="same", activation="relu", name="small_conv3")(x)
    return keras.Model(inputs, x, name=SMALL_NAME)


def build_model(cfg: ModelConfig, aug: AugmentConfig | None = None, seed: int = 0):
    """The trainable Keras model: 0-255 RGB in, softmax over CLASSES out.

    input -> [augment] -> caffe_preprocess -> trunk (ResNet-50 up to the deepest head stage, one
    output per head stage) -> global avg/max pooling of each -> features -> features_norm -> dense
    head -> scores. Average pooling says how much of the tile is diseased; max pooling keeps a
    small lesion cluster in one corner from being averaged away (the partial-tile case).
    With `backbone: small` the trunk is `small_cnn` (its own preprocessing inside, every layer
    trainable) and the pooling and head are the same.
    Augmentation layers are active only in training (Keras random layers are the identity at
    inference), so the exported graph holds none of them; `export_model` drops them anyway.
    `augment.enabled: auto` resolves against `cfg.weights` (off for a random backbone).
    """
    size = cfg.input_size
    inputs = keras.Input((size, size, 3), name="image_rgb_0_255")
    x = inputs
    if aug is not None and aug.active(cfg.weights):
        x = augmentation_block(aug, seed)(x)
    if cfg.small:
        return _with_head(cfg, inputs, [SMALL_TAG], [small_cnn(cfg)(x)], seed, "cropscout_small")
    heads = cfg.resolved_head_stages()
    trainable = cfg.resolved_trainable_stages()
    kernel, bias = caffe_preprocess_kernel()
    pre = layers.Conv2D(3, 1, name="caffe_preprocess", trainable=False)
    x = pre(x)
    pre.set_weights([kernel, bias])
    base = _backbone(cfg, size)
    for layer in base.layers:
        # BatchNorm stays in inference mode everywhere (Keras' fine-tuning advice): a trainable BN
        # uses batch statistics in training and moving ones at inference, which disagree badly
        # after few steps; frozen BN makes the training and the exported graph compute the same.
        is_bn = isinstance(layer, layers.BatchNormalization)
        layer.trainable = stage_of(layer.name) in trainable and not is_bn
    # Stages deeper than the deepest head stage are left out of the graph (nothing reads them).
    trunk = keras.Model(base.input, [base.get_layer(STAGE_OUTPUT[s]).output for s in heads], name=BASE_NAME)
    return _with_head(cfg, inputs, heads, _as_list(trunk(x)), seed, "cropscout_resnet50")


def _with_head(cfg: ModelConfig, inputs, tags: list[str], maps: list, seed: int, name: str):
    """Pool each trunk output (layers pool_<tag>_avg / _max), then features, features_norm, head, scores."""
    pooled = []
    for stage, fmap in zip(tags, maps, strict=True):
        for kind in cfg.head_pooling:
            if kind == "avg":
                pooled.append(layers.GlobalAveragePooling2D(name=f"pool_{stage}_avg")(fmap))
            else:
                # a window the size of the map, not GlobalMaxPooling2D: MAX_POOL_2D maps to the
                # Edge TPU, REDUCE_MAX is outside the pre-check's op table
                y = layers.MaxPooling2D(pool_size=tuple(fmap.shape[1:3]), name=f"pool_{stage}_max")(fmap)
                pooled.append(layers.Flatten(name=f"pool_{stage}_max_flat")(y))
    x = layers.Concatenate(name=FEATURES)(pooled) if len(pooled) > 1 else layers.Identity(name=FEATURES)(pooled[0])
    # standardises features of very different scales (stem vs stage 2, avg vs max); frozen, its
    # statistics set from the data by calibrate_batchnorm
    x = layers.BatchNormalization(name=FEATURES_NORM, trainable=False)(x)
    for i, (units, drop) in enumerate(zip(cfg.head_units, cfg.head_dropout, strict=True)):
        x = layers.Dense(units, activation="relu", name=f"head_dense{i}")(x)
        x = layers.Dropout(drop, seed=seed + i, name=f"head_dropout{i}")(x)
    outputs = layers.Dense(len(CLASSES), activation="softmax", name="scores")(x)
    return keras.Model(inputs, outputs, name=name)


def is_small(model) -> bool:
    """Whether a built model's backbone is the small CNN (`model.backbone: small`)."""
    return SMALL_NAME in [layer.name for layer in model.layers]


def head_stages_of(model) -> list[str]:
    """The ResNet stages a built model's head reads, shallow to deep, from its pooling layers' names.

    Empty for the small backbone (its pooling layers are pool_small_*).
    """
    found = {layer.name.split("_")[1] for layer in model.layers if layer.name.startswith("pool_conv")}
    return sorted(found, key=STAGES.index)


def _pool_tags(model) -> list[str]:
    """The trunk outputs' tags in the pooling layers' names, in the trunk's output order."""
    return [SMALL_TAG] if is_small(model) else head_stages_of(model)


def _pool_and_head(model, maps: list, inference: bool):
    """Apply `model`'s own pooling, features and head layers (shared variables) to trunk outputs."""
    return _head_from_features(model, _pool_and_head_features(model, maps), inference)


def _head_from_features(model, x, inference: bool):
    names = [layer.name for layer in model.layers]
    for layer in model.layers[names.index(FEATURES_NORM):]:
        if inference and isinstance(layer, layers.Dropout):
            continue
        x = layer(x)
    return x


def augmentation_block(aug: AugmentConfig, seed: int):
    """Random geometric and photometric changes a drone camera produces (no vertical flips)."""
    parts = []
    if aug.horizontal_flip:
        parts.append(layers.RandomFlip("horizontal", seed=seed))
    if aug.rotation_deg > 0:
        parts.append(layers.RandomRotation(aug.rotation_deg / 360.0, fill_mode="reflect", seed=seed + 1))
    if aug.shift > 0:
        parts.append(layers.RandomTranslation(aug.shift, aug.shift, fill_mode="reflect", seed=seed + 2))
    if aug.zoom > 0:
        parts.append(layers.RandomZoom(aug.zoom, fill_mode="reflect", seed=seed + 3))
    if aug.shear > 0:
        parts.append(layers.RandomShear(aug.shear, aug.shear, fill_mode="reflect", seed=seed + 4))
    lo, hi = aug.brightness
    if (lo, hi) != (1.0, 1.0):
        parts.append(RandomGain(lo, hi, seed=seed + 5, name="random_gain"))
    if aug.contrast > 0:
        parts.append(layers.RandomContrast(aug.contrast, value_range=(0, 255), seed=seed + 6))
    return keras.Sequential(parts, name="augment")


@keras.saving.register_keras_serializable(package="cropscout")
class RandomGain(keras.layers.Layer):
    """Multiply each image by a random factor in [lo, hi] in training only.

    Keras' RandomBrightness adds an offset; an exposure change multiplies.
    """

    def __init__(self, lo: float, hi: float, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.lo, self.hi, self.seed = float(lo), float(hi), seed
        self._gen = keras.random.SeedGenerator(seed)

    def call(self, x, training=None):
        if not training:
            return x
        shape = (keras.ops.shape(x)[0], 1, 1, 1)
        factor = keras.random.uniform(shape, self.lo, self.hi, seed=self._gen)
        return keras.ops.clip(x * factor, 0.0, 255.0)

    def get_config(self):
        return {**super().get_config(), "lo": self.lo, "hi": self.hi, "seed": self.seed}


def export_model(trained):
    """The inference graph of a trained model: batch 1, no augmentation, no dropout, same weights.

    Augmentation and dropout are the identity at inference, but their random-seed state is a
    variable the TFLite calibrator cannot read; a fixed batch of 1 gives the static shapes the
    Edge TPU needs.
    """
    inputs = keras.Input(trained.input_shape[1:], batch_size=1, name="image_rgb_0_255")
    if is_small(trained):
        maps = [trained.get_layer(SMALL_NAME)(inputs)]
        return keras.Model(inputs, _pool_and_head(trained, maps, inference=True), name="cropscout_small_inference")
    if BASE_NAME not in [layer.name for layer in trained.layers]:  # a chain of layers (test stand-ins)
        x = inputs
        for layer in trained.layers[1:]:
            if layer.name != "augment" and not isinstance(layer, layers.Dropout):
                x = layer(x)
        return keras.Model(inputs, x, name="cropscout_resnet50_inference")
    x = trained.get_layer("caffe_preprocess")(inputs)
    maps = _as_list(trained.get_layer(BASE_NAME)(x))
    outputs = _pool_and_head(trained, maps, inference=True)
    return keras.Model(inputs, outputs, name="cropscout_resnet50_inference")


def _as_list(x) -> list:
    return list(x) if isinstance(x, (list, tuple)) else [x]


def stage_input_layer(stage: str) -> str | None:
    """Name of the ResNet50 layer whose output feeds `stage` (None for conv1: the preprocessed input)."""
    i = STAGES.index(stage)
    return STAGE_OUTPUT[STAGES[i - 1]] if i > 0 else None


def front_model(model: keras.Model, cut_layer: str | None) -> keras.Model:
    """RGB 0-255 in, output of ResNet50 layer `cut_layer` (or the head's pooled FEATURES) out.

    Shares `model`'s layers. The frozen part of the network when `cut_layer` is the input of the
    first trainable stage (or FEATURES when no backbone stage trains), a feature-map probe
    otherwise. No augmentation: the cache applies it before this (eagerly, since a compiled
    predict does not advance the random layers' seeds, measured: identical variants).
    A small-backbone model has no frozen part: only `cut_layer` SMALL_NAME (its last convolution's
    maps, the feature-map figure's probe) is accepted.
    """
    inputs = keras.Input(model.input_shape[1:], name="image_rgb_0_255")
    if is_small(model):
        if cut_layer != SMALL_NAME:
            raise ValueError(f"a small-backbone model has no frozen part to cut at {cut_layer!r}: every layer "
                             f"trains (only {SMALL_NAME!r}, its last convolution's maps, can be probed)")
        return keras.Model(inputs, model.get_layer(SMALL_NAME)(inputs), name=f"front_{SMALL_NAME}")
    trunk = model.get_layer(BASE_NAME)
    x = model.get_layer("caffe_preprocess")(inputs)
    if cut_layer == FEATURES:
        maps = _as_list(trunk(x))
        pooled = _pool_and_head_features(model, maps)
        return keras.Model(inputs, pooled, name="front_features")
    if cut_layer is not None:
        x = keras.Model(trunk.input, trunk.get_layer(cut_layer).output, name=f"{BASE_NAME}_to_{cut_layer}")(x)
    return keras.Model(inputs, x, name=f"front_{cut_layer or 'preprocess'}")


def _pool_and_head_features(model, maps: list):
    names = [layer.name for layer in model.layers]
    pooled = []
    for stage, fmap in zip(_pool_tags(model), maps, strict=True):
        for kind in ("avg", "max"):
            name = f"pool_{stage}_{kind}"
            if name in names:
                y = model.get_layer(name)(fmap)
                pooled.append(model.get_layer(f"{name}_flat")(y) if kind == "max" else y)
    return model.get_layer(FEATURES)(pooled if len(pooled) > 1 else pooled[0])


def tail_model(model: keras.Model, cut_layer: str) -> keras.Model:
    """Output of ResNet50 layer `cut_layer` (or FEATURES) in, the class scores out.

    Shares `model`'s layers, so training it trains the very variables of `model`: there is
    nothing to copy back, and `model` and its export carry the trained weights. A cut inside the
    trunk must lie before every head stage (compile/actcache.py checks). Never for a small-backbone
    model: every layer of it trains, so nothing is cached to train a tail on.
    """
    if is_small(model):
        raise ValueError("a small-backbone model has no tail to train on cached activations: every layer trains")
    trunk = model.get_layer(BASE_NAME)
    if cut_layer == FEATURES:
        inputs = keras.Input(tuple(model.get_layer(FEATURES).output.shape[1:]), name="pooled_features")
        return keras.Model(inputs, _head_from_features(model, inputs, inference=False),
                           name="cropscout_resnet50_tail")
    cut = trunk.get_layer(cut_layer).output
    inputs = keras.Input(tuple(cut.shape[1:]), name=f"{cut_layer}_activations")
    maps = _as_list(keras.Model(cut, trunk.outputs, name=f"{BASE_NAME}_from_{cut_layer}")(inputs))
    return keras.Model(inputs, _pool_and_head(model, maps, inference=False), name="cropscout_resnet50_tail")


def calibrate_batchnorm(model, images: np.ndarray, only: tuple[str, ...] | None = None) -> None:
    """Set every BatchNormalization layer's (or those named in `only`) moving statistics to `images`'.

    With random initial weights (`weights: none`) the moving mean/variance are 0/1 while the real
    activations are orders of magnitude larger, so frozen stages would feed garbage scales and
    trainable ones would disagree between training and inference. One forward pass in training
    mode with momentum 0 makes each layer normalise what it really sees (a data-dependent
    initialisation); trainable flags and momenta are restored afterwards. With real weights only
    the head's FEATURES_NORM needs it (`only`): the backbone keeps its pretrained statistics.
    """
    bns = [layer for layer in _all_layers(model) if isinstance(layer, layers.BatchNormalization)
           and (only is None or layer.name in only)]
    saved = [(bn.trainable, bn.momentum) for bn in bns]
    for bn in bns:
        bn.trainable = True
        bn.momentum = 0.0
    try:
        model(images.astype(np.float32), training=True)
    finally:
        for bn, (trainable, momentum) in zip(bns, saved, strict=True):
            bn.trainable = trainable
            bn.momentum = momentum


def _all_layers(model) -> list:
    out = []
    for layer in model.layers:
        out.append(layer)
        if hasattr(layer, "layers"):
            out.extend(_all_layers(layer))
    return out
