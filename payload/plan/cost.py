"""What one invoke of a bundle's model costs the chip: multiply-accumulates and parameter bytes, counted.

The timing model (payload/plan/chip.py) needs a model's MACs and the bytes of its parameters;
they are read from the bundle's int8 .tflite with the TFLite runtime the payload already has (no
TensorFlow), so `payload plan` on the drone's software and tools/coral.py on the workstation
count them the same way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from payload.backends.runtime import import_runtime
from payload.plan.chip import BundleCost


def _macs_of(op: dict, shapes: dict[int, list[int]]) -> float:
    """Multiply-accumulates of one conv or fully connected op (batch 1); 0 for everything else."""
    name = op["op_name"]
    ins, outs = [int(i) for i in op["inputs"]], [int(o) for o in op["outputs"]]
    if len(ins) < 2 or not outs or ins[1] < 0:
        return 0.0
    w, out = shapes[ins[1]], shapes[outs[0]]
    n_out = float(np.prod(out)) if out else 0.0
    if name == "CONV_2D":  # weights [O, kh, kw, I]
        return n_out * w[1] * w[2] * w[3]
    if name == "DEPTHWISE_CONV_2D":  # weights [1, kh, kw, C]
        return n_out * w[1] * w[2]
    if name == "FULLY_CONNECTED":  # weights [O, I]
        return n_out * w[1]
    if name == "TRANSPOSE_CONV":  # weights [O, kh, kw, I]; every input pixel scatters a kernel
        x = shapes[ins[2]] if len(ins) > 2 else []
        return float(np.prod(x)) * w[0] * w[1] * w[2] if x else 0.0
    return 0.0


def bundle_cost(model: Path) -> BundleCost:
    """Count a .tflite's MACs (conv, depthwise, fully connected) and constant parameter bytes.

    Read with the TFLite runtime the payload already has (no TensorFlow): constant tensors are the
    op inputs no op produces and the graph does not take; their bytes are what the compiler places
    on chip or streams.
    """
    _name, rt = import_runtime()
    interp = rt.Interpreter(model_path=str(model))
    details = {int(t["index"]): t for t in interp.get_tensor_details()}
    shapes = {i: [int(d) for d in t["shape"]] for i, t in details.items()}
    ops = [op for op in interp._get_ops_details() if op["op_name"] != "DELEGATE"]  # the runtime's only op list
    produced = {int(o) for op in ops for o in op["outputs"]}
    graph_in = {int(t["index"]) for t in interp.get_input_details()}
    constants = {int(i) for op in ops for i in op["inputs"]} - produced - graph_in - {-1}
    param_bytes = sum(float(np.prod(shapes[i])) * np.dtype(details[i]["dtype"]).itemsize for i in constants)
    macs = sum(_macs_of(op, shapes) for op in ops)
    return BundleCost(macs, param_bytes)
