"""edgetpu_compiler wiring, through a test double that prints and logs in the real format."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from compile.build import attach_edgetpu
from compile.bundle import verify_bundle
from compile.edgetpu import find_compiler, memory_bytes, parse_output, run_compiler
from compile.errors import CompilerError, CompilerNotFoundError

HERE = Path(__file__).resolve().parent
FAKE = HERE / "fake_edgetpu_compiler"
ROOT = HERE.parents[1]


@pytest.fixture
def int8_model(quick_bundle, tmp_path: Path) -> Path:
    p = tmp_path / "in" / "model_int8.tflite"
    p.parent.mkdir()
    shutil.copy(quick_bundle.path / "model_int8.tflite", p)
    return p


@pytest.fixture
def bundle_copy(quick_bundle, tmp_path: Path) -> Path:
    dest = tmp_path / "bundle"
    shutil.copytree(quick_bundle.path, dest)
    return dest


def test_success_summary(int8_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    argv_log = tmp_path / "argv.txt"
    monkeypatch.setenv("FAKE_EDGETPU_MODE", "success")
    monkeypatch.setenv("FAKE_EDGETPU_ARGV_LOG", str(argv_log))
    out = tmp_path / "out"
    s = run_compiler(int8_model, out, str(FAKE), min_runtime=13, timeout_s=60)
    assert argv_log.read_text().split()[:5] == ["-s", "-m", "13", "-o", str(out)]
    assert s["version"] == "16.0.384591198"
    assert (s["total_ops"], s["ops_on_tpu"], s["ops_on_cpu"], s["subgraphs"]) == (80, 80, 0, 1)
    assert s["fully_mapped"] is True
    assert s["on_chip_bytes"] == memory_bytes("6.91MiB") and s["off_chip_bytes"] >= 0  # the quick model fits on chip
    assert s["ops"]["CONV_2D"] == {"tpu": 54, "cpu": 0, "cpu_reasons": {}}
    assert (out / "model_int8_edgetpu.tflite").is_file() and (out / "model_int8_edgetpu.log").is_file()


def test_partial_mapping_is_reported_per_op(int8_model: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_EDGETPU_MODE", "partial")
    s = run_compiler(int8_model, tmp_path / "out", str(FAKE), timeout_s=60)
    assert (s["ops_on_tpu"], s["ops_on_cpu"], s["fully_mapped"]) == (55, 25, False)
    assert s["ops"]["ADD"]["tpu"] == 11 and s["ops"]["ADD"]["cpu"] == 5
    assert s["ops"]["ADD"]["cpu_reasons"] == {"Operation version not supported": 1,
                                              "More than one subgraph is not supported": 4}
    assert s["ops"]["FULLY_CONNECTED"] == {"tpu": 0, "cpu": 3,
                                           "cpu_reasons": {"More than one subgraph is not supported": 3}}


@pytest.mark.parametrize(
    ("mode", "fragments"),
    [
        ("internal_error", ["Internal compiler error", "python -m compile check"]),
        ("not_quantized", ["Model not quantized", "quantize fully"]),
    ],
)
def test_failing_compile_raises_with_hint(int8_model: Path, tmp_path: Path, monkeypatch, mode, fragments) -> None:
    monkeypatch.setenv("FAKE_EDGETPU_MODE", mode)
    with pytest.raises(CompilerError) as info:
        run_compiler(int8_model, tmp_path / "out", str(FAKE), timeout_s=60)
    for frag in fragments:
        assert frag in str(info.value)


def test_timeout(int8_model: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_EDGETPU_MODE", "hang")
    with pytest.raises(CompilerError, match="did not finish within 1 s"):
        run_compiler(int8_model, tmp_path / "out", str(FAKE), timeout_s=1)


def test_missing_compiler_names_the_install_step(tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(CompilerNotFoundError, match="apt-get install edgetpu-compiler"):
        find_compiler(str(tmp_path / "nope" / "edgetpu_compiler"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(CompilerNotFoundError, match="not on PATH"):
        find_compiler("edgetpu_compiler")


def test_attach_success_updates_card_and_hashes(bundle_copy: Path, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_EDGETPU_MODE", "success")
    card = attach_edgetpu(bundle_copy, str(FAKE), 14, 60)
    assert card["edgetpu"]["compiled"] is True and card["edgetpu"]["reason"] is None
    assert card["edgetpu"]["summary"]["ops_on_tpu"] == 80
    assert card["tools"]["edgetpu_compiler"] == "16.0.384591198"
    assert {"model_int8_edgetpu.tflite", "model_int8_edgetpu.log", "model_int8.tflite"} <= set(card["files"])
    assert verify_bundle(bundle_copy) == []
    assert json.loads((bundle_copy / "model_card.json").read_text()) == card


def test_attach_failure_keeps_a_complete_int8_bundle(bundle_copy: Path, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_EDGETPU_MODE", "success")
    attach_edgetpu(bundle_copy, str(FAKE), 14, 60)
    monkeypatch.setenv("FAKE_EDGETPU_MODE", "internal_error")
    with pytest.raises(CompilerError):
        attach_edgetpu(bundle_copy, str(FAKE), 14, 60)
    card = json.loads((bundle_copy / "model_card.json").read_text())
    assert card["edgetpu"]["compiled"] is False and "Internal compiler error" in card["edgetpu"]["reason"]
    assert not list(bundle_copy.glob("*_edgetpu.*"))  # the stale Edge TPU model is not left behind
    assert verify_bundle(bundle_copy) == []


def test_compile_bundle_cli(bundle_copy: Path) -> None:
    import os

    env = dict(os.environ, FAKE_EDGETPU_MODE="partial")
    ok = subprocess.run([sys.executable, "-m", "compile", "compile-bundle", str(bundle_copy), "--compiler", str(FAKE)],
                        capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert ok.returncode == 0, ok.stderr
    assert "55 ops on the Edge TPU, 25 on the CPU" in ok.stdout
    assert "only 55 of 80 ops run on the Edge TPU" in ok.stderr
    env["FAKE_EDGETPU_MODE"] = "not_quantized"
    bad = subprocess.run([sys.executable, "-m", "compile", "compile-bundle", str(bundle_copy), "--compiler", str(FAKE)],
                         capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "Model not quantized" in bad.stderr


def test_parse_output_of_stdout_only() -> None:
    stdout = "\n".join([
        "Edge TPU Compiler version 16.0.384591198",
        "Model compiled successfully in 512 ms.",
        "On-chip memory used for caching model parameters: 512.00KiB",
        "Off-chip memory used for streaming uncached model parameters: 0.00B",
        "Number of Edge TPU subgraphs: 1",
        "Total number of operations: 3",
        "",
        "Operator                       Count      Status",
        "",
        "CONV_2D                        2          Mapped to Edge TPU",
        "LEAKY_RELU                     1          Operation not supported",
        "Compilation succeeded!",
    ])
    s = parse_output(stdout)
    assert s["compile_ms"] == 512 and s["on_chip_bytes"] == 512 * 1024 and s["off_chip_bytes"] == 0
    assert (s["ops_on_tpu"], s["ops_on_cpu"]) == (2, 1)
    assert s["ops"]["LEAKY_RELU"]["cpu_reasons"] == {"Operation not supported": 1}
