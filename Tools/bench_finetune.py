#!/usr/bin/env python3
"""Full-size transfer-learning benchmark: ResNet18 with a new 10-class head.

Makes a few hundred synthetic JPEGs (10 classes of coloured shapes on noise, mixed sizes,
Pillow, no downloads), a randomly initialised torchvision ResNet18 (seeded), saved as
safetensors for zoo and exported without its fc to ONNX for onnxruntime, then:

  * zoo finetune (release build): feature extraction images/s (decode + preprocess + oneDNN
    forward through the frozen backbone) and the head's validation accuracy;
  * onnxruntime on the same images: images/s for the same work (Pillow decode + resize 256 +
    centre crop 224 + normalise, then the backbone), and for the forward pass alone;
  * zoo's cached features against onnxruntime's (they differ only by the image resizer).

Usage: python3 Tools/bench_finetune.py [--zoo .build/release/zoo] [--images-per-class 30]
Needs torch, torchvision, onnxruntime, numpy, pillow, safetensors (Tools/requirements-tools.txt).
"""
import argparse
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np


def make_images(root, per_class, seed):
    from PIL import Image, ImageDraw
    rng = np.random.default_rng(seed)
    palette = [(220, 40, 40), (40, 180, 60), (40, 80, 220), (230, 200, 40), (200, 60, 200),
               (40, 200, 200), (250, 140, 30), (120, 70, 30), (250, 250, 250), (20, 20, 20)]
    paths = []
    for label in range(10):
        for i in range(per_class):
            split = "val" if i % 3 == 2 else "train"
            folder = os.path.join(root, split, f"class{label}")
            os.makedirs(folder, exist_ok=True)
            w, h = int(rng.integers(224, 400)), int(rng.integers(224, 400))
            noise = rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8)
            image = Image.fromarray(noise // 2 + 64)
            draw = ImageDraw.Draw(image)
            colour = tuple(int(np.clip(c + rng.integers(-25, 25), 0, 255)) for c in palette[label])
            cx, cy, r = w * rng.uniform(0.35, 0.65), h * rng.uniform(0.35, 0.65), min(w, h) * rng.uniform(0.2, 0.35)
            box = [cx - r, cy - r, cx + r, cy + r]
            if label % 2 == 0:
                draw.ellipse(box, fill=colour)
            else:
                draw.rectangle(box, fill=colour)
            path = os.path.join(folder, f"img{i:03d}.jpg")
            image.save(path, quality=90)
            paths.append((path, label, split))
    return paths


def make_models(folder, seed):
    import torch
    import torchvision
    from safetensors.torch import save_file
    torch.manual_seed(seed)
    model = torchvision.models.resnet18(weights=None).eval()
    weights = os.path.join(folder, "resnet18_random.safetensors")
    state = {k: v.contiguous() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    save_file(state, weights, metadata={"format": "pt"})
    model.fc = torch.nn.Identity()
    onnx_path = os.path.join(folder, "resnet18_backbone.onnx")
    torch.onnx.export(model, torch.zeros(1, 3, 224, 224), onnx_path, input_names=["input"], output_names=["features"],
                      dynamic_axes={"input": {0: "batch"}, "features": {0: "batch"}}, opset_version=17, dynamo=False)
    return weights, onnx_path


def preprocess(path):
    from PIL import Image
    image = Image.open(path).convert("RGB")
    w, h = image.size
    scale = 256 / min(w, h)
    image = image.resize((max(224, round(w * scale)), max(224, round(h * scale))), Image.BILINEAR)
    w, h = image.size
    left, top = (w - 224) // 2, (h - 224) // 2
    x = np.asarray(image.crop((left, top, left + 224, top + 224)), dtype=np.float32) / 255
    x = (x - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
    return x.transpose(2, 0, 1)


def run_onnxruntime(onnx_path, paths, batch, threads):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
    session.run(None, {"input": np.zeros((batch, 3, 224, 224), np.float32)})  # warm-up
    features, forward_seconds = [], 0.0
    start = time.perf_counter()
    for i in range(0, len(paths), batch):
        x = np.stack([preprocess(p) for p in paths[i:i + batch]])
        t = time.perf_counter()
        features.append(session.run(None, {"input": x})[0])
        forward_seconds += time.perf_counter() - t
    total = time.perf_counter() - start
    return np.concatenate(features), len(paths) / total, len(paths) / forward_seconds


def read_zoo_cache(path):
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"ZOOFEAT1"
    (length,) = struct.unpack("<Q", data[8:16])
    header = json.loads(data[16:16 + length])
    values = np.frombuffer(data[16 + length:], dtype="<f4").reshape(header["count"], header["dimension"])
    return values


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--zoo", default=".build/release/zoo")
    parser.add_argument("--images-per-class", type=int, default=30)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    if not os.path.exists(args.zoo):
        sys.exit(f"{args.zoo} not found: build with `swift build -c release` or pass --zoo")

    work = tempfile.mkdtemp(prefix="zoo-bench-finetune-")
    data = os.path.join(work, "data")
    samples = make_images(data, args.images_per_class, seed=0)
    weights, onnx_path = make_models(work, seed=0)
    print(f"{len(samples)} synthetic JPEGs (224-400 px, 10 classes) in {data}")

    out = os.path.join(work, "resnet18_10class.safetensors")
    command = [args.zoo, "finetune", "--weights", weights, "--data", data, "--out", out, "--epochs", str(args.epochs),
               "--threads", str(args.threads), "--lr", "0.01"]
    start = time.perf_counter()
    run = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if run.returncode != 0:
        sys.exit(run.stdout + run.stderr)
    log = run.stdout
    zoo_rate = float(re.search(r"extracted features of \d+ images: ([\d.]+) img/s", log).group(1))
    best = re.search(r"best epoch (\d+), val ([\d.]+)%", log)
    bench = subprocess.run([args.zoo, "bench", "--weights", weights, "--batch", str(args.batch), "--threads",
                            str(args.threads), "--format", "json"], capture_output=True, text=True)
    zoo_forward = json.loads(bench.stdout)["images_per_second"] if bench.returncode == 0 else float("nan")

    # zoo extracts train images first, then val, each sorted by path: the same order here.
    ordered = sorted([s for s in samples if s[2] == "train"]) + sorted([s for s in samples if s[2] == "val"])
    ort_features, ort_rate, ort_forward = run_onnxruntime(onnx_path, [p for p, _, _ in ordered], args.batch, args.threads)
    caches = [f for f in os.listdir(work) if ".features-" in f]
    agreement = ""
    if caches:
        zoo_features = read_zoo_cache(os.path.join(work, caches[0]))
        cos = np.sum(zoo_features * ort_features, 1) / (
            np.linalg.norm(zoo_features, axis=1) * np.linalg.norm(ort_features, axis=1) + 1e-12)
        agreement = f"zoo vs onnxruntime features: mean cosine similarity {cos.mean():.4f} (min {cos.min():.4f})"

    print(f"zoo finetune ({args.threads} threads, whole run {wall:.1f} s, {args.epochs} epochs):")
    for line in log.splitlines():
        if line.startswith(("features:", "extracted", "best")) or line.startswith(f"epoch {args.epochs}/"):
            print("  " + line)
    print(f"feature extraction, images/s (decode + preprocess + backbone, batch {args.batch}, {args.threads} threads):")
    print(f"  zoo (oneDNN)   {zoo_rate:8.1f}")
    print(f"  onnxruntime    {ort_rate:8.1f}   (Pillow preprocessing)")
    print(f"forward pass only, images/s:")
    print(f"  zoo bench      {zoo_forward:8.1f}   (whole ResNet18, random input)")
    print(f"  onnxruntime    {ort_forward:8.1f}   (backbone)")
    if agreement:
        print(agreement)
    if best:
        print(f"new 10-class head: best epoch {best.group(1)}, val accuracy {best.group(2)}%")


if __name__ == "__main__":
    main()
