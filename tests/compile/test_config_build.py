"""The build config: the example loads, profiles apply, bad files give one clear message and exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from compile.config import BuildConfig, load_build_config
from payload.errors import ConfigError
from tests.configtests import del_path, expect_config_error, run_cli, set_path, write_yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "configs" / "build.yaml"


def example() -> dict:
    return yaml.safe_load(EXAMPLE.read_text())


def test_example_loads_with_both_profiles() -> None:
    cfg = load_build_config(EXAMPLE)
    assert isinstance(cfg, BuildConfig)
    assert cfg.model.input_size == 224 and cfg.evaluate.cost_missed_disease == 75000
    quick = load_build_config(EXAMPLE, "quick")
    assert quick.model.input_size == 96 and quick.train.steps_per_epoch is None
    assert quick.data.generator == "canopy" and quick.model.backbone == "small"  # every weight learnt, offline
    assert quick.model.resolved_head_stages() == [] and quick.resolved_train() is quick.train
    assert cfg.data.jpeg_quality == (60, 95) and quick.data.jpeg_quality is None
    # the quick profile flags at even odds (compile/config.py QUICK_PROFILE); the rest stays as in the file
    assert quick.evaluate.min_threshold == 0.5 and cfg.evaluate.min_threshold == 0.1
    assert quick.evaluate.model_copy(update={"min_threshold": cfg.evaluate.min_threshold}) == cfg.evaluate


def test_shipped_defaults_imagenet_augmented_and_cached() -> None:
    """A grower's `make edgetpu` gets ImageNet transfer learning with augmentation; offline profiles say none."""
    cfg = load_build_config(EXAMPLE)
    assert cfg.model.weights == "imagenet" and cfg.augment.enabled == "auto" and cfg.augment.active("imagenet")
    assert cfg.train.activation_cache is True and cfg.train.activation_cache_mb > 0
    quick = load_build_config(EXAMPLE, "quick")
    assert quick.model.weights == "none" and not quick.augment.active(quick.model.weights)
    assert BuildConfig().augment.enabled == "auto"


def test_augment_enabled_takes_auto_or_a_bool(tmp_path: Path) -> None:
    for value, weights, active in ((True, "none", True), (False, "imagenet", False), ("auto", "none", False)):
        p = write_yaml(tmp_path, set_path(set_path(example(), "augment.enabled", value), "model.weights", weights))
        cfg = load_build_config(p)
        assert cfg.augment.active(cfg.model.weights) is active
    p = write_yaml(tmp_path, set_path(example(), "augment.enabled", "sometimes"))
    expect_config_error(load_build_config, p, "augment.enabled", "'sometimes'")


def test_file_can_define_its_own_profile(tmp_path: Path) -> None:
    p = write_yaml(tmp_path, set_path(example(), "profiles", {"tiny": {"model": {"input_size": 48}}}))
    assert load_build_config(p, "tiny").model.input_size == 48
    with pytest.raises(ConfigError, match="unknown profile 'huge'"):
        load_build_config(p, "huge")


def test_wrong_type_names_file_field_value_and_rule(tmp_path: Path) -> None:
    p = write_yaml(tmp_path, set_path(example(), "train.epochs", "many"))
    expect_config_error(load_build_config, p, "train.epochs", "'many'", "integer")


def test_out_of_range_value(tmp_path: Path) -> None:
    p = write_yaml(tmp_path, set_path(example(), "evaluate.target_recall", 1.5))
    expect_config_error(load_build_config, p, "evaluate.target_recall", "1.5", "less than or equal to 1")


def test_unknown_key(tmp_path: Path) -> None:
    p = write_yaml(tmp_path, set_path(example(), "model.input_sise", 96))
    expect_config_error(load_build_config, p, "model.input_sise", "unknown key")


def test_missing_required_field(tmp_path: Path) -> None:
    data = set_path(del_path(example(), "data.folder"), "data.source", "folder")
    p = write_yaml(tmp_path, data)
    expect_config_error(load_build_config, p, "data", "needs data.folder")


def test_bad_profile_override_names_the_profile(tmp_path: Path) -> None:
    p = write_yaml(tmp_path, set_path(example(), "profiles", {"quick": {"model": {"input_size": "big"}}}))
    expect_config_error(lambda path: load_build_config(path, "quick"), p, "profile quick", "model.input_size")


def test_not_yaml_missing_and_not_a_mapping(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    expect_config_error(load_build_config, bad, "not valid YAML")
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n")
    expect_config_error(load_build_config, lst, "mapping")
    expect_config_error(load_build_config, tmp_path / "missing.yaml", "not found")


def test_cli_validate_config_exit_codes(tmp_path: Path) -> None:
    p = write_yaml(tmp_path, set_path(example(), "data.source", "ftp"))
    out = run_cli(["-m", "compile", "validate-config", str(p)], cwd=ROOT)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "data.source" in out.stderr and "'ftp'" in out.stderr and "synthetic" in out.stderr
    ok = run_cli(["-m", "compile", "validate-config", str(EXAMPLE), "--profile", "quick"], cwd=ROOT)
    assert ok.returncode == 0, ok.stderr
    assert '"input_size": 96' in ok.stdout


def test_cli_build_with_bad_config_fails_before_training(tmp_path: Path) -> None:
    p = write_yaml(tmp_path, del_path(set_path(example(), "data.source", "folder"), "data.folder"))
    out = run_cli(["-m", "compile", "build", "--config", str(p), "--out", str(tmp_path / "b")], cwd=ROOT, timeout=60)
    assert out.returncode == 2 and "needs data.folder" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "b").exists()


def test_head_only_schedule_applies_only_when_no_backbone_stage_trains() -> None:
    cfg = load_build_config(ROOT / "configs" / "build.yaml", "default")
    assert cfg.model.weights == "imagenet" and cfg.resolved_train() is cfg.train  # conv5 fine-tunes
    assert cfg.train.learning_rate == pytest.approx(3e-4)
    offline = cfg.model_copy(update={"model": cfg.model.model_copy(update={"weights": "none"})})
    t = offline.resolved_train()
    assert (t.epochs, t.batch_size, t.learning_rate) == (30, 32, pytest.approx(1e-3))
    assert t.activation_cache == cfg.train.activation_cache  # only the schedule changes
