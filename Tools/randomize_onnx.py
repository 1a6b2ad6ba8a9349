"""Gives an ONNX model-zoo graph real (random) weights and records onnxruntime's logits.

The onnx wheel's light models (backend/test/data/light) fill every weight with one constant
(`ConstantOfShape`, 0.02), so every class gets the same score and their shipped outputs
cannot tell a right engine from a wrong one. This replaces each constant-filled weight with
a seeded random initializer (He-scaled, so activations stay finite through deep nets),
cuts the final Softmax so the graph returns logits, and runs onnxruntime on a seeded
input. Used by the Swift tests (CI has numpy, onnx, onnxruntime); nothing is committed.

Usage: python3 Tools/randomize_onnx.py IN.onnx OUT.onnx INPUT.npy LOGITS.npy [--batch N] [--seed S]
"""
import argparse

import numpy as np
import onnx
import onnxruntime as ort

ort.set_default_logger_severity(3)
from onnx import numpy_helper


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("input")
    ap.add_argument("logits")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    rng = np.random.default_rng(args.seed)
    model = onnx.load(args.model)
    graph = model.graph
    shapes = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    keep = []
    for node in graph.node:
        if node.op_type == "ConstantOfShape" and node.input[0] in shapes:
            shape = [int(d) for d in shapes[node.input[0]]]
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            name = node.output[0]
            if len(shape) == 1 and ("_bn_riv" in name or "_bn_s" in name):
                value = rng.uniform(0.5, 1.5, shape)       # BN variance and scale stay positive
            elif len(shape) == 1:
                value = rng.uniform(-0.1, 0.1, shape)
            else:
                value = rng.standard_normal(shape) * np.sqrt(2.0 / max(fan_in, 1))
            graph.initializer.append(numpy_helper.from_array(value.astype(np.float32), name))
        else:
            keep.append(node)
    if keep and keep[-1].op_type == "Softmax":
        logits = keep[-1].input[0]
        keep.pop()
        del graph.output[:]
        graph.output.append(onnx.helper.make_tensor_value_info(logits, onnx.TensorProto.FLOAT, None))
    del graph.node[:]
    graph.node.extend(keep)
    initializer_names = {i.name for i in graph.initializer}
    data = [i for i in graph.input if i.name not in initializer_names]
    # Weight inputs that are now initializers stay declared as inputs in these IR 3 graphs.
    onnx.save(model, args.out)

    x_info = data[0]
    dims = [d.dim_value for d in x_info.type.tensor_type.shape.dim]
    x = rng.standard_normal([args.batch] + dims[1:]).astype(np.float32)
    session = ort.InferenceSession(args.out, providers=["CPUExecutionProvider"])
    feeds = {}
    for extra in data[1:]:
        # Caffe2 exports declare unused data-queue inputs; feed zeros of their shape.
        shape = [d.dim_value or 1 for d in extra.type.tensor_type.shape.dim]
        if extra.name not in initializer_names:
            feeds[extra.name] = np.zeros(shape, np.float32)
    # These graphs fix the batch at 1 (their Reshape shapes say so): one sample at a time.
    outputs = []
    for sample in x:
        feeds[x_info.name] = sample[None]
        (y,) = session.run(None, feeds)
        outputs.append(y.reshape(-1))
    np.save(args.input, x)
    np.save(args.logits, np.stack(outputs).astype(np.float32))


if __name__ == "__main__":
    main()
