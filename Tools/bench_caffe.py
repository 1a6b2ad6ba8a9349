#!/usr/bin/env python3
"""Load speed of a full-size VGG16 caffemodel (V1 layout, 553 MB, random weights made by
Tools/make_caffe_fixtures.py --full-vgg16): `zoo inspect --load` as a whole process against
protobuf's Python parser (NetParameter.ParseFromString, then every blob's data as a float32
numpy array), in one run. Usage: python3 Tools/bench_caffe.py [--zoo .build/release/zoo] [--work DIR]
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--zoo", default=os.path.join(ROOT, ".build", "release", "zoo"))
    parser.add_argument("--work", default=tempfile.gettempdir())
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    path = os.path.join(args.work, "vgg16_full_v1.caffemodel")
    if not os.path.exists(path):
        subprocess.run([sys.executable, os.path.join(HERE, "make_caffe_fixtures.py"), "--full-vgg16", path], check=True)
    sys.path.insert(0, HERE)
    from make_caffe_fixtures import pb  # the classes protoc made from Proto/caffe.proto

    size = os.path.getsize(path)
    with open(path, "rb") as f:  # warm the page cache for both
        f.read()
    zoo, py, parse_only = [], [], []
    for _ in range(args.repeat):
        t = time.perf_counter()
        out = subprocess.run([args.zoo, "inspect", "--load", path], capture_output=True, text=True, check=True).stdout
        zoo.append(time.perf_counter() - t)
        t = time.perf_counter()
        with open(path, "rb") as f:
            msg = pb.NetParameter.FromString(f.read())
        t1 = time.perf_counter()
        arrays = [np.asarray(b.data, dtype=np.float32) for layer in msg.layers for b in layer.blobs]
        py.append(time.perf_counter() - t)
        parse_only.append(t1 - t)
        del msg, arrays
    loaded = [line for line in out.splitlines() if line.startswith("loaded:")]
    print(f"VGG16 caffemodel (V1), {size / 1e6:.0f} MB, protobuf {pb.__name__} runtime "
          f"{__import__('google.protobuf').protobuf.__version__}, best of {args.repeat}:")
    print(f"  zoo inspect --load (whole process): {min(zoo) * 1000:.0f} ms (median {statistics.median(zoo) * 1000:.0f}); {loaded[0] if loaded else ''}")
    print(f"  python protobuf ParseFromString: {min(parse_only) * 1000:.0f} ms; + every blob as numpy float32: {min(py) * 1000:.0f} ms "
          f"(median {statistics.median(py) * 1000:.0f})")


if __name__ == "__main__":
    main()
