#!/usr/bin/env python3
"""Training speed beside torch: ResNet18 at 224, layer4 + the head trained (`--train-last 2`),
batch 32, images per second of forward + backward + SGD update on cached layer3 features.

zoo: `zoo finetune --train-last 2 --optimizer sgd` on synthetic JPEGs (Tools/bench_finetune.py's
images, a seeded random torchvision ResNet18); its per-epoch "img/s" covers exactly the
training steps (features come from the cache), and the first epoch (which also compiles the
primitives) is left out. torch: the same layers (layer4 + fc of torchvision's ResNet18, eval
mode so BatchNorm uses its running statistics as zoo's frozen default does), SGD with momentum
0.9 and weight decay 1e-4, on random layer3-shaped features, same thread count, same run.

Usage: python3 Tools/bench_train.py [--zoo .build/release/zoo] [--threads 2] [--epochs 4]
Needs torch, torchvision, numpy, pillow, safetensors (Tools/requirements-tools.txt).
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_finetune import make_images  # noqa: E402


def torch_rate(threads, batch, steps):
    import torch
    import torchvision
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    tail = torch.nn.Sequential(model.layer4, model.avgpool, torch.nn.Flatten(), model.fc)
    params = list(tail.parameters())
    decay = [p for p in params if p.dim() > 1]
    no_decay = [p for p in params if p.dim() <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": 1e-4}, {"params": no_decay, "weight_decay": 0}],
                          lr=0.01, momentum=0.9)
    features = torch.relu(torch.randn(batch * 4, 256, 14, 14))
    labels = torch.randint(0, 10, (batch * 4,))

    def step(i):
        rows = slice((i % 4) * batch, (i % 4 + 1) * batch)
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(tail(features[rows]), labels[rows])
        loss.backward()
        opt.step()

    for i in range(3):
        step(i)
    start = time.perf_counter()
    for i in range(steps):
        step(i)
    return steps * batch / (time.perf_counter() - start)


def zoo_rate(zoo, threads, batch, epochs, images_per_class):
    import torch
    import torchvision
    from safetensors.torch import save_file
    work = tempfile.mkdtemp(prefix="zoo-bench-train-")
    data = os.path.join(work, "data")
    samples = make_images(data, images_per_class, seed=0)
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    weights = os.path.join(work, "resnet18_random.safetensors")
    save_file({k: v.contiguous() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")},
              weights, metadata={"format": "pt"})
    out = os.path.join(work, "out.safetensors")
    command = [zoo, "finetune", "--weights", weights, "--data", data, "--out", out, "--train-last", "2",
               "--optimizer", "sgd", "--epochs", str(epochs), "--batch", str(batch), "--threads", str(threads)]
    run = subprocess.run(command, capture_output=True, text=True)
    shutil.rmtree(work, ignore_errors=True)
    if run.returncode != 0:
        sys.exit(run.stdout + run.stderr)
    rates = [float(r) for r in re.findall(r"epoch \d+/\d+ .* ([\d.]+) img/s", run.stdout)]
    train_rows = sum(1 for s in samples if s[2] == "train")
    return rates, train_rows, run.stdout


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--zoo", default=".build/release/zoo")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--images-per-class", type=int, default=20)
    parser.add_argument("--torch-steps", type=int, default=12)
    args = parser.parse_args()
    if not os.path.exists(args.zoo):
        sys.exit(f"{args.zoo} not found: build with `swift build -c release` or pass --zoo")
    rates, rows, log = zoo_rate(args.zoo, args.threads, args.batch, args.epochs, args.images_per_class)
    if len(rates) < 2:
        sys.exit("no epoch lines in zoo's output:\n" + log)
    ours = statistics.median(rates[1:])
    theirs = torch_rate(args.threads, args.batch, args.torch_steps)
    print(f"ResNet18 at 224, layer4 + fc trained, batch {args.batch}, {args.threads} threads "
          f"(forward + backward + SGD update on cached layer3 features), images/s:")
    print(f"  zoo (oneDNN backward)  {ours:8.1f}   (median of epochs 2-{len(rates)}, {rows} training images each)")
    print(f"  torch {__import__('torch').__version__:<16} {theirs:8.1f}")
    print(f"  zoo / torch            {ours / theirs:8.2f}")


if __name__ == "__main__":
    main()
