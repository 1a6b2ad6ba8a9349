#!/usr/bin/env python3
"""Peer checks for `zoo convert`: convert, then run the result in the framework that owns
the target format, on the same input, and compare logits with zoo's engine.

- ONNX output      -> onnxruntime runs the converted file as it is.
- safetensors      -> torchvision builds the model and `load_state_dict(strict=True)`s it.
- Keras .h5 output -> Keras (keras.applications or Tools/keras_models.py) `load_weights`;
  and the other way: weights Keras itself saved (both layouts) converted by zoo.

Usage: Tools/check_convert.py [--zoo PATH] [--only onnx,torch,keras] [--work DIR]
torch and Keras are heavy: this is a Tools/ check, not part of CI (the CI half is the
onnxruntime test in Tests/ModelZooTests/ConvertTests.swift).
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "jax")
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TOLERANCE = 1e-4
failures = []


def zoo(*args):
    result = subprocess.run([ZOO, *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"zoo {' '.join(args)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    return result.stdout


def zoo_logits(weights, x, work):
    np.save(os.path.join(work, "input.npy"), x)
    out = os.path.join(work, "zoo_logits.npy")
    zoo("run", "--weights", weights, "--input", os.path.join(work, "input.npy"), "--output", out)
    return np.load(out)


def compare(label, expected, actual):
    diff = float(np.abs(expected - actual).max())
    scale = float(np.abs(expected).max())
    ratio = diff / scale if scale > 0 else diff
    ok = ratio <= TOLERANCE
    print(f"  {'OK  ' if ok else 'FAIL'} {label}: max |diff| {diff:.3g}, {ratio:.2e} of max |logit| {scale:.3g}")
    if not ok:
        failures.append(label)


def input_for(arch, batch=2):
    rng = np.random.default_rng(7)
    shape = {"lenet5": (1, 32, 32), "lenet5-classic": (1, 32, 32), "alexnet-caffe": (3, 227, 227),
             "alexnet-single": (3, 227, 227)}.get(arch, (3, 224, 224))
    return rng.uniform(-1, 1, size=(batch, *shape)).astype(np.float32)


def check_onnx(work):
    import onnx
    import onnxruntime as ort
    print("onnxruntime runs zoo's ONNX output:")
    for arch in ["lenet5", "lenet5-classic", "alexnet", "alexnet-caffe", "zfnet512", "vgg16", "vgg16_bn",
                 "googlenet", "googlenet-caffe", "resnet18", "resnet50", "resnet50-keras"]:
        src = os.path.join(work, f"{arch}.safetensors")
        dst = os.path.join(work, f"{arch}.onnx")
        zoo("init", arch, src, "--seed", "3", "--force")
        zoo("convert", src, dst, "--arch", arch, "--force")
        onnx.checker.check_model(dst, full_check=True)
        x = input_for(arch)
        session = ort.InferenceSession(dst, providers=["CPUExecutionProvider"])
        compare(f"{arch}: onnxruntime(.onnx) vs zoo(.safetensors)", zoo_logits(src, x, work),
                session.run(["logits"], {"input": x})[0])
        os.remove(dst)


def torchvision_model(arch):
    import torchvision.models as tvm
    if arch == "googlenet":
        return tvm.googlenet(weights=None, aux_logits=False, init_weights=False)
    return getattr(tvm, arch)(weights=None)


def check_torch(work):
    import torch
    from safetensors.torch import load_file
    print("torchvision loads zoo's safetensors (strict) and runs it:")
    for arch in ["alexnet", "vgg16", "vgg16_bn", "googlenet", "resnet18", "resnet50"]:
        src = os.path.join(work, f"{arch}.onnx")
        dst = os.path.join(work, f"{arch}.safetensors")
        zoo("init", arch, src, "--seed", "5", "--force")  # ONNX in, so the conversion really relays out
        zoo("convert", src, dst, "--force")
        model = torchvision_model(arch).eval()
        model.load_state_dict(load_file(dst), strict=True)
        x = input_for(arch)
        with torch.no_grad():
            expected = model(torch.from_numpy(x)).numpy()
        compare(f"{arch}: torch(.safetensors from .onnx) vs zoo(.onnx)", expected, zoo_logits(src, x, work))
        os.remove(src)
        os.remove(dst)


def check_keras(work):
    sys.path.insert(0, HERE)
    import keras_models
    from keras.src.legacy.saving import legacy_h5_format
    import h5py
    print("Keras <-> zoo (both HDF5 layouts):")
    for arch in ["lenet5", "lenet5-classic", "alexnet", "vgg16", "vgg11_bn", "resnet18", "resnet50-keras"]:
        x = input_for(arch)
        x_nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        # Keras -> zoo: weights Keras saved itself, converted by zoo, run by zoo.
        model = keras_models.build(arch)
        expected = np.asarray(model.predict(x_nhwc, verbose=0))
        legacy = os.path.join(work, f"{arch}_keras.h5")
        with h5py.File(legacy, "w") as f:
            legacy_h5_format.save_weights_to_hdf5_group(f, model)
        modern = os.path.join(work, f"{arch}_keras.weights.h5")
        model.save_weights(modern)
        for keras_file in (legacy, modern):
            out = keras_file + ".safetensors"
            zoo("convert", keras_file, out, "--arch", arch, "--force")
            compare(f"{arch}: Keras saved {os.path.basename(keras_file)} -> zoo safetensors", expected,
                    zoo_logits(out, x, work))
            os.remove(out)
        # zoo -> Keras: zoo's random weights written as both layouts, loaded by Keras.
        src = os.path.join(work, f"{arch}.safetensors")
        zoo("init", arch, src, "--seed", "9", "--force")
        reference = zoo_logits(src, x, work)
        for suffix in (".h5", ".weights.h5"):
            out = os.path.join(work, f"{arch}_zoo{suffix}")
            zoo("convert", src, out, "--force")
            target = keras_models.build(arch)
            target.load_weights(out)
            compare(f"{arch}: zoo {suffix} loaded by Keras", reference, np.asarray(target.predict(x_nhwc, verbose=0)))
            os.remove(out)
        for path in (legacy, modern, src):
            os.remove(path)
    # A different network must be refused, not written.
    src = os.path.join(work, "resnet50.safetensors")
    zoo("init", "resnet50", src, "--force")
    result = subprocess.run([ZOO, "convert", src, os.path.join(work, "r50.h5")], capture_output=True, text=True)
    refused = result.returncode == 1 and not os.path.exists(os.path.join(work, "r50.h5"))
    print(f"  {'OK  ' if refused else 'FAIL'} torchvision resnet50 -> Keras refused: {result.stderr.strip()[:160]}")
    if not refused:
        failures.append("resnet50 refusal")


def main():
    global ZOO
    parser = argparse.ArgumentParser()
    parser.add_argument("--zoo", default=os.path.join(ROOT, ".build", "release", "zoo"))
    parser.add_argument("--only", default="onnx,torch,keras")
    parser.add_argument("--work", default=None)
    args = parser.parse_args()
    ZOO = args.zoo
    work = args.work or tempfile.mkdtemp(prefix="zoo-check-convert-")
    os.makedirs(work, exist_ok=True)
    parts = args.only.split(",")
    if "onnx" in parts:
        check_onnx(work)
    if "torch" in parts:
        check_torch(work)
    if "keras" in parts:
        check_keras(work)
    print(f"{len(failures)} failure(s)" + (": " + ", ".join(failures) if failures else ""))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
