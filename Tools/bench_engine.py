#!/usr/bin/env python3
"""Side-by-side CPU inference timings: ModelZoo's oneDNN engine vs onnxruntime.

For each architecture, exports the torchvision model (random weights) to ONNX in a
temporary directory and times onnxruntime with `--threads` intra-op threads; then runs the
Swift engine's benchmark (EngineTests.testBenchmarkPrintsFigures, release build) with
OMP_NUM_THREADS / OMP_WAIT_POLICY=active set, and prints one table of median milliseconds
per batch. Both sides use random weights and random input: speed does not depend on them.

Needs torch, torchvision, onnxruntime (export only needs torch; CI does not run this).

Usage:
  swift build -c release -Xswiftc -enable-testing --build-tests --scratch-path .build-bench
  python3 Tools/bench_engine.py --scratch-path .build-bench [--models resnet18,vgg16] [--batches 1,8]
"""
import argparse
import os
import re
import statistics
import subprocess
import tempfile
import time

# zoo id -> torchvision constructor name
TORCHVISION = {
    "resnet18": "resnet18", "resnet34": "resnet34", "resnet50": "resnet50",
    "vgg16": "vgg16", "vgg19": "vgg19", "alexnet": "alexnet", "googlenet": "googlenet",
}


def export(arch, directory):
    import torch
    import torchvision

    path = os.path.join(directory, arch + ".onnx")
    if os.path.exists(path):
        return path
    kwargs = {"weights": None}
    if arch == "googlenet":
        kwargs.update(aux_logits=False, init_weights=True)
    model = getattr(torchvision.models, TORCHVISION[arch])(**kwargs).eval()
    x = torch.randn(1, 3, 224, 224)
    torch.onnx.export(model, x, path, input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                      opset_version=17, dynamo=False)
    return path


def time_onnxruntime(path, batch, threads, iterations, warmup):
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((batch, 3, 224, 224), dtype=np.float32)
    for _ in range(warmup):
        session.run(None, {"input": x})
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        session.run(None, {"input": x})
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), min(times)


def time_zoo(models, batches, threads, scratch_path):
    env = dict(os.environ, ZOO_BENCH="1", ZOO_BENCH_MODELS=",".join(models),
               ZOO_BENCH_BATCHES=",".join(map(str, batches)), OMP_NUM_THREADS=str(threads),
               OMP_WAIT_POLICY="active")
    command = ["swift", "test", "-c", "release", "-Xswiftc", "-enable-testing", "--skip-build",
               "--scratch-path", scratch_path, "--filter", "EngineTests.testBenchmarkPrintsFigures"]
    output = subprocess.run(command, env=env, capture_output=True, text=True).stdout
    results = {}
    pattern = re.compile(r"BENCH (\S+) batch (\d+), \d+ threads: ([\d.]+) ms/batch \(median ([\d.]+), min ([\d.]+)\)")
    for line in output.splitlines():
        match = pattern.search(line)
        if match:
            results[(match.group(1), int(match.group(2)))] = (float(match.group(4)), float(match.group(5)))
    if not results:
        raise SystemExit("no BENCH lines from swift test; is the release test build there?\n" + output[-2000:])
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet18,vgg16,alexnet,googlenet,resnet50")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--scratch-path", default=".build-bench")
    parser.add_argument("--onnx-dir", default=os.path.join(tempfile.gettempdir(), "zoo-bench-onnx"))
    args = parser.parse_args()
    models = args.models.split(",")
    batches = [int(b) for b in args.batches.split(",")]
    os.makedirs(args.onnx_dir, exist_ok=True)

    ort_results = {}
    for arch in models:
        path = export(arch, args.onnx_dir)
        for batch in batches:
            iterations = args.iterations if batch == 1 else max(5, args.iterations // 3)
            ort_results[(arch, batch)] = time_onnxruntime(path, batch, args.threads, iterations, warmup=3)
    zoo_results = time_zoo(models, batches, args.threads, args.scratch_path)

    print(f"{'model':<10} {'batch':>5} {'zoo ms':>9} {'(min)':>8} {'ort ms':>9} {'(min)':>8} {'zoo/ort':>8}")
    for arch in models:
        for batch in batches:
            zoo = zoo_results.get((arch, batch), (float("nan"), float("nan")))
            ort = ort_results[(arch, batch)]
            print(f"{arch:<10} {batch:>5} {zoo[0]:>9.2f} {zoo[1]:>8.2f} {ort[0]:>9.2f} {ort[1]:>8.2f} {zoo[0] / ort[0]:>8.2f}")


if __name__ == "__main__":
    main()
