"""The model: caffe preprocessing folded into a 1x1 conv, stage freezing, weights errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from compile.config import ModelConfig
from compile.errors import WeightsError
from compile.model import (
    build_model,
    caffe_preprocess_kernel,
    check_weights,
    describe_weights,
    export_model,
    stage_of,
)


def test_folded_preprocessing_equals_keras_caffe_preprocess() -> None:
    import keras

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    expected = keras.applications.resnet50.preprocess_input(x.copy())
    k, b = caffe_preprocess_kernel()
    got = np.einsum("nhwc,cd->nhwd", x, k[0, 0]) + b
    assert np.allclose(got, expected, atol=1e-4)


def test_stage_names() -> None:
    assert stage_of("conv4_block3_2_conv") == "conv4" and stage_of("pool1_pool") == "conv1"
    assert stage_of("input_layer") is None


def test_freezing_by_stage_and_export() -> None:
    model = build_model(ModelConfig(input_size=32, weights="none", head_stages=["conv5"], trainable_stages=["conv5"]))
    base = model.get_layer("resnet50")
    trainable = {layer.name.split("_")[0] for layer in base.layers if layer.trainable and layer.weights}
    assert trainable == {"conv5"}
    assert all(not layer.trainable for layer in base.layers if "_bn" in layer.name)
    assert not model.get_layer("caffe_preprocess").trainable
    assert [layer.units for layer in model.layers if layer.name.startswith("head_dense")] == [256, 128]
    exported = export_model(model)
    assert exported.input_shape == (1, 32, 32, 3)
    assert not any("dropout" in layer.name for layer in exported.layers)
    x = np.random.default_rng(1).uniform(0, 255, (1, 32, 32, 3)).astype(np.float32)
    assert np.allclose(exported.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)


def test_weights_errors(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="neither 'imagenet', 'none' nor an existing file"):
        build_model(ModelConfig(input_size=32, weights=str(tmp_path / "missing.h5")))
    import keras

    wrong = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    path = tmp_path / "wrong.weights.h5"
    wrong.save_weights(path)
    with pytest.raises(WeightsError, match="does not fit ResNet50"):
        build_model(ModelConfig(input_size=32, weights=str(path)))


def test_imagenet_offline_says_so_and_suggests_alternatives(monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulate the download failure Keras gives offline (stack.md) without touching the network."""
    from keras.src.applications import resnet

    def offline(*args, **kwargs):
        raise Exception(  # noqa: TRY002 - what Keras itself raises
            "URL fetch failure on https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
            "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5: None -- [Errno -2] Name or service not known"
        )

    monkeypatch.setattr(resnet.file_utils, "get_file", offline)
    with pytest.raises(WeightsError) as info:
        build_model(ModelConfig(input_size=32, weights="imagenet"))
    msg = str(info.value)
    assert "offline" in msg and "--weights none" in msg and "--weights PATH" in msg and "notop.h5" in msg
    with pytest.raises(WeightsError, match="offline"):  # the build's early check takes the same path
        check_weights(ModelConfig(input_size=224, weights="imagenet"))


def test_check_weights_accepts_none_and_a_fitting_file(tmp_path: Path) -> None:
    check_weights(ModelConfig(weights="none"))  # nothing to fetch
    import keras

    path = tmp_path / "notop.weights.h5"
    keras.applications.ResNet50(include_top=False, weights=None, input_shape=(32, 32, 3)).save_weights(path)
    check_weights(ModelConfig(input_size=224, weights=str(path)))  # weights do not depend on the input size
    assert describe_weights(str(path)) == "file: notop.weights.h5"
    assert describe_weights("none") == "none (random init)" and describe_weights("imagenet") == "imagenet"


def test_augmentation_is_active_in_training_only() -> None:
    from compile.config import AugmentConfig
    from compile.model import augmentation_block

    x = np.random.default_rng(2).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    block = augmentation_block(AugmentConfig(), seed=3)
    names = [layer.__class__.__name__ for layer in block.layers]
    assert names == ["RandomFlip", "RandomRotation", "RandomTranslation", "RandomZoom", "RandomShear",
                     "RandomGain", "RandomContrast"]
    assert np.array_equal(np.asarray(block(x, training=False)), x)
    y = np.asarray(block(x, training=True))
    assert not np.allclose(y, x) and y.min() >= 0 and y.max() <= 255
    model = build_model(ModelConfig(input_size=32, weights="none"), AugmentConfig(enabled=True), seed=0)
    assert "augment" in [layer.name for layer in model.layers]
    # auto: no augmentation for a random backbone (it only hurts a frozen random ResNet)
    auto = build_model(ModelConfig(input_size=32, weights="none"), AugmentConfig(enabled="auto"), seed=0)
    assert "augment" not in [layer.name for layer in auto.layers]
    assert AugmentConfig(enabled="auto").active("imagenet") and AugmentConfig(enabled="auto").active("w.h5")
    assert not AugmentConfig(enabled="auto").active("None") and AugmentConfig(enabled=True).active("none")
    assert "augment" not in [layer.name for layer in export_model(model).layers]
