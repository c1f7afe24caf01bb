"""edgetpu_compiler wiring, through a test double that reads the model and answers like the real tool.

The double (tests/compile/fake_edgetpu_compiler) decides from the model it is given (through the
project's pre-check), so a float model is refused and float I/O leaves its converters on the CPU
exactly as the real compiler does; the parser is also fed real compiler output quoted from public
issue threads (sources cited at each quote).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from compile.build import attach_edgetpu
from compile.bundle import verify_bundle
from compile.edgetpu import find_compiler, memory_bytes, parse_output, run_compiler
from compile.errors import CompilerError, CompilerNotFoundError, NothingMappedError
from payload.errors import BundleError
from tests.payload import tinymodel

HERE = Path(__file__).resolve().parent
FAKE = HERE / "fake_edgetpu_compiler"
ROOT = HERE.parents[1]
UNSPECIFIED = "Operation is otherwise supported, but not mapped due to some unspecified limitation"
DATA_TYPE = "Operation is working on an unsupported data type"
SUBGRAPH = "More than one subgraph is not supported"


@pytest.fixture(autouse=True)
def _double_runs_on_this_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    # the double reads models with the pre-check, which needs this venv's TensorFlow schema
    monkeypatch.setenv("FAKE_EDGETPU_PYTHON", sys.executable)
    monkeypatch.delenv("FAKE_EDGETPU_MODE", raising=False)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real tiny TFLite models: full int8, float I/O around int8 ops, and plain float."""
    d = tmp_path_factory.mktemp("models")
    out = {}
    for name, kw in {"int8": {}, "float_io": {"float_input": True, "float_output": True},
                     "float": {"quantized": False}, "dynamic_batch": {"batch_size": None}}.items():
        p = d / name / "model_int8.tflite"
        p.parent.mkdir()
        p.write_bytes(tinymodel.build_tflite(**{"batch_size": 1, **kw}))
        out[name] = p
    return out


@pytest.fixture
def bundle(models: dict[str, Path], tmp_path: Path) -> Path:
    return tinymodel.write_bundle(tmp_path / "bundle", models["int8"].read_bytes())


def test_full_int8_model_maps_every_op(models: dict[str, Path], tmp_path: Path, monkeypatch) -> None:
    from compile.tflite_check import check_model

    argv_log = tmp_path / "argv.txt"
    monkeypatch.setenv("FAKE_EDGETPU_ARGV_LOG", str(argv_log))
    out = tmp_path / "out"
    s = run_compiler(models["int8"], out, str(FAKE), min_runtime=13, timeout_s=120)
    assert argv_log.read_text().split()[:5] == ["-s", "-m", "13", "-o", str(out)]
    n_ops = len(check_model(models["int8"]).ops)  # the double counted the model's own ops
    assert s["version"] == "16.0.384591198"
    assert (s["total_ops"], s["ops_on_tpu"], s["ops_on_cpu"], s["subgraphs"]) == (n_ops, n_ops, 0, 1)
    assert s["fully_mapped"] is True and s["on_chip_bytes"] > 0
    assert s["ops"]["CONV_2D"] == {"tpu": 2, "cpu": 0, "cpu_reasons": {}}
    assert (out / "model_int8_edgetpu.tflite").read_bytes() != models["int8"].read_bytes()


def test_float_io_leaves_the_converters_on_the_cpu(models: dict[str, Path], tmp_path: Path) -> None:
    s = run_compiler(models["float_io"], tmp_path / "out", str(FAKE), timeout_s=120)
    assert s["subgraphs"] == 1 and s["fully_mapped"] is False
    assert s["ops"]["QUANTIZE"]["cpu_reasons"] == {UNSPECIFIED: 1}
    assert s["ops"]["DEQUANTIZE"]["cpu_reasons"] == {DATA_TYPE: 1}
    assert s["ops"]["CONV_2D"] == {"tpu": 2, "cpu": 0, "cpu_reasons": {}}  # the graph is not cut by them
    assert s["ops_on_cpu"] == 2


def test_a_model_nothing_of_which_maps_compiles_to_zero_subgraphs(models: dict[str, Path], tmp_path: Path) -> None:
    """A dynamic batch dimension stops the very first op (pre-check); the tool then maps nothing at all."""
    s = run_compiler(models["dynamic_batch"], tmp_path / "out", str(FAKE), timeout_s=120)
    assert (s["subgraphs"], s["ops_on_tpu"]) == (0, s["total_ops"] - s["ops_on_cpu"]) == (0, 0)
    assert s["ops"]["CONV_2D"]["cpu_reasons"] == {SUBGRAPH: 2}


def test_float_model_is_refused_with_the_real_message(models: dict[str, Path], tmp_path: Path) -> None:
    done = subprocess.run([str(FAKE), "-o", str(tmp_path), str(models["float"])], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1
    # google-coral/edgetpu#313 / #168: exactly these lines after the version line
    assert done.stdout.splitlines()[1:] == [f"Invalid model: {models['float']}", "Model not quantized"]
    with pytest.raises(CompilerError, match="Model not quantized.*quantize fully"):
        run_compiler(models["float"], tmp_path / "out", str(FAKE), timeout_s=120)


def test_plain_float_keras_model_is_refused(tmp_path: Path) -> None:
    """Conv2D, Flatten, Dense with a dynamic batch, converted with no options: the issue's exact model.

    Its int32 shape ops are not float, so "every op is float" alone would let it through to a
    0-subgraph "successful" compile; the real compiler refuses it before compiling anything.
    """
    model = tmp_path / "float.tflite"
    model.write_bytes(tinymodel.build_plain_float_tflite())
    done = subprocess.run([str(FAKE), "-s", "float.tflite"], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert done.returncode == 1
    assert done.stdout.splitlines() == ["Edge TPU Compiler version 16.0.384591198", "Invalid model: float.tflite",
                                        "Model not quantized"]
    assert not list(tmp_path.glob("*_edgetpu.*"))


def test_segments_are_named_as_the_real_tool_names_them(models: dict[str, Path], tmp_path: Path) -> None:
    """`-n 2`: one compiled model and one log per segment, NAME_segment_K_of_N_edgetpu (edgetpu#557)."""
    src = tmp_path / "model.tflite"
    src.write_bytes(models["int8"].read_bytes())
    done = subprocess.run([str(FAKE), "-n", "2", "model.tflite"], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stdout
    names = sorted(p.name for p in tmp_path.glob("*_edgetpu.*"))
    assert names == ["model_segment_0_of_2_edgetpu.log", "model_segment_0_of_2_edgetpu.tflite",
                     "model_segment_1_of_2_edgetpu.log", "model_segment_1_of_2_edgetpu.tflite"]
    out = done.stdout.splitlines()
    assert "Input model: model_segment_0_of_2.tflite" in out
    assert "Output model: model_segment_1_of_2_edgetpu.tflite" in out
    assert "Operation log: model_segment_0_of_2_edgetpu.log" in out
    assert out.count("Compilation succeeded!") == 2


def _chain(paths: list[Path], x: np.ndarray) -> np.ndarray:
    """Run `x` through the models in `paths` one after the other, each output the next one's input."""
    from ai_edge_litert.interpreter import Interpreter

    for p in paths:
        it = Interpreter(model_path=str(p))
        it.allocate_tensors()
        it.set_tensor(it.get_input_details()[0]["index"], x)
        it.invoke()
        x = it.get_tensor(it.get_output_details()[0]["index"])
    return x


@pytest.mark.parametrize("n", [2, 3])
def test_segments_are_real_models_that_join_up(models: dict[str, Path], tmp_path: Path, n: int) -> None:
    """Each segment loads on its own, takes the tensor the previous one gives, and together they compute the
    whole model: what a pipeline of Edge TPUs runs (the double's segments carry a CPU graph, as its whole
    model does)."""
    from compile.tflite_check import check_model

    src = tmp_path / "model.tflite"
    src.write_bytes(models["int8"].read_bytes())
    done = subprocess.run([str(FAKE), "-n", str(n), "model.tflite"], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    segs = [tmp_path / f"model_segment_{k}_of_{n}_edgetpu.tflite" for k in range(n)]
    out = done.stdout.splitlines()
    # one version line, then per segment the real tool's block (google-coral/edgetpu#557)
    assert out[0] == "Edge TPU Compiler version 16.0.384591198" and out.count(out[0]) == 1
    assert out.count("Started a compilation timeout timer of 180 seconds.") == n
    totals = [int(line.rsplit(":", 1)[1]) for line in out if line.startswith("Total number of operations:")]
    assert len(totals) == n and all(t > 0 for t in totals)
    assert sum(totals) == len(check_model(src).ops)  # every op in exactly one segment
    for k in range(n):
        assert f"Input model: model_segment_{k}_of_{n}.tflite" in out
        log_text = (tmp_path / f"model_segment_{k}_of_{n}_edgetpu.log").read_text()
        assert f"Output: model_segment_{k}_of_{n}_edgetpu.tflite" in log_text
    rng = np.random.default_rng(3)
    for _ in range(4):
        x = rng.integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
        np.testing.assert_array_equal(_chain(segs, x), _chain([src], x))


def test_run_compiler_with_segments(models: dict[str, Path], tmp_path: Path, monkeypatch) -> None:
    argv_log = tmp_path / "argv.txt"
    monkeypatch.setenv("FAKE_EDGETPU_ARGV_LOG", str(argv_log))
    s = run_compiler(models["int8"], tmp_path / "out", str(FAKE), timeout_s=120, num_segments=2)
    assert argv_log.read_text().split()[:2] == ["-n", "2"]
    assert s["num_segments"] == 2 and s["model_file"] is None
    assert s["model_files"] == ["model_int8_segment_0_of_2_edgetpu.tflite", "model_int8_segment_1_of_2_edgetpu.tflite"]
    assert [p["model_file"] for p in s["segments"]] == s["model_files"]
    assert s["subgraphs"] == 2 and s["fully_mapped"] is True
    assert s["total_ops"] == sum(p["total_ops"] for p in s["segments"]) == s["ops_on_tpu"]


def test_attach_with_segments_hashes_every_segment(bundle: Path) -> None:
    from payload.bundle import load_bundle

    card = attach_edgetpu(bundle, str(FAKE), 14, 120, num_segments=2)
    names = ["model_int8_segment_0_of_2_edgetpu.tflite", "model_int8_segment_1_of_2_edgetpu.tflite"]
    assert card["edgetpu"]["num_segments"] == 2 and card["edgetpu"]["model_files"] == names
    assert set(names) <= set(card["files"]) and "model_int8_edgetpu.tflite" not in card["files"]
    assert verify_bundle(bundle) == []
    b = load_bundle(bundle)
    assert [p.name for p in b.edgetpu_segments] == names and b.edgetpu_model is None
    # a segment changed after the build is caught like any bundle file
    seg = bundle / names[1]
    seg.write_bytes(seg.read_bytes() + b"x")
    with pytest.raises(BundleError, match="sha256 mismatch for model_int8_segment_1_of_2"):
        load_bundle(bundle)


def test_bundle_refuses_unlisted_or_incomplete_segments(bundle: Path) -> None:
    from payload.bundle import load_bundle

    attach_edgetpu(bundle, str(FAKE), 14, 120, num_segments=2)
    stray = bundle / "model_int8_segment_2_of_3_edgetpu.tflite"
    stray.write_bytes(b"not listed")
    with pytest.raises(BundleError, match="model_int8_segment_2_of_3_edgetpu.tflite is present but not listed"):
        load_bundle(bundle)
    stray.unlink()
    card = json.loads((bundle / "model_card.json").read_text())
    del card["files"]["model_int8_segment_1_of_2_edgetpu.tflite"]
    (bundle / "model_card.json").write_text(json.dumps(card))
    (bundle / "model_int8_segment_1_of_2_edgetpu.tflite").unlink()
    with pytest.raises(BundleError, match="not all N segments of one compile"):
        load_bundle(bundle)


def test_garbage_input_is_not_compiled(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(CompilerError, match="Model could not be parsed"):
        run_compiler(junk, tmp_path / "out", str(FAKE), timeout_s=120)
    assert not list((tmp_path / "out").glob("*_edgetpu.tflite"))


def test_internal_error_text_is_the_real_one(models: dict[str, Path], tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_EDGETPU_MODE", "internal_error")
    done = subprocess.run([str(FAKE), str(models["int8"])], capture_output=True, text=True, timeout=60)
    # google-coral/edgetpu#189: the version line, then this line, no "ERROR:" prefix
    assert done.returncode != 0 and "Internal compiler error. Aborting!" in done.stdout.splitlines()
    with pytest.raises(CompilerError) as info:
        run_compiler(models["int8"], tmp_path / "out", str(FAKE), timeout_s=60)
    assert "Internal compiler error. Aborting!" in str(info.value) and "python -m compile check" in str(info.value)


def test_timeout(models: dict[str, Path], tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_EDGETPU_MODE", "hang")
    with pytest.raises(CompilerError, match="did not finish within 1 s"):
        run_compiler(models["int8"], tmp_path / "out", str(FAKE), timeout_s=1)


def test_missing_compiler_names_the_install_step(tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(CompilerNotFoundError, match="apt-get install edgetpu-compiler"):
        find_compiler(str(tmp_path / "nope" / "edgetpu_compiler"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(CompilerNotFoundError, match="not on PATH"):
        find_compiler("edgetpu_compiler")


def test_attach_success_updates_card_and_hashes(bundle: Path) -> None:
    card = attach_edgetpu(bundle, str(FAKE), 14, 120)
    assert card["edgetpu"]["compiled"] is True and card["edgetpu"]["reason"] is None
    assert card["edgetpu"]["summary"]["fully_mapped"] is True
    assert card["tools"]["edgetpu_compiler"] == "16.0.384591198"
    assert {"model_int8_edgetpu.tflite", "model_int8_edgetpu.log", "model_int8.tflite"} <= set(card["files"])
    assert verify_bundle(bundle) == []
    assert json.loads((bundle / "model_card.json").read_text()) == card


def test_zero_subgraphs_is_not_compiled(bundle: Path, monkeypatch) -> None:
    """"Model compiled successfully" with 0 Edge TPU subgraphs: the card says not compiled, no TPU model ships."""
    attach_edgetpu(bundle, str(FAKE), 14, 120)
    monkeypatch.setenv("FAKE_EDGETPU_MODE", "zero_subgraphs")
    with pytest.raises(NothingMappedError, match="mapped no operation to the Edge TPU"):
        attach_edgetpu(bundle, str(FAKE), 14, 120)
    card = json.loads((bundle / "model_card.json").read_text())
    e = card["edgetpu"]
    assert e["compiled"] is False and "0 Edge TPU subgraphs" in e["reason"]
    assert e["summary"]["subgraphs"] == 0 and e["summary"]["ops_on_tpu"] == 0
    assert not list(bundle.glob("*_edgetpu.*"))  # neither the stale nor the CPU-only "Edge TPU" model
    assert verify_bundle(bundle) == []


def test_attach_failure_keeps_a_complete_int8_bundle(bundle: Path, monkeypatch) -> None:
    attach_edgetpu(bundle, str(FAKE), 14, 120)
    monkeypatch.setenv("FAKE_EDGETPU_MODE", "internal_error")
    with pytest.raises(CompilerError):
        attach_edgetpu(bundle, str(FAKE), 14, 120)
    card = json.loads((bundle / "model_card.json").read_text())
    assert card["edgetpu"]["compiled"] is False and "Internal compiler error" in card["edgetpu"]["reason"]
    assert not list(bundle.glob("*_edgetpu.*"))  # the stale Edge TPU model is not left behind
    assert verify_bundle(bundle) == []


def test_compile_bundle_cli(bundle: Path, models: dict[str, Path]) -> None:
    env = dict(os.environ, FAKE_EDGETPU_PYTHON=sys.executable)
    cmd = [sys.executable, "-m", "compile", "compile-bundle", str(bundle), "--compiler", str(FAKE)]
    ok = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=ROOT, env=env)
    assert ok.returncode == 0, ok.stderr
    assert "on the Edge TPU, 0 on the CPU" in ok.stdout
    zero = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=ROOT,
                          env=dict(env, FAKE_EDGETPU_MODE="zero_subgraphs"))
    assert zero.returncode == 2 and "Traceback" not in zero.stderr
    assert "mapped no operation to the Edge TPU" in zero.stderr
    shutil.copy(models["float"], bundle / "model_int8.tflite")
    tinymodel.rehash(bundle)
    bad = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=ROOT, env=env)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "Model not quantized" in bad.stderr


# Real edgetpu_compiler output, quoted from public issue threads.

# https://github.com/timctho/convolutional-pose-machines-tensorflow/issues/82 (compiler 14.1): nothing mapped
REAL_ZERO_SUBGRAPHS = """\
Edge TPU Compiler version 14.1.317412892

Model compiled successfully in 68 ms.

Input model: tflite_model/hand_quant.tflite
Input size: 23.38MiB
Output model: hand_quant_edgetpu.tflite
Output size: 23.38MiB
On-chip memory used for caching model parameters: 0.00B
On-chip memory remaining for caching model parameters: 0.00B
Off-chip memory used for streaming uncached model parameters: 0.00B
Number of Edge TPU subgraphs: 0
Total number of operations: 42
Operation log: hand_quant_edgetpu.log

Model successfully compiled but not all operations are supported by the Edge TPU. A percentage of the model will \
instead run on the CPU, which is slower. If possible, consider updating your model to use only operations supported \
by the Edge TPU. For details, visit g.co/coral/model-reqs.
Number of operations that will run on Edge TPU: 0
Number of operations that will run on CPU: 42

Operator                       Count      Status

CONV_2D                        31         Operation is working on an unsupported data type
QUANTIZE                       6          Operation is otherwise supported, but not mapped due to some unspecified \
limitation
"""

# https://github.com/google-coral/edgetpu/issues/342 (the op table of a partly mapped model)
REAL_TABLE_342 = """\
Number of operations that will run on Edge TPU: 2
Number of operations that will run on CPU: 153

Operator                       Count      Status


TRANSPOSE                      70         Operation not supported
FULLY_CONNECTED                1          More than one subgraph is not supported
PAD                            1          Mapped to Edge TPU
PAD                            17         More than one subgraph is not supported
ADD                            10         More than one subgraph is not supported
MEAN                           2          More than one subgraph is not supported
CONV_2D                        35         More than one subgraph is not supported
QUANTIZE                       1          Mapped to Edge TPU
QUANTIZE                       1          Operation is otherwise supported, but not mapped due to some unspecified \
limitation
DEPTHWISE_CONV_2D              17         More than one subgraph is not supported
"""

# https://github.com/google-coral/edgetpu/issues/60 (compiler 2.1): the stdout summary of a partly mapped model
REAL_STDOUT_60 = """\
Edge TPU Compiler version 2.1.302470888

Model compiled successfully in 12264 ms.

Input model: model2.tflite
Input size: 8.11MiB
Output model: model2_edgetpu.tflite
Output size: 9.47MiB
On-chip memory used for caching model parameters: 6.86MiB
On-chip memory remaining for caching model parameters: 7.75KiB
Off-chip memory used for streaming uncached model parameters: 1.22MiB
Number of Edge TPU subgraphs: 1
Total number of operations: 93
Operation log: model2_edgetpu.log
"""


def test_parser_on_real_zero_subgraph_output() -> None:
    s = parse_output(REAL_ZERO_SUBGRAPHS)
    assert (s["version"], s["compile_ms"], s["subgraphs"], s["total_ops"]) == ("14.1.317412892", 68, 0, 42)
    assert (s["ops_on_tpu"], s["ops_on_cpu"], s["fully_mapped"]) == (0, 42, False)
    assert s["on_chip_bytes"] == 0 and s["off_chip_bytes"] == 0
    assert s["ops"]["CONV_2D"] == {"tpu": 0, "cpu": 31, "cpu_reasons": {DATA_TYPE: 31}}
    assert s["ops"]["QUANTIZE"]["cpu_reasons"] == {UNSPECIFIED: 6}
    from compile.build import check_mapped

    with pytest.raises(NothingMappedError, match="0 Edge TPU subgraphs, 42 of 42 ops on the CPU"):
        check_mapped(s)


def test_parser_on_a_real_op_table() -> None:
    s = parse_output("", REAL_TABLE_342)
    assert (s["ops_on_tpu"], s["ops_on_cpu"]) == (2, 153)
    assert s["ops"]["TRANSPOSE"] == {"tpu": 0, "cpu": 70, "cpu_reasons": {"Operation not supported": 70}}
    assert s["ops"]["QUANTIZE"] == {"tpu": 1, "cpu": 1, "cpu_reasons": {UNSPECIFIED: 1}}
    assert s["ops"]["PAD"] == {"tpu": 1, "cpu": 17, "cpu_reasons": {SUBGRAPH: 17}}
    assert sum(r["tpu"] + r["cpu"] for r in s["ops"].values()) == 155


def test_parser_on_real_stdout() -> None:
    s = parse_output(REAL_STDOUT_60)
    assert (s["compile_ms"], s["subgraphs"], s["total_ops"]) == (12264, 1, 93)
    assert s["on_chip_bytes"] == memory_bytes("6.86MiB") and s["off_chip_bytes"] == memory_bytes("1.22MiB")
    assert s["on_chip_remaining"] == "7.75KiB"
