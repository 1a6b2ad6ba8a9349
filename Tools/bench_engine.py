#!/usr/bin/env python3
"""Side-by-side CPU inference timings: ModelZoo's oneDNN engine vs onnxruntime.

For each architecture, exports the torchvision model (random weights) to ONNX in a
temporary directory, times onnxruntime on it with `--threads` intra-op threads and
`zoo bench --weights THAT_FILE --threads N` on the same file (which re-runs itself with
OMP_WAIT_POLICY=active), and prints one table of median milliseconds per batch and the
ratio. Both sides use random weights and random input: speed does not depend on them.

With --per-op, both sides also report the sum over operators of each operator's fastest
run (oneDNN's ONEDNN_VERBOSE timings, onnxruntime's profiler): on a machine shared with
other busy processes, wall-clock medians of spinning OpenMP threads are dominated by
scheduler stalls, and this sum is the fair figure.

Needs torch, torchvision, onnxruntime (export only needs torch; CI does not run this).

Usage:
  swift build -c release --product zoo
  python3 Tools/bench_engine.py [--models resnet18,vgg16] [--batches 1,8] [--threads 2] [--per-op] [--bf16]
"""
import argparse
import collections
import json
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


def ort_per_op(path, batch, threads, iterations):
    """Sum over graph nodes of each node's fastest kernel time (ms), from the profiler."""
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.enable_profiling = True
    options.profile_file_prefix = os.path.join(tempfile.gettempdir(), "zoo-bench-ort-profile")
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((batch, 3, 224, 224), dtype=np.float32)
    for _ in range(iterations + 3):
        session.run(None, {"input": x})
    profile = session.end_profiling()
    with open(profile) as handle:
        events = json.load(handle)
    os.remove(profile)
    durations = collections.defaultdict(list)
    for event in events:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            durations[event["name"]].append(event["dur"])
    return sum(min(d[3:] or d) for d in durations.values()) / 1000


def zoo_per_op(verbose_lines):
    """Sum over the steps of one forward pass of each step's fastest time (ms)."""
    rows = [line.strip().split(",") for line in verbose_lines if line.startswith("onednn_verbose,exec,cpu")]
    key = [(row[3], row[-2]) for row in rows]
    # The forward passes are the longest repeating tail of the log.
    period = next((p for p in range(1, len(rows) // 2 + 1) if key[-p:] == key[-2 * p:-p]), None)
    if period is None:
        return float("nan")
    runs = []
    end = len(rows)
    while end - period >= 0 and key[end - period:end] == key[-period:]:
        runs.append(rows[end - period:end])
        end -= period
    return sum(min(float(run[i][-1]) for run in runs) for i in range(period))


ZOO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".build", "release", "zoo")


def time_zoo(path, batch, threads, iterations, verbose=False, precision="fp32"):
    """`zoo bench` on the same ONNX file: median and min ms per batch (and, with verbose,
    the per-operator sum from oneDNN's verbose log)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OMP_WAIT_POLICY="active")
    if verbose:
        env["ONEDNN_VERBOSE"] = "1"
    command = [ZOO, "bench", "--weights", path, "--batch", str(batch), "--iterations", str(iterations),
               "--threads", str(threads), "--format", "json", "--precision", precision, "--compare-batches", "2"]
    out = subprocess.run(command, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"zoo bench failed on {path}: {out.stderr}")
    lines = out.stdout.splitlines()
    start = max(i for i, line in enumerate(lines) if line.startswith("{"))
    result = json.loads("\n".join(lines[start:]))
    timing = (result["median_ms_per_batch"], result["min_ms_per_batch"])
    if precision != "fp32":
        return timing + (result["max_relative_logit_error"], result["top1_agreement"])
    return (timing, zoo_per_op(lines[:start])) if verbose else timing


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet18,vgg16,alexnet,googlenet,resnet50")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--per-op", action="store_true",
                        help="also print the load-robust sum of per-operator minimums")
    parser.add_argument("--bf16", action="store_true",
                        help="also time zoo --precision bf16, with its logit error and top-1 agreement against fp32")
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
    zoo_results = {}
    for arch in models:
        for batch in batches:
            iterations = args.iterations if batch == 1 else max(5, args.iterations // 3)
            zoo_results[(arch, batch)] = time_zoo(os.path.join(args.onnx_dir, arch + ".onnx"), batch,
                                                  args.threads, iterations)

    bf16 = {}
    if args.bf16:
        for arch in models:
            for batch in batches:
                iterations = args.iterations if batch == 1 else max(5, args.iterations // 3)
                bf16[(arch, batch)] = time_zoo(os.path.join(args.onnx_dir, arch + ".onnx"), batch, args.threads,
                                               iterations, precision="bf16")

    per_op = {}
    if args.per_op:
        for arch in models:
            for batch in batches:
                iterations = args.iterations if batch == 1 else max(5, args.iterations // 3)
                path = os.path.join(args.onnx_dir, arch + ".onnx")
                _, zoo_sum = time_zoo(path, batch, args.threads, iterations, verbose=True)
                ort_sum = ort_per_op(path, batch, args.threads, iterations)
                per_op[(arch, batch)] = (zoo_sum, ort_sum)

    header = f"{'model':<10} {'batch':>5} {'zoo ms':>9} {'(min)':>8} {'ort ms':>9} {'(min)':>8} {'zoo/ort':>8}"
    if args.bf16:
        header += f" {'bf16 ms':>9} {'bf16/ort':>9} {'rel err':>8} {'top-1':>6}"
    if args.per_op:
        header += f" {'zoo per-op':>11} {'ort per-op':>11} {'ratio':>6}"
    print(f"threads {args.threads}; median (min) ms per batch")
    print(header)
    for arch in models:
        for batch in batches:
            zoo = zoo_results.get((arch, batch), (float("nan"), float("nan")))
            ort = ort_results[(arch, batch)]
            line = f"{arch:<10} {batch:>5} {zoo[0]:>9.2f} {zoo[1]:>8.2f} {ort[0]:>9.2f} {ort[1]:>8.2f} {zoo[0] / ort[0]:>8.2f}"
            if (arch, batch) in bf16:
                b = bf16[(arch, batch)]
                line += f" {b[0]:>9.2f} {b[0] / ort[0]:>9.2f} {b[2]:>8.1e} {b[3] * 100:>5.0f}%"
            if (arch, batch) in per_op:
                z, o = per_op[(arch, batch)]
                line += f" {z:>11.2f} {o:>11.2f} {z / o:>6.2f}"
            print(line)


if __name__ == "__main__":
    main()
