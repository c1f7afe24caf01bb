"""Reliability fixtures: the payload tests' tiny bundles are reused (built once per session)."""

from __future__ import annotations

from tests.payload.conftest import bundle_copy, tiny_bundle_dir, tiny_model_bytes, tiny_tpu_bundle_dir

__all__ = ["bundle_copy", "tiny_bundle_dir", "tiny_model_bytes", "tiny_tpu_bundle_dir"]
