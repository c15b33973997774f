"""Checks an ONNX model brs exported and runs it with ONNX Runtime, for tests/onnx_export.rs and
brs-train's tests/onnx_export.rs.

usage: onnx_run.py MODEL INPUT.npy OUT_DIR

- onnx.checker.check_model on the path, with full_check (strict shape inference too); the path
  form follows external data files;
- ONNX Runtime (CPU, all graph optimisations) on INPUT, every output saved as OUT_DIR/NAME.npy;
- the first sample alone, to show the batch dimension is free: its outputs must equal the
  batch's first row;
- OUT_DIR/info.json: the opset, IR version, inputs and outputs with their dims, metadata, and
  the batch-of-one difference.
"""

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort


def dims(value_info):
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def main():
    model_path, input_path, out_dir = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    onnx.checker.check_model(model_path, full_check=True)
    model = onnx.load(model_path, load_external_data=False)

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
    x = np.load(input_path)
    input_name = session.get_inputs()[0].name
    names = [o.name for o in session.get_outputs()]
    outputs = session.run(None, {input_name: x})
    for name, value in zip(names, outputs):
        np.save(out_dir / f"{name}.npy", value)
    alone = session.run(None, {input_name: x[:1]})
    batch_of_one_diff = max(float(np.abs(a - b[:1]).max()) for a, b in zip(alone, outputs))

    info = {
        "ir_version": model.ir_version,
        "opsets": {o.domain or "ai.onnx": o.version for o in model.opset_import},
        "inputs": {i.name: dims(i) for i in model.graph.input},
        "outputs": {o.name: dims(o) for o in model.graph.output},
        "metadata": {p.key: p.value for p in model.metadata_props},
        "ops": sorted({n.op_type for n in model.graph.node}),
        "external": sorted(
            {e.value for t in model.graph.initializer for e in t.external_data if e.key == "location"}
        ),
        "batch_of_one_diff": batch_of_one_diff,
        "onnx": onnx.__version__,
        "onnxruntime": ort.__version__,
    }
    (out_dir / "info.json").write_text(json.dumps(info, indent=1))


if __name__ == "__main__":
    main()
