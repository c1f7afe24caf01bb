"""Shared checks every program's config model must pass (used by each package's config tests)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from payload.errors import ConfigError


def write_yaml(tmp_path: Path, data: object, name: str = "cfg.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data), encoding="utf-8")
    return p


def set_path(data: dict, dotted: str, value: object) -> dict:
    """Return a copy of nested `data` with the dotted key set (creating sections as needed)."""
    import copy

    out = copy.deepcopy(data)
    node = out
    keys = dotted.split(".")
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    node[keys[-1]] = value
    return out


def del_path(data: dict, dotted: str) -> dict:
    import copy

    out = copy.deepcopy(data)
    node = out
    keys = dotted.split(".")
    for k in keys[:-1]:
        node = node[k]
    del node[keys[-1]]
    return out


def expect_config_error(loader, path: Path, *fragments: str) -> str:
    """Call loader(path) and check the message names the file and every fragment given."""
    with pytest.raises(ConfigError) as info:
        loader(path)
    msg = str(info.value)
    assert str(path) in msg, msg
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in message:\n{msg}"
    return msg


def run_cli(args: list[str], cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd
    )
