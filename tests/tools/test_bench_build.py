"""tools.bench_build: the config it derives and its verdict (the builds themselves: `make bench-build`)."""

from tools.bench_build import card_figures, compare, variant_config


def test_variant_changes_only_data_size_and_cache():
    base = {"data": {"synthetic_per_class": 2000, "seed": 7}, "train": {"epochs": 14, "activation_cache": True}}
    off = variant_config(base, 300, cache=False)
    assert off == {"data": {"synthetic_per_class": 300, "seed": 7}, "train": {"epochs": 14, "activation_cache": False}}
    assert base["train"]["activation_cache"] is True  # the base is not modified


def _card(build, cache, train, acc):
    return {"training": {"build_seconds": build, "activation_cache_seconds": cache, "train_seconds": train},
            "metrics": {"int8": {"accuracy": acc}, "heldout": {"int8": {"accuracy": acc - 0.01}}}}


def test_speedup_counts_the_cache_fill_as_training_time():
    on, off = card_figures(_card(92, 28, 42, 0.970)), card_figures(_card(352, 0, 296, 0.970))
    r, misses = compare(on, off, 2.0)
    assert abs(r["speedup_build"] - 352 / 92) < 1e-9
    assert abs(r["speedup_train"] - 296 / 70) < 1e-9
    assert misses == []


def test_a_slow_cache_or_a_different_model_is_a_miss():
    on, off = card_figures(_card(300, 100, 150, 0.97)), card_figures(_card(352, 0, 296, 0.90))
    _, misses = compare(on, off, 2.0)
    assert any("speed-up" in m for m in misses)
    assert any("accuracy" in m for m in misses)
