"""`--weights` on the command line: offline imagenet and an unfit file fail fast, exit 2, one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _build(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    """The real CLI with downloads failing at once: an empty Keras cache and a proxy on a closed port.

    That is exactly what Keras meets offline (`URL fetch failure`), with or without a network here.
    """
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_HOME=str(tmp_path / "keras_home"),
               https_proxy="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9",
               http_proxy="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9", no_proxy="", NO_PROXY="")
    cmd = [sys.executable, "-m", "compile", "build", "--config", str(ROOT / "configs" / "build.yaml"),
           "--cpu-only", "--out", str(tmp_path / "bundle"), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)


@pytest.mark.parametrize("extra", [(), ("--weights", "imagenet", "--profile", "default")])
def test_imagenet_offline_fails_fast_naming_both_alternatives(tmp_path: Path, extra: tuple[str, ...]) -> None:
    # () is the default profile as shipped: configs/build.yaml says imagenet. (The quick profile's small CNN
    # takes no pretrained weights: `--profile quick --weights imagenet` is a config error, test_small_backbone.py.)
    proc = _build(tmp_path, *extra)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr[-3000:]
    assert "offline" in errors[0] and "--weights none" in errors[0] and "--weights PATH" in errors[0]
    assert "notop.h5" in errors[0]
    # before any data or training: the data log line and the training log lines never appear
    assert "data (synthetic)" not in proc.stderr and "training" not in proc.stderr
    assert not (tmp_path / "bundle").exists()


def test_a_weights_file_that_does_not_fit_fails_fast(tmp_path: Path) -> None:
    import keras

    wrong = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    path = tmp_path / "wrong.weights.h5"
    wrong.save_weights(path)
    proc = _build(tmp_path, "--weights", str(path))  # the default profile: ResNet-50 takes a weights file
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "does not fit ResNet50" in proc.stderr and "data (synthetic)" not in proc.stderr
    missing = _build(tmp_path, "--weights", str(tmp_path / "nope.h5"))
    assert missing.returncode == 2 and "neither 'imagenet', 'none' nor an existing file" in missing.stderr
