"""The payload config: a valid example loads, and bad files give one clear message and exit 2."""

from __future__ import annotations

from pathlib import Path

import yaml

from payload.config import PayloadConfig, load_payload_config
from tests.configtests import del_path, expect_config_error, run_cli, set_path, write_yaml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "configs" / "payload.yaml"


def example() -> dict:
    return yaml.safe_load(EXAMPLE.read_text())


def test_example_loads() -> None:
    cfg = load_payload_config(EXAMPLE)
    assert isinstance(cfg, PayloadConfig)
    assert cfg.model.backend == "auto"


def test_wrong_type_names_file_field_value_and_rule(tmp_path: Path) -> None:
    p = write_yaml(tmp_path, set_path(example(), "tiling.rows", "three"))
    expect_config_error(load_payload_config, p, "tiling.rows", "'three'", "integer")


def test_out_of_range_value(tmp_path: Path) -> None:
    p = write_yaml(tmp_path, set_path(example(), "tiling.overlap", 0.95))
    expect_config_error(load_payload_config, p, "tiling.overlap", "0.95", "less than 0.9")


def test_unknown_key(tmp_path: Path) -> None:
    p = write_yaml(tmp_path, set_path(example(), "tiling.colums", 4))
    expect_config_error(load_payload_config, p, "tiling.colums", "unknown key")


def test_missing_required_field(tmp_path: Path) -> None:
    p = write_yaml(tmp_path, del_path(example(), "model.bundle"))
    expect_config_error(load_payload_config, p, "model.bundle", "required")


def test_not_yaml_and_not_a_mapping(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    expect_config_error(load_payload_config, bad, "not valid YAML")
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    expect_config_error(load_payload_config, lst, "mapping")
    expect_config_error(load_payload_config, tmp_path / "missing.yaml", "not found")


def test_cli_gives_exit_2_and_no_traceback(tmp_path: Path) -> None:
    p = write_yaml(tmp_path, set_path(example(), "model.backend", "gpu"))
    out = run_cli(["-m", "payload", "validate-config", str(p)])
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "model.backend" in out.stderr and "'gpu'" in out.stderr and "edgetpu" in out.stderr
    ok = run_cli(["-m", "payload", "validate-config", str(EXAMPLE)])
    assert ok.returncode == 0, ok.stderr
