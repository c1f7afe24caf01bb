"""The activation cache: the split network computes what the whole one does, and training it trains the model."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

from compile.actcache import CACHE_DTYPE, CachedSplit, batches, cut_layer_for, fill_cache, plan_cache
from compile.config import AugmentConfig, ModelConfig, load_build_config
from compile.data import make_splits
from compile.model import FEATURES, build_model, calibrate_batchnorm, export_model, front_model, tail_model

ROOT = Path(__file__).resolve().parents[2]
SIZE = 64


@pytest.fixture(scope="module")
def model():
    """A random-init model at 64 px with BatchNorm calibrated, as the build trains it."""
    import keras

    keras.utils.set_random_seed(0)
    m = build_model(ModelConfig(input_size=SIZE, weights="none", head_stages=["conv5"], trainable_stages=["conv5"]))
    calibrate_batchnorm(m, np.random.default_rng(0).uniform(0, 255, (16, SIZE, SIZE, 3)))
    return m


def _images(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (n, SIZE, SIZE, 3)).astype(np.float32)


def test_cut_points() -> None:
    assert cut_layer_for(["conv5"]) == "conv4_block6_out"
    assert cut_layer_for(["conv5", "conv4"]) == "conv3_block4_out"
    assert cut_layer_for(["conv2", "conv5"]) == "pool1_pool"
    assert cut_layer_for(["conv1"]) is None
    # nothing trains in the backbone: the head's pooled features are what stays fixed
    assert cut_layer_for([]) == FEATURES
    # the head reads conv2, which the cut at conv5's input would lose: no cache
    assert cut_layer_for(["conv5"], ["conv2", "conv5"]) is None
    assert cut_layer_for(["conv5"], ["conv5"]) == "conv4_block6_out"


def test_auto_head_follows_the_weights() -> None:
    random = ModelConfig(input_size=SIZE, weights="none", trainable_stages=["conv5"])
    assert random.resolved_head_stages() == ["conv1", "conv2"]
    assert random.resolved_trainable_stages() == []  # conv5 is not in the graph
    real = ModelConfig(input_size=SIZE, weights="imagenet", trainable_stages=["conv5"])
    assert real.resolved_head_stages() == ["conv5"] and real.resolved_trainable_stages() == ["conv5"]
    assert ModelConfig(head_pooling=["max", "avg", "max"]).head_pooling == ["avg", "max"]


def test_random_head_graph_stops_at_its_deepest_stage() -> None:
    m = build_model(ModelConfig(input_size=SIZE, weights="none"))
    trunk = m.get_layer("resnet50")
    names = {layer.name for layer in trunk.layers}
    assert "conv2_block3_out" in names and not any(n.startswith(("conv3", "conv4", "conv5")) for n in names)
    # stem 64 + stage 2 256 channels, each avg and max pooled
    assert m.get_layer(FEATURES).output.shape[-1] == 2 * (64 + 256)


@pytest.mark.parametrize(("stages", "heads"), [(["conv5"], ["conv5"]), (["conv4", "conv5"], ["conv5"]),
                                               ([], "auto"), ([], ["conv2", "conv4"])])
def test_tail_of_front_is_the_whole_model(stages: list[str], heads) -> None:
    import keras

    keras.utils.set_random_seed(0)
    cfg = ModelConfig(input_size=SIZE, weights="none", trainable_stages=stages, head_stages=heads)
    m = build_model(cfg)
    calibrate_batchnorm(m, _images(8, 5))
    cut = cut_layer_for(cfg.resolved_trainable_stages(), cfg.resolved_head_stages())
    x = _images(4)
    acts = np.asarray(front_model(m, cut).predict_on_batch(x))
    whole = np.asarray(m.predict_on_batch(x))
    split = np.asarray(tail_model(m, cut).predict_on_batch(acts))
    assert np.allclose(split, whole, atol=1e-5), np.abs(split - whole).max()
    # the cache stores float16: predictions move by far less than a decision would notice
    half = np.asarray(tail_model(m, cut).predict_on_batch(acts.astype(CACHE_DTYPE).astype(np.float32)))
    assert np.abs(half - whole).max() < 5e-3
    assert not np.allclose(whole, whole[:1])  # the comparison is not between constant outputs


def test_training_the_tail_trains_the_model_that_is_exported(model) -> None:
    import keras

    cut = "conv4_block6_out"
    tail = tail_model(model, cut)
    front = front_model(model, cut)
    conv5 = model.get_layer("resnet50").get_layer("conv5_block3_3_conv")
    conv4 = model.get_layer("resnet50").get_layer("conv4_block6_3_conv")
    before5, before4 = conv5.get_weights()[0].copy(), conv4.get_weights()[0].copy()
    x = _images(8, 3)
    acts = np.asarray(front.predict_on_batch(x))
    y = np.eye(3, dtype=np.float32)[np.arange(8) % 3]
    tail.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy")
    tail.fit(acts, y, epochs=2, batch_size=4, verbose=0)
    assert not np.allclose(conv5.get_weights()[0], before5)  # the trainable stage learned
    assert np.array_equal(conv4.get_weights()[0], before4)  # the frozen one did not
    exported = export_model(model)  # what the build quantizes
    got = np.concatenate([exported.predict_on_batch(x[i:i + 1]) for i in range(len(x))])
    assert np.allclose(got, tail.predict_on_batch(acts), atol=1e-5)


def test_plan_respects_the_bounds(model, tmp_path: Path) -> None:
    # 64 px: conv4 output is 4 x 4 x 1024 float16 = 32 KiB per image and variant
    mem = plan_cache(model, ["conv5"], 30, 10, 2, memory_mb=10, disk_mb=10, workdir=tmp_path)
    assert mem.where == "memory" and mem.shape == (4, 4, 1024) and mem.items == 70
    assert mem.mb == pytest.approx(70 * 32 / 1024)
    disk = plan_cache(model, ["conv5"], 30, 10, 2, memory_mb=1, disk_mb=10, workdir=tmp_path)
    assert disk.where == "disk" and "np.memmap" in disk.reason
    none = plan_cache(model, ["conv5"], 30, 10, 2, memory_mb=1, disk_mb=1, workdir=tmp_path)
    assert none.where is None and "exceeds" in none.reason
    assert plan_cache(model, ["conv1", "conv5"], 30, 10, 2, 10, 10, tmp_path).where is None


@pytest.mark.parametrize("where", ["memory", "disk"])
def test_fill_cache_holds_each_image_front_pass(model, where: str, tmp_path: Path) -> None:
    cfg = load_build_config(ROOT / "configs" / "build.yaml", "quick")
    split = make_splits(cfg.data.model_copy(update={"synthetic_per_class": 5})).train
    plan = plan_cache(model, ["conv5"], len(split), 0, 1, memory_mb=100 if where == "memory" else 0,
                      disk_mb=100, workdir=tmp_path)
    assert plan.where == where
    cache = fill_cache(model, plan, split, SIZE, 7, 1, False, tmp_path, "train", batch_size=4)
    assert isinstance(cache.x, np.memmap) == (where == "disk")
    assert cache.x.shape == (1, len(split), 4, 4, 1024) and cache.x.dtype == CACHE_DTYPE
    assert np.array_equal(cache.y, split.labels)
    from compile.data import iterate_images

    imgs = np.stack([img for img, _ in iterate_images(split, SIZE, 7)]).astype(np.float32)
    expected = np.asarray(front_model(model, plan.cut_layer).predict_on_batch(imgs))
    assert np.allclose(np.asarray(cache.x[0], np.float32), expected, rtol=2e-3, atol=2e-3)


def test_augmented_variants_differ() -> None:
    import keras

    keras.utils.set_random_seed(0)
    m = build_model(ModelConfig(input_size=SIZE, weights="none", head_stages=["conv5"]), AugmentConfig(enabled=True),
                    seed=0)
    calibrate_batchnorm(m, _images(8, 5))
    cfg = load_build_config(ROOT / "configs" / "build.yaml", "quick")
    split = make_splits(cfg.data.model_copy(update={"synthetic_per_class": 3})).train
    with tempfile.TemporaryDirectory() as tmp:
        plan = plan_cache(m, ["conv5"], len(split), 0, 3, 100, 0, Path(tmp))
        cache = fill_cache(m, plan, split, SIZE, 7, 3, True, Path(tmp), "train")
    x = np.asarray(cache.x, np.float32)
    assert x.shape[0] == 3
    assert not np.allclose(x[0], x[1]) and not np.allclose(x[1], x[2])


def test_batch_stream_covers_images_evenly_with_weights() -> None:
    n, bs = 10, 4
    x = np.arange(2 * n, dtype=np.float16).reshape(2, n, 1, 1, 1)  # value = variant * n + image
    cache = CachedSplit(x, np.arange(n) % 3)
    stream = batches(cache, bs, {0: 1.0, 1: 2.0, 2: 3.0}, shuffle=True, seed=0)
    seen = []
    for _ in range(6 * n // bs):  # 6 passes over the images in 15 full batches
        xb, yb, wb = next(stream)
        assert xb.shape == (bs, 1, 1, 1) and xb.dtype == np.float32
        img = xb.ravel().astype(int) % n
        assert np.array_equal(yb.argmax(1), img % 3)
        assert np.array_equal(wb, np.array([1.0, 2.0, 3.0])[img % 3])
        seen += img.tolist()
    assert np.bincount(seen, minlength=n).tolist() == [6] * n  # every image equally often
    assert {int(v) // n for v in np.concatenate([next(stream)[0].ravel() for _ in range(10)])} == {0, 1}


def test_validation_stream_is_one_ordered_pass_per_epoch() -> None:
    x = np.arange(7, dtype=np.float16).reshape(1, 7, 1, 1, 1)
    stream = batches(CachedSplit(x, np.zeros(7, int)), 3, None, shuffle=False, seed=0)
    got = [next(stream)[0].ravel().tolist() for _ in range(6)]
    assert got == [[0, 1, 2], [3, 4, 5], [6], [0, 1, 2], [3, 4, 5], [6]]
    assert len(next(stream)) == 2  # no sample weights without class weights
