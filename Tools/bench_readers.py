#!/usr/bin/env python3
"""Reader speed and memory on a full-size VGG16 (about 553 MB), beside the Python peers in
the same run: `zoo inspect`, the shape half of `zoo verify`, and loading every tensor
(`zoo inspect --load`) against h5py reading every dataset and `onnx.load`.

Makes the files once in a cache folder (needs keras with the jax backend and torch +
torchvision; CI does not run this), then times each command several times warm and prints
a table: best wall time, and peak resident memory against the file size.

Usage:  swift build -c release --product zoo && python3 Tools/bench_readers.py [--runs 5]
"""
import argparse
import os
import pathlib
import resource
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
ZOO = ROOT / ".build" / "release" / "zoo"
CACHE = pathlib.Path(os.environ.get("ZOO_BENCH_CACHE", "/tmp/zoo-bench"))


def make_files():
    CACHE.mkdir(parents=True, exist_ok=True)
    h5 = CACHE / "vgg16_keras.h5"
    onnx_path = CACHE / "vgg16_torch.onnx"
    if not h5.exists():
        os.environ.setdefault("KERAS_BACKEND", "jax")
        import keras
        keras.applications.VGG16(weights=None).save(h5)
    if not onnx_path.exists():
        import torch
        import torchvision
        model = torchvision.models.vgg16(weights=None).eval()
        torch.onnx.export(model, torch.zeros(1, 3, 224, 224), onnx_path, dynamo=False,
                          input_names=["input"], output_names=["logits"], opset_version=17)
    return h5, onnx_path


def timed(argv):
    """Best-of wall time of a child process, and its peak RSS (ru_maxrss of that child)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    out = subprocess.run(argv, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if out.returncode not in (0, 1):
        sys.exit(f"{argv}: exit {out.returncode}: {out.stderr}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return elapsed * 1000, max(peak, before) * 1024, out.stdout


def child_peak(argv, pick):
    """Runs `argv` as a grandchild under a small Python parent that reports the grandchild's
    own peak RSS (RUSAGE_CHILDREN), so neither side is charged for this script's memory.
    `pick` extracts the in-process load time (ms) from the grandchild's output."""
    middle = ("import resource, subprocess, sys, json\n"
              f"o = subprocess.run({[str(a) for a in argv]!r}, capture_output=True, text=True)\n"
              "print(json.dumps([o.stdout, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss]))")
    out = subprocess.run([sys.executable, "-c", middle], capture_output=True, text=True, check=True)
    import json
    stdout, rss = json.loads(out.stdout)
    return pick(stdout), rss * 1024


H5PY_LOAD = """
import sys, time, resource, h5py, numpy as np
start = time.perf_counter()
arrays = []
with h5py.File(sys.argv[1] if len(sys.argv) > 1 else {path!r}, "r") as f:
    f.visititems(lambda n, o: arrays.append(o[()]) if isinstance(o, h5py.Dataset) else None)
print((time.perf_counter() - start) * 1000)
"""

ONNX_LOAD = """
import time, resource, onnx
start = time.perf_counter()
m = onnx.load({path!r})
print((time.perf_counter() - start) * 1000)
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    if not ZOO.exists():
        sys.exit("build first: swift build -c release --product zoo")
    h5, onnx_path = make_files()
    rows = []
    for label, path in (("Keras HDF5", h5), ("ONNX", onnx_path)):
        size = path.stat().st_size
        best = {}
        for name, argv in (("inspect", [ZOO, "inspect", path]),
                           ("verify --shapes-only", [ZOO, "verify", path, "--shapes-only"])):
            best[name] = min(timed(argv)[0] for _ in range(args.runs))
        def zoo_ms(stdout):
            line = next(x for x in stdout.splitlines() if x.startswith("loaded:"))
            return float(line.split(" in ")[1].split()[0])
        zoo_ms, zoo_rss = min(child_peak([ZOO, "inspect", path, "--load"], zoo_ms) for _ in range(args.runs))
        peer_code = (H5PY_LOAD if label == "Keras HDF5" else ONNX_LOAD).format(path=str(path))
        peer_ms, peer_rss = min(child_peak([sys.executable, "-c", peer_code], lambda o: float(o.split()[0]))
                                for _ in range(args.runs))
        peer = "h5py, every dataset" if label == "Keras HDF5" else "onnx.load"
        rows.append((label, size, best, zoo_ms, zoo_rss, peer, peer_ms, peer_rss))

    print(f"VGG16, best of {args.runs} warm runs (wall ms; peak RSS as a multiple of the file size)\n")
    print(f"{'file':<11} {'size MB':>8} {'inspect':>8} {'verify shapes':>14} {'zoo load':>9} {'zoo RSS':>8}   {'peer':<20} {'peer load':>9} {'peer RSS':>9} {'peer/zoo':>9}")
    for label, size, best, zoo_ms, zoo_rss, peer, peer_ms, peer_rss in rows:
        print(f"{label:<11} {size / 1e6:8.1f} {best['inspect']:8.1f} {best['verify --shapes-only']:14.1f} "
              f"{zoo_ms:9.1f} {zoo_rss / size:7.2f}x   {peer:<20} {peer_ms:9.1f} {peer_rss / size:8.2f}x {peer_ms / zoo_ms:8.2f}x")
    print("\ninspect and verify are whole processes (start-up included); loads are in-process times.")


if __name__ == "__main__":
    main()
