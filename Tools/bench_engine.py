#!/usr/bin/env python3
"""Side-by-side CPU inference timings: ModelZoo's oneDNN engine vs onnxruntime.

For each architecture, exports the torchvision model with pretrained-like random weights
(`pretrained_like`) to ONNX in a temporary directory, times onnxruntime on it with
`--threads` intra-op threads and `zoo bench --weights THAT_FILE --threads N` on the same
file (which re-runs itself with OMP_WAIT_POLICY=active), and prints one table of median
milliseconds per batch and the ratio (fp32: the two engines take turns, `--rounds` times).
Both sides use random weights and random input: speed does not depend on them, but the
precision columns do: torchvision's own initialisation leaves GoogLeNet's features at zero
(every image gets the classifier's bias in any precision) and BatchNorm at identity
statistics, which hides folding mistakes; He-scaled weights, nonzero biases and BatchNorm
statistics away from 0/1 give every net logits that depend on the image.

With --per-op, both sides also report the sum over operators of each operator's fastest
run (oneDNN's ONEDNN_VERBOSE timings, onnxruntime's profiler): on a machine shared with
other busy processes, wall-clock medians of spinning OpenMP threads are dominated by
scheduler stalls, and this sum is the fair figure.

With --int8, both sides also run int8: zoo calibrates `--precision int8` on a folder of
images (once; the scales are saved beside the ONNX file), twice: with its default agreement
tuning (blocks kept out of int8 until 99% of the calibration images keep their fp32 top-1)
and with `--int8-agreement 0` (every block int8); onnxruntime runs its own int8
model, made by onnxruntime.quantization.quantize_static (QDQ, per-channel s8 weights, u8
activations, its default MinMax calibration) from the same calibration images. The images
are drawn by a seeded procedure (`make_images`: smooth colour gradients, overlapping
ellipses and boxes, blurred texture; 256x256 PNG), 200 for calibration and 100 others on
which each int8 path's top-1 agreement with its own fp32 path is measured. The weights are
random, so their logits are closer together than a trained model's: agreement here says
how faithful the arithmetic is, not how accurate a trained model stays.

Needs torch, torchvision, onnxruntime, Pillow (export only needs torch; CI does not run this).

Usage:
  swift build -c release --product zoo
  python3 Tools/bench_engine.py [--models resnet18,vgg16] [--batches 1,8] [--threads 2] [--per-op] [--bf16] [--int8]
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
    torch.manual_seed(0)
    model = pretrained_like(getattr(torchvision.models, TORCHVISION[arch])(**kwargs).eval())
    x = torch.randn(1, 3, 224, 224)
    torch.onnx.export(model, x, path, input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                      opset_version=17, dynamo=False)
    return path


def pretrained_like(model):
    """He-scaled weights, small nonzero biases, BatchNorm affine terms and running statistics
    away from 0/1 (drawn from torch's global generator: seed it first)."""
    import torch

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                module.weight.normal_(0, (2 / module.weight[0].numel()) ** 0.5)
                if module.bias is not None:
                    module.bias.normal_(0, 0.1)
            elif isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.2)
                module.running_mean.normal_(0, 0.3)
                module.running_var.uniform_(0.5, 2)
    return model


def make_images(directory, count, seed, size=256):
    """Deterministic "real-looking" images: what a calibration set needs is natural-image
    statistics (smooth regions, edges, colour), which these have and noise has not."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    os.makedirs(directory, exist_ok=True)
    existing = sorted(f for f in os.listdir(directory) if f.endswith(".png"))
    if len(existing) == count:
        return directory
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(count):
        a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        angle = rng.uniform(0, 2 * np.pi)
        t = (np.cos(angle) * xx + np.sin(angle) * yy + 1) / 2
        base = (a[None, None, :] * (1 - t[..., None]) + b[None, None, :] * t[..., None]).astype(np.uint8)
        image = Image.fromarray(base)
        draw = ImageDraw.Draw(image)
        for _ in range(rng.integers(3, 9)):
            x0, y0 = rng.uniform(-0.2, 1.0, 2) * size
            w, h = rng.uniform(0.1, 0.6, 2) * size
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            box = [x0, y0, x0 + w, y0 + h]
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
        texture = rng.normal(0, 24, (size // 8, size // 8, 3))
        texture = np.array(Image.fromarray(np.clip(texture + 128, 0, 255).astype(np.uint8)).resize((size, size), Image.BICUBIC),
                           dtype=np.float32) - 128
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2.5)))
        pixels = np.clip(np.asarray(image, dtype=np.float32) + texture, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(os.path.join(directory, f"img_{i:04d}.png"))
    return directory


def torchvision_batch(paths):
    """torchvision's Resize(256) + CenterCrop(224) + ImageNet normalisation, NCHW float32."""
    import numpy as np
    from PIL import Image

    mean = np.array([0.485, 0.456, 0.406], dtype=np.float32)
    std = np.array([0.229, 0.224, 0.225], dtype=np.float32)
    out = []
    for path in paths:
        image = Image.open(path).convert("RGB")
        w, h = image.size
        scale = 256 / min(w, h)
        image = image.resize((max(224, round(w * scale)), max(224, round(h * scale))), Image.BILINEAR)
        w, h = image.size
        x0, y0 = (w - 224) // 2, (h - 224) // 2
        pixels = np.asarray(image.crop((x0, y0, x0 + 224, y0 + 224)), dtype=np.float32) / 255
        out.append(((pixels - mean) / std).transpose(2, 0, 1))
    return np.stack(out).astype(np.float32)


def quantize_for_onnxruntime(path, calibration_dir):
    """onnxruntime's own int8 model of `path`, calibrated on the same images zoo uses."""
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    target = path.replace(".onnx", ".ort-int8.onnx")
    if os.path.exists(target):
        return target
    prepared = path.replace(".onnx", ".ort-prep.onnx")
    quant_pre_process(path, prepared)
    paths = sorted(os.path.join(calibration_dir, f) for f in os.listdir(calibration_dir) if f.endswith(".png"))

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([torchvision_batch(paths[i:i + 8]) for i in range(0, len(paths), 8)])

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {"input": batch}

    quantize_static(prepared, target, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    os.remove(prepared)
    return target


def ort_agreement(fp32_path, int8_path, eval_dir, threads):
    """Top-1 agreement of onnxruntime's int8 model with its fp32 model on the eval images."""
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    sessions = [ort.InferenceSession(p, options, providers=["CPUExecutionProvider"]) for p in (fp32_path, int8_path)]
    paths = sorted(os.path.join(eval_dir, f) for f in os.listdir(eval_dir) if f.endswith(".png"))
    agree, worst = 0, 0.0
    for i in range(0, len(paths), 8):
        x = torchvision_batch(paths[i:i + 8])
        a, b = (s.run(None, {"input": x})[0] for s in sessions)
        agree += int((a.argmax(1) == b.argmax(1)).sum())
        worst = max(worst, float((np.abs(a - b).max(1) / np.abs(a).max(1)).max()))
    return agree / len(paths), worst


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


CONVOLUTIONS = "winograd"  # zoo's --convolutions (fp32 only: bf16 and int8 always run direct)


def time_zoo(path, batch, threads, iterations, verbose=False, precision="fp32", extra=()):
    """`zoo bench` on the same ONNX file: median and min ms per batch (and, with verbose,
    the per-operator sum from oneDNN's verbose log)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OMP_WAIT_POLICY="active")
    if verbose:
        env["ONEDNN_VERBOSE"] = "1"
    command = [ZOO, "bench", "--weights", path, "--batch", str(batch), "--iterations", str(iterations),
               "--threads", str(threads), "--format", "json", "--precision", precision, "--compare-batches", "2",
               "--convolutions", CONVOLUTIONS, *extra]
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


def combine_rounds(rounds):
    """(median of the rounds' medians, smallest minimum) over several (median, min) timings."""
    return statistics.median(r[0] for r in rounds), min(r[1] for r in rounds)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet18,vgg16,alexnet,googlenet,resnet50")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3,
                        help="fp32 timings alternate between the engines this many times per model and batch")
    parser.add_argument("--per-op", action="store_true",
                        help="also print the load-robust sum of per-operator minimums")
    parser.add_argument("--bf16", action="store_true",
                        help="also time zoo --precision bf16, with its logit error and top-1 agreement against fp32")
    parser.add_argument("--int8", action="store_true",
                        help="also time zoo --precision int8 and onnxruntime's quantize_static model, "
                             "with each one's top-1 agreement against its own fp32 on generated images")
    parser.add_argument("--convolutions", default="winograd", choices=["winograd", "direct"],
                        help="zoo's algorithm for fp32 3x3 stride-1 convolutions")
    parser.add_argument("--onnx-dir", default=os.path.join(tempfile.gettempdir(), "zoo-bench-onnx-pretrained-like"))
    args = parser.parse_args()
    global CONVOLUTIONS
    CONVOLUTIONS = args.convolutions
    models = args.models.split(",")
    batches = [int(b) for b in args.batches.split(",")]
    os.makedirs(args.onnx_dir, exist_ok=True)

    # The two engines take turns, `--rounds` times per model and batch, the order swapped
    # each round: this machine's speed drifts by several percent over minutes, and timing
    # one engine for every model before the other would put that drift into the ratio.
    ort_results, zoo_results = {}, {}
    for arch in models:
        path = export(arch, args.onnx_dir)
        for batch in batches:
            iterations = args.iterations if batch == 1 else max(5, args.iterations // 3)
            ort_rounds, zoo_rounds = [], []
            for round_index in range(args.rounds):
                pair = [lambda: ort_rounds.append(time_onnxruntime(path, batch, args.threads, iterations, warmup=3)),
                        lambda: zoo_rounds.append(time_zoo(path, batch, args.threads, iterations))]
                for run in (pair if round_index % 2 == 0 else reversed(pair)):
                    run()
            ort_results[(arch, batch)] = combine_rounds(ort_rounds)
            zoo_results[(arch, batch)] = combine_rounds(zoo_rounds)

    bf16 = {}
    if args.bf16:
        for arch in models:
            for batch in batches:
                iterations = args.iterations if batch == 1 else max(5, args.iterations // 3)
                bf16[(arch, batch)] = time_zoo(os.path.join(args.onnx_dir, arch + ".onnx"), batch, args.threads,
                                               iterations, precision="bf16")

    int8, ort_int8 = {}, {}
    fallback = "?"  # what zoo computes the blocks it keeps out of int8 in, from its calibration
    if args.int8:
        calibration = make_images(os.path.join(args.onnx_dir, "calibration"), 200, seed=1)
        evaluation = make_images(os.path.join(args.onnx_dir, "evaluation"), 100, seed=2)
        for arch in models:
            path = os.path.join(args.onnx_dir, arch + ".onnx")
            # zoo's default calibration keeps blocks out of int8 until 99% of the calibration
            # images keep their fp32 top-1 class; `--int8-agreement 0` quantizes every block.
            # The scales live beside the weights, so the all-int8 variant reads the same
            # ONNX file through a link of its own.
            all_int8 = os.path.join(args.onnx_dir, arch + ".all-int8.onnx")
            if not os.path.exists(all_int8):
                os.symlink(os.path.basename(path), all_int8)
            variants = {"tuned": (path, []), "all": (all_int8, ["--int8-agreement", "0"])}
            quantized = quantize_for_onnxruntime(path, calibration)
            agreement = ort_agreement(path, quantized, evaluation, args.threads)
            zoo_agreement = {}
            for batch in batches:
                iterations = args.iterations if batch == 1 else max(5, args.iterations // 3)
                timings = collections.defaultdict(list)
                for round_index in range(args.rounds):
                    # Each round times onnxruntime fp32 and int8 and both zoo variants, in
                    # turn: the machine's speed drifts by up to 2x over minutes.
                    for variant, (weights, flags) in variants.items():
                        # Calibrates once (the scales are saved beside the ONNX file); the
                        # agreement on the evaluation images is measured once per model.
                        extra = [] if os.path.exists(weights + ".int8.json") else ["--calibrate", calibration, *flags]
                        if variant not in zoo_agreement:
                            extra += ["--compare-images", evaluation]
                        result = time_zoo(weights, batch, args.threads, iterations, precision="int8", extra=extra)
                        zoo_agreement.setdefault(variant, result[2:])
                        timings[variant].append(result[:2])
                    timings["ort fp32"].append(time_onnxruntime(path, batch, args.threads, iterations, warmup=3))
                    timings["ort int8"].append(time_onnxruntime(quantized, batch, args.threads, iterations, warmup=3))
                row = {}
                for variant, (weights, _) in variants.items():
                    with open(weights + ".int8.json") as handle:
                        tuning = json.load(handle).get("tuning") or {}
                    row[variant] = (combine_rounds(timings[variant]) + zoo_agreement[variant]
                                    + (tuning.get("float_macs", 0.0),))
                    fallback = tuning.get("fallback", fallback)
                int8[(arch, batch)] = (row, combine_rounds(timings["ort fp32"])[0])
                ort_int8[(arch, batch)] = combine_rounds(timings["ort int8"]) + agreement

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
    if args.int8:
        header += (f" {'ort ms*':>9} {'int8 ms':>9} {'int8/ort*':>10} {'top-1':>6} {'not i8':>7}"
                   f" {'all-i8 ms':>10} {'all/ort*':>9} {'top-1':>6}"
                   f" {'ort i8 ms':>10} {'int8/ort i8':>12} {'ort i8 top-1':>13}")
    if args.per_op:
        header += f" {'zoo per-op':>11} {'ort per-op':>11} {'ratio':>6}"
    print(f"threads {args.threads}; median (min) ms per batch; fp32 ({args.convolutions} 3x3 convolutions in zoo): "
          f"median of {args.rounds} alternating rounds; "
          f"load {os.getloadavg()[0]:.2f}")
    if args.int8:
        print("int8: zoo calibrated on 200 generated images (percentile 99.99; 'int8': blocks kept out of int8 "
              f"in {fallback} until 99% of those images keep their fp32 top-1, 'not i8' the share of the "
              "work they hold; 'all-i8': --int8-agreement 0), onnxruntime quantize_static (QDQ, per-channel, MinMax) "
              "on the same; top-1: agreement with own fp32 on 100 other images; "
              "ort ms*: onnxruntime fp32 timed again in turn with the int8 runs; int8 timings: median of "
              f"{args.rounds} rounds")
    print(header)
    for arch in models:
        for batch in batches:
            zoo = zoo_results.get((arch, batch), (float("nan"), float("nan")))
            ort = ort_results[(arch, batch)]
            line = f"{arch:<10} {batch:>5} {zoo[0]:>9.2f} {zoo[1]:>8.2f} {ort[0]:>9.2f} {ort[1]:>8.2f} {zoo[0] / ort[0]:>8.2f}"
            if (arch, batch) in bf16:
                b = bf16[(arch, batch)]
                line += f" {b[0]:>9.2f} {b[0] / ort[0]:>9.2f} {b[2]:>8.1e} {b[3] * 100:>5.0f}%"
            if (arch, batch) in int8:
                (row, ort_fp32), o8 = int8[(arch, batch)], ort_int8[(arch, batch)]
                q, a = row["tuned"], row["all"]
                line += (f" {ort_fp32:>9.2f} {q[0]:>9.2f} {q[0] / ort_fp32:>10.2f} {q[3] * 100:>5.0f}% {q[4] * 100:>6.0f}%"
                         f" {a[0]:>10.2f} {a[0] / ort_fp32:>9.2f} {a[3] * 100:>5.0f}%"
                         f" {o8[0]:>10.2f} {q[0] / o8[0]:>12.2f} {o8[2] * 100:>12.0f}%")
            if (arch, batch) in per_op:
                z, o = per_op[(arch, batch)]
                line += f" {z:>11.2f} {o:>11.2f} {z / o:>6.2f}"
            print(line)


if __name__ == "__main__":
    main()
