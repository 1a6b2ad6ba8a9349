#!/usr/bin/env python3
"""Writes the tiny ONNX fixtures in Fixtures/onnx/ and the values the tests expect of them.

Run from anywhere:  python3 Tools/make_onnx_fixtures.py
Needs numpy and onnx (onnx.helper builds the models; no torch). Output is deterministic,
so rerunning it changes nothing unless this script changed. Every weight is a small
multiple of 1/4 (or a value chosen to be exact in its 16-bit type), so float comparisons
in the tests can be exact.
"""
import json
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx.external_data_helper import set_external_data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Fixtures", "onnx")
PRODUCER, VERSION, OPSET, IR = "modelzoo-fixtures", "1.0", 13, 8


def ramp(shape, scale=0.25, start=-1.0):
    count = int(np.prod(shape))
    return (start + scale * np.arange(count, dtype=np.float32)).reshape(shape).astype(np.float32)


def model(nodes, initializers, inputs, outputs, name):
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=initializers)
    result = helper.make_model(graph, producer_name=PRODUCER, producer_version=VERSION,
                               opset_imports=[helper.make_opsetid("", OPSET)])
    result.ir_version = IR
    return result


def save(proto, filename):
    with open(os.path.join(OUT, filename), "wb") as handle:
        handle.write(proto.SerializeToString())


def expect(name, array, dtype):
    values = np.asarray(array, dtype=np.float32).reshape(-1)
    return {"name": name, "shape": list(np.shape(array)), "dtype": dtype, "values": [float(v) for v in values]}


def tiny_conv(typed):
    """Conv -> Relu -> Flatten -> Gemm, plus a Constant and a ConstantOfShape.

    typed=False stores initializers in raw_data; typed=True in float_data / int64_data."""
    conv_w, conv_b = ramp([2, 1, 3, 3]), ramp([2], start=0.5)
    fc_w, fc_b = ramp([3, 8], scale=0.125), ramp([3], start=-0.25)
    scale = np.array([2.0, 0.5, -1.0], dtype=np.float32)
    fill_shape = np.array([2, 3], dtype=np.int64)

    def tensor(name, array):
        if not typed:
            return numpy_helper.from_array(array, name)
        data_type = TensorProto.INT64 if array.dtype == np.int64 else TensorProto.FLOAT
        return helper.make_tensor(name, data_type, array.shape, array.reshape(-1).tolist(), raw=False)

    initializers = [tensor("conv.weight", conv_w), tensor("conv.bias", conv_b),
                    tensor("fc.weight", fc_w), tensor("fc.bias", fc_b), tensor("fill_shape", fill_shape)]
    nodes = [
        helper.make_node("Conv", ["x", "conv.weight", "conv.bias"], ["c"], name="conv", kernel_shape=[3, 3],
                         pads=[0, 0, 0, 0], strides=[1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Flatten", ["r"], ["f"], name="flatten", axis=1),
        helper.make_node("Gemm", ["f", "fc.weight", "fc.bias"], ["g"], name="fc", transB=1, alpha=1.0),
        helper.make_node("Constant", [], ["scale"], name="scale_const", value=tensor("", scale)),
        helper.make_node("Mul", ["g", "scale"], ["y"], name="mul"),
        helper.make_node("ConstantOfShape", ["fill_shape"], ["filled"], name="fill",
                         value=helper.make_tensor("", TensorProto.FLOAT, [1], [1.5])),
    ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 4, 4])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3]),
               helper.make_tensor_value_info("filled", TensorProto.FLOAT, [2, 3])]
    proto = model(nodes, initializers, inputs, outputs, "tiny_conv")
    tensors = [expect("conv.weight", conv_w, "float32"), expect("conv.bias", conv_b, "float32"),
               expect("fc.weight", fc_w, "float32"), expect("fc.bias", fc_b, "float32"),
               {"name": "fill_shape", "shape": [2], "dtype": "int64", "values": [2, 3]},
               expect("scale", scale, "float32"), expect("filled", np.full([2, 3], 1.5, np.float32), "float32")]
    ops = {"Conv": 1, "Relu": 1, "Flatten": 1, "Gemm": 1, "Constant": 1, "Mul": 1, "ConstantOfShape": 1}
    return proto, {"tensors": tensors, "ops": ops, "opset": OPSET, "producer": f"{PRODUCER} {VERSION}",
                   "ir_version": IR, "inputs": ["x"], "outputs": ["y", "filled"]}


def sixteen_bit(data_type, dtype_name, values):
    """One raw_data tensor and one typed (int32_data bit patterns) tensor of a 16-bit type."""
    array = np.asarray(values, dtype=np.float32).reshape([2, 3])
    if data_type == TensorProto.FLOAT16:
        bits = array.astype(np.float16).view(np.uint16)
        widened = array.astype(np.float16).astype(np.float32)
    else:
        bits = (array.view(np.uint32) >> 16).astype(np.uint16)
        widened = (bits.astype(np.uint32) << 16).view(np.float32)
    raw = TensorProto(name="w_raw", data_type=data_type, dims=[2, 3], raw_data=bits.astype("<u2").tobytes())
    typed = TensorProto(name="w_typed", data_type=data_type, dims=[2, 3])
    typed.int32_data.extend(int(b) for b in bits.reshape(-1))
    nodes = [helper.make_node("Add", ["w_raw", "w_typed"], ["y"], name="add")]
    outputs = [helper.make_tensor_value_info("y", data_type, [2, 3])]
    proto = model(nodes, [raw, typed], [], outputs, f"tiny_{dtype_name}")
    return proto, {"tensors": [expect("w_raw", widened, dtype_name), expect("w_typed", widened, dtype_name)],
                   "ops": {"Add": 1}, "opset": OPSET, "producer": f"{PRODUCER} {VERSION}", "ir_version": IR,
                   "inputs": [], "outputs": ["y"]}


def external(location, write_data):
    """Two float tensors stored in `location`, at offsets 0 and 64 (the second padded)."""
    first, second = ramp([2, 4]), ramp([3], start=2.0)
    tensors = []
    for name, array, offset in (("ext.first", first, 0), ("ext.second", second, 64)):
        # set_external_data wants raw_data present; the bytes then live only in `location`.
        tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=list(array.shape),
                             raw_data=array.tobytes())
        set_external_data(tensor, location=location, offset=offset, length=array.nbytes)
        tensor.ClearField("raw_data")
        tensor.data_location = TensorProto.EXTERNAL
        tensors.append(tensor)
    if write_data:
        blob = bytearray(64 + second.nbytes)
        blob[0:first.nbytes] = first.astype("<f4").tobytes()
        blob[64:] = second.astype("<f4").tobytes()
        with open(os.path.join(OUT, location), "wb") as handle:
            handle.write(bytes(blob))
    nodes = [helper.make_node("Identity", ["ext.first"], ["y"], name="id")]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])]
    proto = model(nodes, tensors, [], outputs, "external")
    return proto, [expect("ext.first", first, "float32"), expect("ext.second", second, "float32")]


def single_tensor_model(tensor):
    nodes = [helper.make_node("Identity", [tensor.name], ["y"], name="id")]
    return model(nodes, [tensor], [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], "broken")


def main():
    os.makedirs(OUT, exist_ok=True)
    expected = {"valid": {}, "errors": {}}

    for filename, typed in (("tiny_conv_raw.onnx", False), ("tiny_conv_typed.onnx", True)):
        proto, facts = tiny_conv(typed)
        save(proto, filename)
        expected["valid"][filename] = facts

    half_values = [0.5, -1.25, 65504.0, 2.0 ** -24, -0.0, 3.140625]
    proto, facts = sixteen_bit(TensorProto.FLOAT16, "float16", half_values)
    save(proto, "tiny_float16.onnx")
    expected["valid"]["tiny_float16.onnx"] = facts
    bf16_values = [1.0, -2.5, 3.140625, 1.0e-3, 3.0e38, -7.0]
    proto, facts = sixteen_bit(TensorProto.BFLOAT16, "bfloat16", bf16_values)
    save(proto, "tiny_bfloat16.onnx")
    expected["valid"]["tiny_bfloat16.onnx"] = facts

    proto, tensors = external("external_ok.bin", write_data=True)
    save(proto, "external_ok.onnx")
    expected["valid"]["external_ok.onnx"] = {"tensors": tensors, "ops": {"Identity": 1}, "opset": OPSET,
                                             "producer": f"{PRODUCER} {VERSION}", "ir_version": IR,
                                             "inputs": [], "outputs": ["y"]}

    # Opening these works; loading a tensor must be refused before any file outside the
    # model's folder is opened.
    proto, _ = external("../x", write_data=False)
    save(proto, "external_parent.onnx")
    expected["errors"]["external_parent.onnx"] = {"at": "load", "kind": "badTensor", "tensor": "ext.first",
                                                  "contains": ".."}
    proto, _ = external("/etc/passwd", write_data=False)
    save(proto, "external_absolute.onnx")
    expected["errors"]["external_absolute.onnx"] = {"at": "load", "kind": "badTensor", "tensor": "ext.first",
                                                    "contains": "absolute"}

    # Malformed files: each must fail at open with a clear error.
    save_bytes = lambda name, data: open(os.path.join(OUT, name), "wb").write(data)
    save_bytes("empty.onnx", b"")
    expected["errors"]["empty.onnx"] = {"at": "open", "kind": "unreadableFile", "contains": "empty"}
    save_bytes("random.onnx", np.random.default_rng(20240601).integers(0, 256, 1024, dtype=np.uint8).tobytes())
    expected["errors"]["random.onnx"] = {"at": "open", "kind": "unreadableFile", "contains": ""}
    whole = open(os.path.join(OUT, "tiny_conv_raw.onnx"), "rb").read()
    save_bytes("truncated.onnx", whole[: len(whole) // 2])
    expected["errors"]["truncated.onnx"] = {"at": "open", "kind": "unreadableFile", "contains": "truncated"}

    overflow = TensorProto(name="huge", data_type=TensorProto.FLOAT, dims=[1 << 40, 1 << 40], raw_data=b"\0" * 4)
    save(single_tensor_model(overflow), "overflow_dims.onnx")
    expected["errors"]["overflow_dims.onnx"] = {"at": "open", "kind": "badTensor", "tensor": "huge",
                                                "contains": "overflow"}
    negative = TensorProto(name="negative", data_type=TensorProto.FLOAT, dims=[-3, 2], raw_data=b"\0" * 24)
    save(single_tensor_model(negative), "negative_dim.onnx")
    expected["errors"]["negative_dim.onnx"] = {"at": "open", "kind": "badTensor", "tensor": "negative",
                                               "contains": "negative dimension -3"}
    short = TensorProto(name="short", data_type=TensorProto.FLOAT, dims=[4, 4], raw_data=b"\0" * 32)
    save(single_tensor_model(short), "short_raw.onnx")
    expected["errors"]["short_raw.onnx"] = {"at": "open", "kind": "badTensor", "tensor": "short",
                                            "contains": "32 bytes"}

    with open(os.path.join(OUT, "expected.json"), "w") as handle:
        json.dump(expected, handle, indent=1, sort_keys=True)
        handle.write("\n")

    # The valid fixtures must be valid ONNX in onnx's own eyes.
    for filename in expected["valid"]:
        onnx.checker.check_model(os.path.join(OUT, filename))
    print(f"wrote {len(expected['valid']) + len(expected['errors'])} fixtures to {OUT}")


if __name__ == "__main__":
    main()
