#!/usr/bin/env python3
"""Reading a full-size VGG16 `.pth` (about 553 MB, random weights from torchvision, made once
into a cache folder, never committed): `zoo inspect FILE --load` as a whole process (start,
parse the pickle, read every tensor as float32, print) against `torch.load(weights_only=True)`
in a Python that has already imported torch, both in one run, for the zip layout and the
legacy layout. Also the time `zoo convert` takes to write one (CRC-32 and all).

Needs torch and torchvision (CI does not run this).

Usage:  swift build -c release --product zoo && python3 Tools/bench_pth.py [--runs 5]
"""
import argparse
import os
import pathlib
import re
import subprocess
import sys
import time

import torch
import torchvision

ROOT = pathlib.Path(__file__).resolve().parent.parent
ZOO = ROOT / ".build" / "release" / "zoo"
CACHE = pathlib.Path(os.environ.get("ZOO_BENCH_CACHE", "/tmp/zoo-bench"))


def make_files():
    CACHE.mkdir(parents=True, exist_ok=True)
    zip_path, legacy_path = CACHE / "vgg16.pth", CACHE / "vgg16_legacy.pth"
    if not zip_path.exists() or not legacy_path.exists():
        torch.manual_seed(0)
        state = torchvision.models.vgg16(weights=None).state_dict()
        torch.save(state, zip_path)
        torch.save(state, legacy_path, _use_new_zipfile_serialization=False)
    return zip_path, legacy_path


def zoo_load(path):
    """Wall time of the whole `zoo inspect --load` process and the load time it reports."""
    start = time.perf_counter()
    out = subprocess.run([str(ZOO), "inspect", str(path), "--load"], capture_output=True, text=True)
    wall = (time.perf_counter() - start) * 1000
    if out.returncode != 0:
        sys.exit(f"zoo inspect {path}: exit {out.returncode}: {out.stderr}")
    match = re.search(r"loaded: .* in ([0-9.]+) ms", out.stdout)
    return wall, float(match.group(1)) if match else float("nan")


def torch_load(path):
    start = time.perf_counter()
    state = torch.load(path, weights_only=True)
    # torch.load reads every storage into memory already (no mmap by default): touch
    # nothing more, but keep the result alive until timed.
    elapsed = (time.perf_counter() - start) * 1000
    assert len(state) == 32
    return elapsed


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if not ZOO.exists():
        sys.exit(f"{ZOO} is missing: swift build -c release --product zoo")
    zip_path, legacy_path = make_files()
    print(f"VGG16 state_dict, {zip_path.stat().st_size / 1e6:.0f} MB; best of {args.runs} warm runs, "
          f"torch {torch.__version__}, {torch.get_num_threads()} torch threads")
    print(f"{'layout':8} {'zoo inspect --load (process)':>30} {'(zoo load alone)':>18} {'torch.load weights_only':>25}")
    for name, path in [("zip", zip_path), ("legacy", legacy_path)]:
        zoo_load(path), torch_load(path)  # warm the page cache
        zoo_runs = [zoo_load(path) for _ in range(args.runs)]
        torch_runs = [torch_load(path) for _ in range(args.runs)]
        print(f"{name:8} {min(w for w, _ in zoo_runs):>27.0f} ms {min(l for _, l in zoo_runs):>15.0f} ms "
              f"{min(torch_runs):>22.0f} ms")
    out = CACHE / "vgg16_written.pth"
    start = time.perf_counter()
    result = subprocess.run([str(ZOO), "convert", str(zip_path), str(out), "--arch", "vgg16", "--force"],
                            capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"zoo convert: {result.stderr}")
    convert_ms = (time.perf_counter() - start) * 1000
    start = time.perf_counter()
    torch.save(torch.load(zip_path, weights_only=True), CACHE / "vgg16_torch_resaved.pth")
    resave_ms = (time.perf_counter() - start) * 1000
    print(f"write: zoo convert .pth -> .pth {convert_ms:.0f} ms (whole process, verify included); "
          f"torch.load + torch.save {resave_ms:.0f} ms")


if __name__ == "__main__":
    main()
