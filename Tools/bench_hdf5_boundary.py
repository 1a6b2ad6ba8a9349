#!/usr/bin/env python3
"""The cost of reading HDF5 through the sandboxed worker (ReaderIsolation) against reading it
in process (ZOO_HDF5_IN_PROCESS=1), on VGG16 in both Keras layouts (553 MB), as whole
`zoo inspect` and `zoo inspect --load` processes, alternating the modes run by run: the small
`zoo-hdf5-worker` (the default), `zoo` itself as the worker (ZOO_WORKER=zoo, how it was
before the small worker), and in process; h5py reading every dataset in the same run for
scale. Prints medians.

  python3 Tools/bench_hdf5_boundary.py [--zoo .build/release/zoo] [--runs 15]
"""
import argparse
import os
import pathlib
import statistics
import subprocess
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent


def timed(command, env):
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    return (time.perf_counter() - start) * 1000


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--zoo", default=str(ROOT / ".build" / "release" / "zoo"))
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--dir", default="/tmp")
    args = parser.parse_args()
    files = []
    for name in ["vgg16.h5", "vgg16.weights.h5"]:
        path = pathlib.Path(args.dir) / ("bench_boundary_" + name)
        if not path.exists():
            subprocess.run([args.zoo, "init", "vgg16", str(path)], check=True, stdout=subprocess.DEVNULL)
        files.append(path)
    try:
        import h5py
    except ImportError:
        h5py = None
    small = os.path.join(os.path.dirname(args.zoo), "zoo-hdf5-worker")
    if not os.access(small, os.X_OK):
        raise SystemExit(f"{small} not found: swift build -c release builds it beside zoo")
    modes = {
        "small": {"ZOO_HDF5_IN_PROCESS": "0", "ZOO_WORKER": small},
        "zoo": {"ZOO_HDF5_IN_PROCESS": "0", "ZOO_WORKER": args.zoo},
        "in-process": {"ZOO_HDF5_IN_PROCESS": "1"},
    }
    print(f"{'file':28} {'command':16} {'small worker':>13} {'zoo worker':>11} {'in process':>11} "
          f"{'cost small':>11} {'cost zoo':>9}  (ms, medians)")
    for path in files:
        for load in (False, True):
            command = [args.zoo, "inspect", str(path)] + (["--load"] if load else [])
            times = {mode: [] for mode in modes}
            for _ in range(args.runs):
                for mode, env in modes.items():
                    times[mode].append(timed(command, {**os.environ, **env}))
            m = {mode: statistics.median(values) for mode, values in times.items()}
            print(f"{path.name:28} {'inspect --load' if load else 'inspect':16} {m['small']:13.1f} {m['zoo']:11.1f} "
                  f"{m['in-process']:11.1f} {(m['small'] / m['in-process'] - 1) * 100:+10.1f}% "
                  f"{(m['zoo'] / m['in-process'] - 1) * 100:+8.1f}%")
        if h5py:
            samples = []
            for _ in range(args.runs):
                start = time.perf_counter()
                with h5py.File(path, "r") as f:
                    def read(name, obj):
                        if isinstance(obj, h5py.Dataset):
                            obj[()]
                    f.visititems(read)
                samples.append((time.perf_counter() - start) * 1000)
            print(f"{path.name:28} {'h5py read all':16} {statistics.median(samples):10.1f}  (warm Python, for scale)")


if __name__ == "__main__":
    main()
