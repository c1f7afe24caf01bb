"""Edge TPU pre-check: read a .tflite flatbuffer and predict what edgetpu_compiler will do.

edgetpu_compiler is x86-only, closed source and absent from every project machine, and its
failures are terse ("Model not quantized", "Internal compiler error"). This check runs anywhere
TensorFlow is installed and names the problem and the fix before the compiler is reached: float
tensors, float I/O, ops the Edge TPU does not support or op versions newer than compiler 16 knows,
dynamic or oversized shapes, and where the first CPU op would cut the graph (the compiler sends
that op and everything after it to the CPU).

The flatbuffer is read with the schema module TensorFlow ships
(`tensorflow/lite/python/schema_py_generated.py`), loaded by file path so that `tensorflow` itself
is not imported (that costs seconds and ~0.7 GB); it needs only the `flatbuffers` package.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from .errors import ModelCheckError

# Newest op version the pre-check accepts per Edge TPU-supported builtin op. From Coral's op
# table ("TensorFlow models on the Edge TPU") and the versions users saw compiler 16.0 reject
# (CONV_2D v6 #631, TRANSPOSE_CONV v4 #845, EXP v2 libedgetpu#71). A newer version makes the
# compiler fail with "Didn't find op for builtin opcode 'X' version 'N'".
EDGETPU_MAX_VERSION: dict[str, int] = {
    "ADD": 2, "AVERAGE_POOL_2D": 2, "CONCATENATION": 2, "CONV_2D": 5, "DEPTHWISE_CONV_2D": 3,
    "DEQUANTIZE": 2, "EXPAND_DIMS": 1, "FULLY_CONNECTED": 5, "L2_NORMALIZATION": 2, "LOGISTIC": 2,
    "MAX_POOL_2D": 2, "MAXIMUM": 2, "MEAN": 2, "MINIMUM": 2, "MUL": 3, "PACK": 2, "PAD": 2,
    "QUANTIZE": 2, "RELU": 2, "RELU6": 2, "RESHAPE": 1, "RESIZE_BILINEAR": 3,
    "RESIZE_NEAREST_NEIGHBOR": 3, "SLICE": 2, "SOFTMAX": 2, "SPACE_TO_DEPTH": 2, "SPLIT": 2,
    "SQUEEZE": 1, "STRIDED_SLICE": 2, "SUB": 2, "SUM": 1, "TANH": 2, "TRANSPOSE_CONV": 3,
}
# Ops whose support needs runtime 13+ (compile with -m 13 or newer).
NEEDS_RUNTIME_13 = {"EXPAND_DIMS", "PACK", "QUANTIZE", "SUM", "TRANSPOSE_CONV"}
SOFTMAX_MAX_ELEMENTS = 16000
QUANTIZED_TYPES = {"UINT8", "INT8", "INT32"}  # INT32: biases and shape operands


def _schema() -> ModuleType:
    """TensorFlow's generated TFLite schema module, loaded without importing TensorFlow."""
    name = "_cropscout_tflite_schema"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec("tensorflow")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        path = Path(loc) / "lite" / "python" / "schema_py_generated.py"
        if path.is_file():
            mod_spec = importlib.util.spec_from_file_location(name, path)
            if mod_spec is None or mod_spec.loader is None:
                break
            module = importlib.util.module_from_spec(mod_spec)
            sys.modules[name] = module
            mod_spec.loader.exec_module(module)
            return module
    raise ModelCheckError(
        "the pre-check reads models with TensorFlow's TFLite schema, which is not installed; "
        "install the workstation extra: pip install -c constraints.txt '.[workstation]'"
    )


@dataclass
class TensorInfo:
    index: int
    name: str
    dtype: str
    shape: list[int]
    shape_signature: list[int]
    scale: list[float]
    zero_point: list[int]


@dataclass
class OpInfo:
    index: int
    op: str
    version: int
    inputs: list[int]
    outputs: list[int]
    on_tpu: bool = True
    problems: list[str] = field(default_factory=list)


@dataclass
class CheckReport:
    path: str
    ops: list[OpInfo]
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    errors: list[str]
    warnings: list[str]
    first_cpu_op: int | None
    subgraphs: int
    tensors: list[TensorInfo] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        return not self.errors

    def op_counts(self) -> dict[str, dict[str, int]]:
        """Per op type: how many ops are predicted on the TPU and on the CPU."""
        out: dict[str, dict[str, int]] = {}
        for op in self.ops:
            key = f"{op.op}(v{op.version})"
            row = out.setdefault(key, {"tpu": 0, "cpu": 0})
            row["tpu" if op.on_tpu else "cpu"] += 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "ok": self.ok,
            "errors": self.errors,
            "warnings": self.warnings,
            "first_cpu_op": self.first_cpu_op,
            "subgraphs": self.subgraphs,
            "ops_on_tpu": sum(op.on_tpu for op in self.ops),
            "ops_on_cpu": sum(not op.on_tpu for op in self.ops),
            "op_counts": self.op_counts(),
            "inputs": [asdict(t) for t in self.inputs],
            "outputs": [asdict(t) for t in self.outputs],
        }


def _enum_names(cls: type) -> dict[int, str]:
    return {v: k for k, v in vars(cls).items() if not k.startswith("_") and isinstance(v, int)}


def _tensor(sg: Any, i: int, type_names: dict[int, str]) -> TensorInfo:
    t = sg.Tensors(i)
    q = t.Quantization()
    scale = q.ScaleAsNumpy().tolist() if q is not None and q.ScaleLength() else []
    zp = q.ZeroPointAsNumpy().tolist() if q is not None and q.ZeroPointLength() else []
    shape = t.ShapeAsNumpy().tolist() if t.ShapeLength() else []
    sig = t.ShapeSignatureAsNumpy().tolist() if t.ShapeSignatureLength() else list(shape)
    name = t.Name().decode("utf-8", "replace") if t.Name() else f"tensor{i}"
    return TensorInfo(i, name, type_names.get(t.Type(), str(t.Type())), shape, sig, scale, zp)


def check_model(path: str | Path, min_runtime_version: int = 14) -> CheckReport:
    """Read `path` and report every op and every Edge TPU problem with its fix."""
    p = Path(path)
    if not p.is_file():
        raise ModelCheckError(f"{p}: no such model file; pass the path of a .tflite file")
    buf = p.read_bytes()
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise ModelCheckError(f"{p}: not a TFLite flatbuffer (no TFL3 identifier); pass a .tflite file")
    schema = _schema()
    try:
        model = schema.Model.GetRootAs(buf, 0)
        op_names = _enum_names(schema.BuiltinOperator)
        type_names = _enum_names(schema.TensorType)
        codes = []
        for i in range(model.OperatorCodesLength()):
            oc = model.OperatorCodes(i)
            code = max(int(oc.BuiltinCode()), int(oc.DeprecatedBuiltinCode()))
            name = op_names.get(code, f"BUILTIN_{code}")
            if name == "CUSTOM":
                custom = oc.CustomCode()
                name = "CUSTOM:" + (custom.decode() if custom else "?")
            codes.append((name, int(oc.Version())))
        n_sub = model.SubgraphsLength()
        sg = model.Subgraphs(0)
        tensors = [_tensor(sg, i, type_names) for i in range(sg.TensorsLength())]
        ops = []
        for i in range(sg.OperatorsLength()):
            o = sg.Operators(i)
            name, version = codes[o.OpcodeIndex()]
            ins = o.InputsAsNumpy().tolist() if o.InputsLength() else []
            outs = o.OutputsAsNumpy().tolist() if o.OutputsLength() else []
            ops.append(OpInfo(i, name, version, ins, outs))
        graph_in = sg.InputsAsNumpy().tolist()
        graph_out = sg.OutputsAsNumpy().tolist()
    except ModelCheckError:
        raise
    except Exception as err:  # noqa: BLE001 - a corrupt flatbuffer raises anything from struct/IndexError
        raise ModelCheckError(f"{p}: the model could not be parsed ({type(err).__name__}: {err})") from None

    errors: list[str] = []
    warnings: list[str] = []
    inputs = [tensors[i] for i in graph_in]
    outputs = [tensors[i] for i in graph_out]
    if n_sub > 1:
        warnings.append(f"the model has {n_sub} subgraphs; only the first is checked and compiled")

    float_ops = [
        op for op in ops
        if op.op not in ("QUANTIZE", "DEQUANTIZE")
        and any(tensors[t].dtype in ("FLOAT32", "FLOAT16") for t in op.inputs + op.outputs if t >= 0)
    ]
    if float_ops and len(float_ops) == len([o for o in ops if o.op not in ("QUANTIZE", "DEQUANTIZE")]):
        errors.append(
            "float model: no op is quantized (the compiler says 'Model not quantized'); convert with full-integer "
            "post-training quantization: a representative dataset, supported_ops=[TFLITE_BUILTINS_INT8], "
            "inference_input_type/inference_output_type=tf.uint8"
        )
    elif float_ops:
        errors.append(
            f"{len(float_ops)} op(s) compute in float (first: #{float_ops[0].index} {float_ops[0].op}); they run on "
            "the CPU; give the converter a representative dataset and supported_ops=[TFLITE_BUILTINS_INT8]"
        )
    for t in inputs + outputs:
        role = "input" if t in inputs else "output"
        if t.dtype not in ("UINT8", "INT8"):
            errors.append(
                f"{role} '{t.name}' is {t.dtype}: float I/O leaves QUANTIZE/DEQUANTIZE on the CPU; convert with "
                f"inference_{role}_type=tf.uint8"
            )
        if any(d < 0 for d in t.shape_signature):
            errors.append(
                f"{role} '{t.name}' has a dynamic shape {t.shape_signature}: the Edge TPU needs sizes fixed at compile "
                "time; build the Keras model with a fixed input shape and batch 1 (e.g. converter from a "
                "tf.function with a TensorSpec([1, H, W, 3]))"
            )
        elif t.shape and t.shape[0] != 1:
            errors.append(f"{role} '{t.name}' has batch {t.shape[0]}; the Edge TPU runs batch 1; export with batch 1")

    # activations: what flows between ops (weights are constant buffers and may have rank 4)
    activations = set(graph_in) | {t for op in ops for t in op.outputs}
    first_cpu: int | None = None
    for op in ops:
        why: list[str] = []
        if op.op not in EDGETPU_MAX_VERSION:
            why.append(f"{op.op} is not supported by the Edge TPU ('Operation not supported')")
        elif op.version > EDGETPU_MAX_VERSION[op.op]:
            why.append(
                f"{op.op} version {op.version} is newer than edgetpu_compiler 16 knows (max "
                f"{EDGETPU_MAX_VERSION[op.op]}; 'Didn't find op for builtin opcode'); convert with an older "
                "TensorFlow or replace the layer"
            )
        elif op.op in NEEDS_RUNTIME_13 and min_runtime_version < 13:
            why.append(f"{op.op} needs Edge TPU runtime 13 or newer; compile with -m 13 or higher")
        if op in float_ops:
            why.append("computes in float ('Operation is working on an unsupported data type')")
        for t in op.inputs + op.outputs:
            if t < 0:
                continue
            ten = tensors[t]
            if any(d < 0 for d in ten.shape_signature):
                why.append(f"tensor '{ten.name}' has a dynamic shape {ten.shape_signature}")
                break
            if t in activations and len(ten.shape) > 3 and any(d > 1 for d in ten.shape[:-3]):
                why.append(f"tensor '{ten.name}' {ten.shape} has more than 3 innermost dimensions > 1")
                break
        if op.op == "SOFTMAX":
            n = 1
            for d in tensors[op.inputs[0]].shape:
                n *= max(d, 1)
            if n > SOFTMAX_MAX_ELEMENTS:
                why.append(f"SOFTMAX over {n} elements (Edge TPU limit {SOFTMAX_MAX_ELEMENTS})")
        if why and first_cpu is None:
            first_cpu = op.index
        op.problems = why
        op.on_tpu = first_cpu is None
    if first_cpu is not None:
        bad = ops[first_cpu]
        n_after = len(ops) - first_cpu
        errors.append(
            f"op #{first_cpu} {bad.op}(v{bad.version}) cannot map: {'; '.join(bad.problems)}. It and the "
            f"{n_after - 1} op(s) after it will run on the CPU ('More than one subgraph is not supported')"
        )
    return CheckReport(str(p), ops, inputs, outputs, errors, warnings, first_cpu, n_sub, tensors)


def _describe_tensor(t: TensorInfo) -> str:
    q = ""
    if t.scale:
        q = f" s={t.scale[0]:.3g} zp={t.zero_point[0]}" + (f" (+{len(t.scale) - 1} ch)" if len(t.scale) > 1 else "")
    return f"{t.dtype}{t.shape_signature}{q}"


def format_report(report: CheckReport, verbose: bool = False) -> str:
    """A human-readable report: I/O, op table with predicted placement, problems and fixes."""
    lines = [f"model: {report.path}"]
    for role, ts in (("input", report.inputs), ("output", report.outputs)):
        for t in ts:
            q = f" scale={t.scale[0]:.6g} zero_point={t.zero_point[0]}" if t.scale else ""
            lines.append(f"  {role}: {t.name} {t.dtype} {t.shape_signature}{q}")
    lines.append(f"  {'operator':<28}{'count':>6}  predicted")
    for key, row in report.op_counts().items():
        where = "Edge TPU" if not row["cpu"] else ("CPU" if not row["tpu"] else f"{row['tpu']} TPU / {row['cpu']} CPU")
        lines.append(f"  {key:<28}{row['tpu'] + row['cpu']:>6}  {where}")
    if verbose:
        for op in report.ops:
            ins = ", ".join(_describe_tensor(report.tensors[t]) for t in op.inputs if t >= 0)
            outs = ", ".join(_describe_tensor(report.tensors[t]) for t in op.outputs if t >= 0)
            where = "TPU" if op.on_tpu else "CPU"
            lines.append(f"    #{op.index:<4} {op.op}(v{op.version}) [{where}] in: {ins} -> out: {outs}")
            for why in op.problems:
                lines.append(f"          ! {why}")
    n_tpu = sum(op.on_tpu for op in report.ops)
    lines.append(f"  predicted: {n_tpu} of {len(report.ops)} ops on the Edge TPU")
    for w in report.warnings:
        lines.append(f"  warning: {w}")
    for e in report.errors:
        lines.append(f"  problem: {e}")
    lines.append("  result: " + ("OK, the whole graph should map to the Edge TPU" if report.ok else "NOT READY"))
    return "\n".join(lines)
