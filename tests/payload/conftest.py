"""Shared fixtures: a tiny uint8 TFLite bundle built once per session (TensorFlow is fine in tests).

`CROPSCOUT_TINY_TFLITE=FILE` reads the model from FILE instead of building it: the drone-only venv
(`make test-py313`) has no TensorFlow, so the 3.11 venv builds the model once and the newer
interpreter's run reads it (`python -m tests.payload.tinymodel --tflite FILE`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.payload import tinymodel


@pytest.fixture(scope="session")
def tiny_model_bytes() -> bytes:
    prebuilt = os.environ.get("CROPSCOUT_TINY_TFLITE")
    return Path(prebuilt).read_bytes() if prebuilt else tinymodel.build_tflite()


@pytest.fixture(scope="session")
def tiny_bundle_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_bytes: bytes) -> Path:
    """A bundle as a build without edgetpu_compiler writes it (no _edgetpu model). Do not modify."""
    return tinymodel.write_bundle(tmp_path_factory.mktemp("bundle") / "tiny", tiny_model_bytes)


@pytest.fixture(scope="session")
def tiny_tpu_bundle_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_bytes: bytes) -> Path:
    """A bundle that also lists model_int8_edgetpu.tflite (a byte copy, run through delegate doubles)."""
    return tinymodel.write_bundle(tmp_path_factory.mktemp("bundle") / "tiny_tpu", tiny_model_bytes, edgetpu_copy=True)


@pytest.fixture()
def bundle_copy(tmp_path: Path, tiny_bundle_dir: Path) -> Path:
    """A private copy of the tiny bundle that a test may damage."""
    return Path(shutil.copytree(tiny_bundle_dir, tmp_path / "bundle"))
