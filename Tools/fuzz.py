#!/usr/bin/env python3
"""Mutational fuzzing of zoo's readers (ONNX, HDF5, Keras .keras, safetensors, npy, PyTorch .pth, Caffe).

Mutates the committed fixtures (bit flips, interesting integers, chunk deletion and
duplication, truncation, splices) and, per format, their structure (safetensors and npy
headers as JSON/dict fields, ONNX dims, types and external-data entries through the onnx
package, HDF5 object headers and heaps by concentrating mutations on the file's metadata,
.pth pickles re-zipped with valid CRCs). Every file goes through what `zoo inspect --load`
and `zoo verify` do (`zoo fuzz-batch`, many files per process, one JSON line each), under an
address-space limit and a per-file time limit.

A finding is: the process killed by a signal, a file taking longer than --hang-seconds, an
exit status other than 0/1/2, an error message spanning lines or carrying control bytes, or
a contained libhdf5 failure (the sandboxed worker crashed or ran out of time: zoo reported
it, but the file is a crash class worth keeping). Each new finding class is minimised
(mutated bytes reverted one group at a time while the finding persists) and, with --keep,
saved under Fixtures/fuzz/ (a contained libhdf5 crash once per crashing libhdf5 function,
found with gdb) with its expected exit status and message in
Fixtures/fuzz/expected.json, which FuzzRegressionTests replays.

  python3 Tools/fuzz.py --seconds 60 --seed 1            # the short pass CI runs
  python3 Tools/fuzz.py --executions 100000 --reader hdf5 --keep   # a long campaign
"""
import argparse
import hashlib
import io
import json
import os
import pathlib
import random
import re
import resource
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zipfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "Fixtures"
FINDINGS = FIXTURES / "fuzz"

SEEDS = {
    "hdf5": ["hdf5/keras2_full.h5", "hdf5/keras3_legacy_full.h5", "hdf5/small_cnn.weights.h5",
             "hdf5/keras2_weights_vlen.h5", "hdf5/keras2_weights_fixed.h5", "hdf5/keras2_weights_chunked_attrs.h5",
             "hdf5/deep12.weights.h5", "hdf5/plain.h5", "hdf5/mixed_types.h5", "hdf5/huge_dims.h5",
             "lenet/lenet5_digits.h5", "lenet/lenet5_digits.weights.h5"],
    "onnx": ["onnx/tiny_conv_raw.onnx", "onnx/tiny_conv_typed.onnx", "onnx/tiny_float16.onnx",
             "onnx/tiny_bfloat16.onnx", "onnx/external_ok.onnx", "lenet/lenet5_digits.onnx"],
    "safetensors": ["safetensors/model.safetensors", "safetensors/bf16.safetensors", "lenet/lenet5_digits.safetensors"],
    "npy": ["npy/f4_2d.npy", "npy/f2.npy", "npy/f8.npy", "npy/be_f4.npy", "npy/fortran.npy", "npy/v2.npy",
            "npy/v3.npy", "npy/scalar.npy", "npy/vec3.npy"],
    "keras": ["keras/lenet5_digits.keras"],
    "caffe": ["caffe/alexnet_w8_v1.caffemodel", "caffe/googlenet_w16_v2.caffemodel", "caffe/resnet50_w2_v2.caffemodel",
              "caffe/cycle.caffemodel", "caffe/unknown_v1_type.caffemodel"],
    # Made at startup by craft_hdf5_seeds (h5py): a virtual dataset, big old-style groups,
    # dense attribute storage; mutated inside their B-trees, heaps and object headers.
    "hdf5-crafted": [],
    "pth": ["pth/resnet18w2.pth", "pth/resnet18w2_legacy.pth", "pth/resnet18w2_checkpoint.pth", "pth/lenet5_digits.pth"],
}
EXTENSIONS = {"hdf5-crafted": ".h5", "keras": ".keras", "caffe": ".caffemodel", "hdf5": ".h5", "onnx": ".onnx", "safetensors": ".safetensors", "npy": ".npy", "pth": ".pth"}
INTERESTING = [0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF,
               1 << 32, 1 << 40, (1 << 63) - 1, 1 << 63, (1 << 64) - 1]
CONTAINED = re.compile(r"the HDF5 library (failed on this file|spent over|did not finish)|the HDF5 worker")


# ---------------------------------------------------------------- mutators

def mutate_bytes(data: bytearray, rng: random.Random, focus: int = 0) -> bytearray:
    """Generic byte-level mutations; `focus` > 0 puts most of them in the first `focus` bytes."""
    def position(extra=0):
        limit = len(data) - extra
        if limit <= 0:
            return 0
        if focus and rng.random() < 0.8:
            return rng.randrange(min(focus, limit))
        return rng.randrange(limit)

    for _ in range(rng.choice([1, 1, 1, 2, 3, 5, 8])):
        if not data:
            data = bytearray(rng.randbytes(rng.randrange(1, 64)))
        kind = rng.randrange(9)
        if kind == 0:
            i = position()
            data[i] ^= 1 << rng.randrange(8)
        elif kind == 1:
            i = position()
            data[i] = rng.choice([0, 0xFF, 0x7F, 0x80, 1, rng.randrange(256)])
        elif kind in (2, 3):
            width = rng.choice([2, 4, 8])
            if len(data) >= width:
                i = position(width)
                value = rng.choice(INTERESTING) & ((1 << (8 * width)) - 1)
                data[i:i + width] = value.to_bytes(width, rng.choice(["little", "big"]))
        elif kind == 4 and len(data) > 8:
            i = position(1)
            n = rng.randrange(1, min(256, len(data) - i) + 1)
            del data[i:i + n]
        elif kind == 5 and len(data) > 8:
            i = position(1)
            n = rng.randrange(1, min(256, len(data) - i) + 1)
            data[i:i] = data[i:i + n]
        elif kind == 6:
            del data[rng.randrange(len(data)):]
        elif kind == 7:
            i = position()
            data[i:i] = rng.randbytes(rng.randrange(1, 32))
        else:
            i = position()
            n = rng.randrange(1, 16)
            data[i:i + n] = bytes([rng.randrange(256)]) * n
    return data


def mutate_safetensors(data: bytes, rng: random.Random) -> bytes:
    if len(data) < 8:
        return bytes(mutate_bytes(bytearray(data), rng))
    length = int.from_bytes(data[:8], "little")
    try:
        header = json.loads(data[8:8 + length])
    except Exception:
        return bytes(mutate_bytes(bytearray(data), rng, focus=64))
    names = [k for k in header if k != "__metadata__"]
    if not names or rng.random() < 0.3:
        return bytes(mutate_bytes(bytearray(data), rng, focus=8 + length))
    entry = header[rng.choice(names)]
    field = rng.choice(["shape", "dtype", "data_offsets", "junk"])
    if field == "shape":
        entry["shape"] = [rng.choice([0, 1, -1, 3, 1 << 31, 1 << 40, (1 << 63) - 1]) for _ in range(rng.randrange(0, 5))]
    elif field == "dtype":
        entry["dtype"] = rng.choice(["F32", "F16", "BF16", "F64", "I64", "U8", "BOOL", "F8_E4M3", "X", ""])
    elif field == "data_offsets":
        entry["data_offsets"] = [rng.choice([0, 4, -1, 1 << 40, len(data)]) for _ in range(rng.choice([1, 2, 2, 3]))]
    else:
        entry[rng.choice(["extra", "shape"])] = {"nested": [1, {"a": None}]}
    body = json.dumps(header).encode()
    if rng.random() < 0.1:
        body = body.replace(b'"', b'"\x07', 1)
    return len(body).to_bytes(8, "little") + body + data[8 + length:]


def mutate_npy(data: bytes, rng: random.Random) -> bytes:
    if len(data) < 10 or rng.random() < 0.3:
        return bytes(mutate_bytes(bytearray(data), rng, focus=128))
    major = data[6]
    size_bytes = 2 if major == 1 else 4
    length = int.from_bytes(data[8:8 + size_bytes], "little")
    header = data[8 + size_bytes:8 + size_bytes + length].decode("latin-1")
    replacements = [
        (r"'shape': \([^)]*\)", "'shape': (%s)" % ", ".join(str(rng.choice([0, 1, -2, 5, 1 << 31, 1 << 62])) for _ in range(rng.randrange(0, 4))) + ("," if rng.random() < 0.5 else "")),
        (r"'descr': '[^']*'", "'descr': '%s'" % rng.choice(["<f4", ">f8", "|b1", "<c8", "O", "<U3", "<f2", "x", "<f16"])),
        (r"'fortran_order': \w+", "'fortran_order': %s" % rng.choice(["True", "False", "1", "None"])),
        (r"\}", rng.choice(["}", "\n}", "\x00}", ", 'x': [" * 50 + "}"])),
    ]
    pattern, value = rng.choice(replacements)
    header = re.sub(pattern, value, header, count=1)
    encoded = header.encode("latin-1")
    if rng.random() < 0.8:
        return data[:8] + len(encoded).to_bytes(size_bytes, "little") + encoded + data[8 + size_bytes + length:]
    return data[:8 + size_bytes] + encoded + data[8 + size_bytes + length:]


def mutate_onnx(data: bytes, rng: random.Random) -> bytes:
    try:
        import onnx
        model = onnx.ModelProto()
        model.ParseFromString(data)
    except Exception:
        return bytes(mutate_bytes(bytearray(data), rng))
    tensors = list(model.graph.initializer)
    if not tensors or rng.random() < 0.3:
        return bytes(mutate_bytes(bytearray(data), rng))
    t = rng.choice(tensors)
    kind = rng.randrange(6)
    if kind == 0 and t.dims:
        t.dims[rng.randrange(len(t.dims))] = rng.choice([0, -1, 1 << 31, 1 << 40, (1 << 63) - 1, 7])
    elif kind == 1:
        t.data_type = rng.choice([0, 1, 2, 7, 8, 10, 11, 16, 17, 99])
    elif kind == 2:
        t.raw_data = t.raw_data[:rng.randrange(len(t.raw_data) + 1)] if t.raw_data else rng.randbytes(rng.randrange(64))
    elif kind == 3:
        t.data_location = 1
        del t.external_data[:]
        for key, value in [("location", rng.choice(["x.bin", "../x", "/dev/zero", "/etc/passwd", "external_ok.bin", "\x01"])),
                           ("offset", str(rng.choice([0, -1, 1 << 40]))), ("length", str(rng.choice([0, 4, 1 << 40])))]:
            if rng.random() < 0.8:
                entry = t.external_data.add()
                entry.key, entry.value = key, value
    elif kind == 4 and model.graph.node:
        node = rng.choice(model.graph.node)
        if node.input:
            node.input[rng.randrange(len(node.input))] = rng.choice([t.name, "", "missing", node.output[0] if node.output else "x"])
    else:
        t.name = rng.choice(["", "a\nb", "\x1b[31m", t.name * 50, "onnx::Conv_1"])
    out = model.SerializeToString()
    return bytes(mutate_bytes(bytearray(out), rng)) if rng.random() < 0.2 else out


def mutate_zip_entry(data: bytes, rng: random.Random, suffix: str, focus_of, deflate: float) -> bytes:
    """One entry of a zip archive mutated (the one ending in `suffix`, sometimes any) and the
    archive rebuilt with valid CRCs, so the reader gets past the zip layer; sometimes the
    zip itself is mutated instead."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        entries = [(info.filename, archive.read(info.filename)) for info in archive.infolist()]
    except Exception:
        return bytes(mutate_bytes(bytearray(data), rng))
    if not entries or rng.random() < 0.25:
        return bytes(mutate_bytes(bytearray(data), rng, focus=len(data)))
    index = next((i for i, (name, _) in enumerate(entries) if name.endswith(suffix)), 0)
    if rng.random() < 0.25:
        index = rng.randrange(len(entries))
    name, body = entries[index]
    focus = focus_of(body) if name.endswith(suffix) else 0
    entries[index] = (name, bytes(mutate_bytes(bytearray(body), rng, focus=focus)))
    out = io.BytesIO()
    compression = zipfile.ZIP_DEFLATED if rng.random() < deflate else zipfile.ZIP_STORED
    with zipfile.ZipFile(out, "w", compression) as z:
        for n, b in entries:
            z.writestr(n, b)
    return out.getvalue()


def mutate_pth(data: bytes, rng: random.Random) -> bytes:
    """torch.save's zip with its data.pkl (the pickle) mutated."""
    return mutate_zip_entry(data, rng, "data.pkl", lambda body: 0, deflate=0)


def mutate_keras(data: bytes, rng: random.Random) -> bytes:
    """A .keras archive with its weights HDF5 mutated, re-zipped stored as Keras writes it,
    sometimes deflated."""
    return mutate_zip_entry(data, rng, ".h5", hdf5_metadata_focus, deflate=0.1)


def hdf5_metadata_focus(data: bytes) -> int:
    # Object headers, B-trees, heaps and attributes sit before and between the raw data in
    # these small files; the first 6 KiB hold most of them.
    return min(len(data), 6144)


# ---------------------------------------------------------------- structure-aware HDF5

def craft_hdf5_seeds(work: pathlib.Path) -> list:
    """Keras-like HDF5 files that reach the parts of libhdf5 the committed fixtures do not:
    a weight stored as a virtual dataset (its layout message points into the global heap,
    where the source selections are serialised), layer groups with enough links for a
    symbol-table B-tree of several nodes (libver earliest: TREE, HEAP, SNOD), and objects
    with dense attribute and link storage (libver latest: fractal heaps, v2 B-trees)."""
    import h5py
    import numpy as np
    rng = np.random.default_rng(7)
    paths = []

    def keras_root(f, layers):
        f.attrs["layer_names"] = np.array([n.encode() for n in layers])
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.4.0"

    def weights(group, name, values):
        names = []
        for key, value in values:
            group.create_dataset(f"{name}/{key}:0", data=value)
            names.append(f"{name}/{key}:0".encode())
        group.attrs["weight_names"] = np.array(names)

    path = work / "crafted-vds.h5"
    with h5py.File(path, "w") as f:
        keras_root(f, ["conv2d", "dense"])
        weights(f.create_group("conv2d"), "conv2d", [("kernel", rng.normal(0, 0.1, (3, 3, 1, 4)).astype("f4")),
                                                     ("bias", rng.normal(0, 0.1, 4).astype("f4"))])
        dense = f.create_group("dense")
        src = f.create_group("sources")
        a = src.create_dataset("a", data=rng.normal(0, 0.1, (8, 10)).astype("f4"))
        b = src.create_dataset("b", data=rng.normal(0, 0.1, (8, 10)).astype("f4"))
        layout = h5py.VirtualLayout(shape=(16, 10), dtype="f4")
        layout[0:16:2, :] = h5py.VirtualSource(a)
        layout[1:16:2, :] = h5py.VirtualSource(b)
        dense.create_virtual_dataset("dense/kernel:0", layout, fillvalue=0.5)
        bias = h5py.VirtualLayout(shape=(10,), dtype="f4")
        bias[0:5] = h5py.VirtualSource(".", "sources/a", shape=(8, 10))[0, 0:5]
        bias[5:10] = h5py.VirtualSource(".", "sources/b", shape=(8, 10))[1, 0:10:2]
        dense.create_virtual_dataset("dense/bias:0", bias)
        dense.attrs["weight_names"] = np.array([b"dense/kernel:0", b"dense/bias:0"])
    paths.append(path)

    path = work / "crafted-stab.h5"
    with h5py.File(path, "w", libver="earliest") as f:
        names = [f"dense_{i}" for i in range(40)]
        keras_root(f, names + ["wide"])
        for name in names:
            weights(f.create_group(name), name, [("kernel", rng.normal(0, 0.1, (2, 2)).astype("f4")),
                                                 ("bias", rng.normal(0, 0.1, 2).astype("f4"))])
        wide = f.create_group("wide")
        shared = wide.create_dataset("wide/kernel:0", data=rng.normal(0, 0.1, (2, 3)).astype("f4"))
        # Hard links to one dataset: a group B-tree two levels deep for the cost of one object.
        for i in range(300):
            wide[f"alias_{i:03d}"] = shared
        wide.attrs["weight_names"] = np.array([b"wide/kernel:0"])
    paths.append(path)

    path = work / "crafted-dense.h5"
    with h5py.File(path, "w", libver="latest") as f:
        keras_root(f, ["conv2d", "dense"])
        conv = f.create_group("conv2d", track_order=True)
        weights(conv, "conv2d", [("kernel", rng.normal(0, 0.1, (3, 3, 2, 2)).astype("f4")),
                                 ("bias", rng.normal(0, 0.1, 2).astype("f4"))])
        for i in range(20):
            conv.attrs[f"note_{i}"] = rng.normal(0, 1, 4).astype("f4")
        dense = f.create_group("dense")
        for i in range(30):
            dense.create_group(f"slot_{i}")
        weights(dense, "dense", [("kernel", rng.normal(0, 0.1, (4, 3)).astype("f4"))])
        kernel = dense["dense/kernel:0"]
        for i in range(20):
            kernel.attrs[f"a{i}"] = np.float32(i)
    paths.append(path)

    # A full model.save layout (root model_weights, old-style groups) with enough root links
    # for a B-tree of several symbol nodes: the reader's first lookup by name in the root
    # (H5Gopen2 on model_weights) searches the B-tree by its keys, which listing the root
    # (H5Literate) never compares.
    path = work / "crafted-model.h5"
    with h5py.File(path, "w", libver="earliest") as f:
        f.attrs["model_config"] = b'{"class_name": "Sequential", "config": {"name": "sequential", "layers": []}}'
        f.attrs["keras_version"] = b"2.4.0"
        f.attrs["backend"] = b"tensorflow"
        weights_group = f.create_group("model_weights")
        weights_group.attrs["layer_names"] = np.array([b"dense", b"dense_1"])
        for name in ["dense", "dense_1"]:
            weights(weights_group.create_group(name), name, [("kernel", rng.normal(0, 0.1, (3, 2)).astype("f4")),
                                                             ("bias", rng.normal(0, 0.1, 2).astype("f4"))])
        extra = f.create_dataset("extra", data=np.float32([1.5]))
        for i in range(40):
            f[f"extra_{i:02d}"] = extra
    paths.append(path)

    # Keras 3's .weights.h5 layout: the reader's first lookup by name in the root is
    # H5Oget_info_by_name2 on `layers` (is it a group?), so a root B-tree and symbol nodes
    # corrupted for lookups (not for listing) fail inside that call.
    path = work / "crafted-keras3.h5"
    with h5py.File(path, "w", libver="earliest") as f:
        for name in ["dense", "dense_1"]:
            group = f.create_group(f"layers/{name}/vars")
            group.attrs["name"] = name.encode()
            group.create_dataset("0", data=rng.normal(0, 0.1, (3, 2)).astype("f4"))
            group.create_dataset("1", data=rng.normal(0, 0.1, 2).astype("f4"))
        f.create_group("vars")
        f.create_group("optimizer/vars").create_dataset("0", data=np.int64([3]))
        extra = f.create_dataset("extra", data=np.float32([1.5]))
        for i in range(40):
            f[f"extra_{i:02d}"] = extra
    paths.append(path)

    # Keras 3 layout again, now for H5Oget_info_by_name2 itself. The root's header is loaded
    # by H5Fopen; every other object's header is first loaded by that call: the reader asks
    # whether `layers` and `vars` are groups before it opens them, and its walk asks each
    # child's type (H5Oget_info_by_name2) before H5Gopen2, H5Aexists or H5Dopen2 touch it
    # (H5Lexists and H5Lget_info only read the parent's links). H5O_protect decodes the
    # header prefix, every message header and the continuation messages, and loads the
    # chunks they point to; attributes added after the objects exist make `layers`, `vars`
    # and a dataset continue in a dozen chunks each, scattered between the others' chunks.
    path = work / "crafted-oinfo.h5"
    with h5py.File(path, "w", libver="earliest") as f:
        layers = f.create_group("layers")
        for name in ["dense", "dense_1"]:
            group = layers.create_group(f"{name}/vars")
            group.attrs["name"] = name.encode()
            group.create_dataset("0", data=rng.normal(0, 0.1, (3, 2)).astype("f4"))
            group.create_dataset("1", data=rng.normal(0, 0.1, 2).astype("f4"))
        f.create_group("vars")
        for i in range(12):
            for target in [layers, f["vars"], f["layers/dense/vars/0"]]:
                target.attrs[f"note_{i:02d}"] = rng.normal(0, 1, 24).astype("f4")
    paths.append(path)
    return paths


MESSAGE_NAMES = {0x0: "nil", 0x1: "dataspace", 0x2: "linfo", 0x3: "datatype", 0x5: "fill", 0x6: "link",
                 0x8: "layout", 0xA: "ginfo", 0xB: "filters", 0xC: "attribute", 0x10: "continuation",
                 0x11: "stab", 0x12: "mtime", 0x15: "ainfo"}


def hdf5_regions(path: pathlib.Path) -> list:
    """(kind, start, length) of the metadata structures in a file: group B-tree nodes, local
    heaps and their data, symbol nodes, global heap collections, v2 object headers and v2
    B-tree/fractal-heap blocks by signature; v1 object headers and every message body by
    walking the headers of the objects h5py finds."""
    import h5py
    data = path.read_bytes()
    regions = []
    for signature, fixed in [(b"TREE", 544), (b"SNOD", 328), (b"HEAP", 32), (b"GCOL", 0), (b"OHDR", 0),
                             (b"BTHD", 0), (b"BTIN", 0), (b"BTLF", 0), (b"FRHP", 0), (b"FHDB", 0), (b"FHIB", 0)]:
        for match in re.finditer(re.escape(signature), data):
            at = match.start()
            length = fixed
            if signature == b"GCOL" and at + 16 <= len(data):
                length = int.from_bytes(data[at + 8:at + 16], "little")
            if signature == b"HEAP" and at + 32 <= len(data):
                size = int.from_bytes(data[at + 8:at + 16], "little")
                start = int.from_bytes(data[at + 24:at + 32], "little")
                if 0 < start < len(data):
                    regions.append(("HEAP-data", start, min(size, len(data) - start)))
            if not length:
                length = 256
            regions.append((signature.decode(), at, min(length, len(data) - at)))
    addresses = set()
    with h5py.File(path, "r") as f:
        addresses.add(h5py.h5o.get_info(f.id).addr if hasattr(h5py.h5o.get_info(f.id), "addr") else None)
        addresses.add(h5py.h5o.get_info(f["/"].id).addr)
        def visit(name, obj):
            addresses.add(h5py.h5o.get_info(obj.id).addr)
        f.visititems(visit)
        root = h5py.h5o.get_info(f["/"].id).addr
    for address in sorted(a for a in addresses if a):
        if address + 16 > len(data) or data[address] != 1:
            continue  # a v2 header, found by its OHDR signature above
        size = int.from_bytes(data[address + 8:address + 12], "little")
        regions.append(("ohdr-prefix", address, 16))
        # A header other than the root's that continues elsewhere: what H5O_protect decodes
        # when H5Oget_info_by_name2 is the first call to load it (see the oinfo craft).
        continued = []
        blocks = [(address + 16, size)]
        while blocks:
            at, left = blocks.pop()
            end = min(at + left, len(data))
            while at + 8 <= end:
                kind = int.from_bytes(data[at:at + 2], "little")
                length = int.from_bytes(data[at + 2:at + 4], "little")
                regions.append(("message-header", at, 8))
                body = at + 8
                if length:
                    regions.append((MESSAGE_NAMES.get(kind, f"message-{kind:#x}"), body, min(length, end - body)))
                if kind == 0x10 and body + 16 <= len(data):
                    chunk = (int.from_bytes(data[body:body + 8], "little"), int.from_bytes(data[body + 8:body + 16], "little"))
                    if chunk[0] < len(data) and len(continued) < 4096:
                        blocks.append(chunk)
                        continued += [("oinfo-continuation", at, 8 + min(length, 16)),
                                      ("oinfo-chunk", chunk[0], min(chunk[1], len(data) - chunk[0]))]
                at = body + length
        if continued and address != root:
            regions += [("oinfo-prefix", address, 16)] + continued
    return [r for r in regions if r[2] > 0]


# `--region oinfo`: the headers H5Oget_info_by_name2 loads first, with their continuations.
REGION_GROUPS = {"oinfo": ["oinfo-prefix", "oinfo-continuation", "oinfo-chunk"]}


def mutate_in_regions(seed: bytes, regions: list, rng: random.Random) -> bytes:
    """A few small edits inside one or two metadata structures: bits, interesting integers
    at aligned offsets, small deltas to lengths and addresses, 8-byte fields swapped with
    another structure of the same kind."""
    data = bytearray(seed)
    for _ in range(rng.choice([1, 1, 1, 2])):
        kind, start, length = rng.choice(regions)
        for _ in range(rng.choice([1, 1, 2, 3])):
            op = rng.randrange(5)
            if op == 0:
                i = start + rng.randrange(length)
                data[i] ^= 1 << rng.randrange(8)
            elif op == 1:
                width = rng.choice([1, 2, 4, 8])
                if length < width:
                    continue
                i = start + rng.randrange(0, length - width + 1, width if length >= 2 * width else 1)
                data[i:i + width] = (rng.choice(INTERESTING) & ((1 << (8 * width)) - 1)).to_bytes(width, "little")
            elif op == 2:
                width = rng.choice([1, 2, 4, 8])
                if length < width:
                    continue
                i = start + rng.randrange(length - width + 1)
                value = int.from_bytes(data[i:i + width], "little") + rng.choice([-16, -8, -2, -1, 1, 2, 8, 16, 64, 4096])
                data[i:i + width] = (value % (1 << (8 * width))).to_bytes(width, "little")
            elif op == 3:
                same = [r for r in regions if r[0] == kind and r[2] >= 8 and length >= 8]
                if not same:
                    continue
                other = rng.choice(same)
                i = start + rng.randrange(length - 7)
                j = other[1] + rng.randrange(other[2] - 7)
                data[i:i + 8] = seed[j:j + 8]
            else:
                i = start + rng.randrange(length)
                data[i] = rng.choice([0, 0xFF, 0x80, 1, rng.randrange(256)])
    return bytes(data)


CRAFTED_REGIONS = {}


def mutate(reader: str, seed: bytes, rng: random.Random, splice: bytes) -> bytes:
    if rng.random() < 0.05 and splice and reader != "hdf5-crafted":
        cut = rng.randrange(1, max(2, len(seed)))
        return seed[:cut] + splice[rng.randrange(len(splice)):]
    if reader == "safetensors":
        return mutate_safetensors(seed, rng)
    if reader == "npy":
        return mutate_npy(seed, rng)
    if reader == "onnx":
        return mutate_onnx(seed, rng)
    if reader == "pth":
        return mutate_pth(seed, rng)
    if reader == "keras":
        return mutate_keras(seed, rng)
    if reader == "hdf5-crafted":
        return mutate_in_regions(seed, CRAFTED_REGIONS[seed], rng)
    return bytes(mutate_bytes(bytearray(seed), rng, focus=hdf5_metadata_focus(seed)))


# ---------------------------------------------------------------- running

def limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (16 << 30, 16 << 30))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def check_files(zoo: str, paths: list, hang_seconds: float) -> list:
    """(path, outcome or finding) for each path, restarting the batch process after a crash
    or a hang. An outcome is zoo's JSON; a finding is {"finding": kind, "detail": ...}."""
    results = []
    remaining = list(paths)
    while remaining:
        process = subprocess.Popen([zoo, "fuzz-batch"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL, preexec_fn=limit_memory, cwd=remaining[0].parent,
                                   env={**os.environ, "OMP_NUM_THREADS": "1"})
        process.stdin.write(("\n".join(str(p) for p in remaining) + "\n").encode())
        process.stdin.close()
        current = None
        buffer = b""
        deadline = None
        while True:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([process.stdout], [], [], timeout)
            if not ready:
                process.kill()
                process.wait()
                results.append((current, {"finding": "hang", "detail": f"over {hang_seconds:.0f} s"}))
                break
            chunk = os.read(process.stdout.fileno(), 65536)
            if not chunk:
                code = process.wait()
                if current is not None:
                    detail = f"signal {-code}" if code < 0 else f"exit {code} without a result"
                    results.append((current, {"finding": "crash", "detail": detail}))
                break
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if line.startswith(b"start "):
                    current = pathlib.Path(line[6:].decode())
                    deadline = time.monotonic() + hang_seconds
                else:
                    results.append((current, json.loads(line)))
                    current, deadline = None, None
        done = {p for p, _ in results}
        remaining = [p for p in remaining if p not in done]
        if results and results[-1][1].get("finding") is None and remaining and process.returncode not in (0, None):
            # Died between files: skip none, just restart.
            continue
    return results


def classify(outcome: dict):
    """The finding class of an outcome, or None when zoo behaved."""
    if "finding" in outcome:
        return outcome["finding"] + ": " + outcome["detail"]
    message = outcome.get("message", "")
    if outcome.get("status") not in (0, 1, 2):
        return f"status {outcome.get('status')}"
    if "\n" in message or any(ord(c) < 0x20 or ord(c) == 0x7F for c in message):
        return "message not on one line"
    if outcome.get("status") == 2 and CONTAINED.search(message):
        cause = CONTAINED.search(message).group(0)
        signal = re.search(r"SIG[A-Z]+|status \d+", message)
        return "contained: " + cause + (" " + signal.group(0) if signal else "")
    # Past the HDF5 worker's own limits (3 s CPU, 5 s wall), with room for a loaded machine.
    if outcome.get("milliseconds", 0) > 8000:
        return "slow (over 8 s)"
    return None


UNREPRODUCED = "unreproduced"


def crash_site(zoo: str, path: pathlib.Path):
    """Where a contained libhdf5 failure crashes, found by running the file in process
    (ZOO_HDF5_IN_PROCESS=1) under gdb: the innermost libhdf5 function and the public call
    our reader made that led there ("H5HG_read via H5Dopen2"); None without gdb."""
    if not shutil.which("gdb"):
        return None
    try:
        run = subprocess.run(["gdb", "-batch", "-nx", "-ex", "run", "-ex", "bt 64", "--args", zoo, "inspect", "--load", str(path)],
                             capture_output=True, text=True, timeout=60, cwd=path.parent,
                             env={**os.environ, "ZOO_HDF5_IN_PROCESS": "1"})
    except subprocess.TimeoutExpired:
        return None
    frames = re.findall(r"^#\d+\s+(?:0x[0-9a-f]+ in )?([A-Za-z_][A-Za-z0-9_]*)", run.stdout, re.M)
    if not frames:
        # No crash in process: the failure depends on the worker's address-space limit (a
        # huge allocation that fails cleanly without it), so the file is no stable regression.
        return UNREPRODUCED
    inner = [name for name in frames if name.startswith(("H5", "zoo_h5", "zoo_scan"))]
    if not inner:
        return frames[0] if frames else None
    # Public entry points have no double underscore and no H5X_ package prefix (H5Dopen2,
    # H5Literate, H5Oget_info_by_name2); the outermost one is the call our code made.
    public = [name for name in inner if re.fullmatch(r"H5[A-Z]{1,2}[a-z]\w*", name) and "__" not in name]
    return inner[0] + (" via " + public[-1] if public and public[-1] != inner[0] else "")


def command_statuses(zoo: str, path: pathlib.Path) -> dict:
    """The exit status of `zoo inspect --load` and `zoo verify` on a kept file, for the
    regression test to hold them to."""
    statuses = {}
    for key, command in [("inspect", ["inspect", "--load"]), ("verify", ["verify"])]:
        try:
            run = subprocess.run([zoo, *command, str(path)], capture_output=True, timeout=60, preexec_fn=limit_memory)
            statuses[key] = run.returncode
        except subprocess.TimeoutExpired:
            statuses[key] = "timeout"
    return statuses


def minimise(zoo: str, reader: str, seed: bytes, data: bytes, kind: str, work: pathlib.Path, hang: float) -> bytes:
    """Reverts mutated bytes to the seed's, in groups, while the same finding class holds."""
    if len(seed) != len(data):
        return data
    diffs = [i for i in range(len(data)) if data[i] != seed[i]]
    current = bytearray(data)
    chunk = max(1, len(diffs) // 2)
    while chunk >= 1 and diffs:
        changed = False
        for start in range(0, len(diffs), chunk):
            group = diffs[start:start + chunk]
            trial = bytearray(current)
            for i in group:
                trial[i] = seed[i]
            path = work / ("min" + EXTENSIONS[reader])
            path.write_bytes(trial)
            (_, outcome), = check_files(zoo, [path], hang)
            if classify(outcome) == kind:
                current = trial
                diffs = [i for i in diffs if i not in set(group)]
                changed = True
                break
        if not changed:
            chunk //= 2
    return bytes(current)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--zoo", default=str(ROOT / ".build" / "debug" / "zoo"))
    parser.add_argument("--reader", action="append", choices=sorted(SEEDS), help="default: every reader")
    parser.add_argument("--seconds", type=float, help="stop after this long (split across readers)")
    parser.add_argument("--executions", type=int, default=0, help="files per reader (default: until --seconds)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--hang-seconds", type=float, default=10)
    parser.add_argument("--region", help="hdf5-crafted: mutate only these structures (comma-separated: TREE, "
                        "SNOD, HEAP, HEAP-data, GCOL, OHDR, BTHD, FRHP, ohdr-prefix, message-header, layout, "
                        "dataspace, datatype, attribute, stab, ainfo, linfo, ...; oinfo = oinfo-prefix, "
                        "oinfo-continuation, oinfo-chunk: non-root headers that continue in other chunks)")
    parser.add_argument("--craft", help="hdf5-crafted: only these crafted files (comma-separated: vds, stab, dense, model, keras3, oinfo)")
    parser.add_argument("--keep", action="store_true", help="save new finding classes under Fixtures/fuzz/")
    parser.add_argument("--fail-on", default="crash,hang,status,message,slow",
                        help="finding classes that make the exit status 1 (contained libhdf5 failures are expected)")
    args = parser.parse_args()
    args.zoo = os.path.abspath(args.zoo)
    if not os.access(args.zoo, os.X_OK):
        sys.exit(f"fuzz: {args.zoo} not found; build first (swift build)")
    readers = args.reader or sorted(SEEDS)
    rng = random.Random(args.seed)
    expected_path = FINDINGS / "expected.json"
    expected = json.loads(expected_path.read_text()) if expected_path.exists() else {}
    known = {entry["class"] for entry in expected.values()}
    totals = {}
    failures = []
    work = pathlib.Path(tempfile.mkdtemp(prefix="zoo-fuzz-"))
    # External-data seeds need their sibling file beside every mutant.
    shutil.copy(FIXTURES / "onnx" / "external_ok.bin", work / "external_ok.bin")
    try:
        for reader in readers:
            seeds = [(FIXTURES / s).read_bytes() for s in SEEDS[reader]]
            if reader == "hdf5-crafted":
                try:
                    import h5py  # noqa: F401
                except ImportError:
                    print("hdf5-crafted: skipped (needs h5py to write its seeds)", flush=True)
                    continue
                wanted = {kind for name in args.region.split(",") for kind in REGION_GROUPS.get(name, [name])} \
                    if args.region else None
                for path in craft_hdf5_seeds(work):
                    if args.craft and path.stem.removeprefix("crafted-") not in args.craft.split(","):
                        path.unlink()
                        continue
                    data = path.read_bytes()
                    regions = [r for r in hdf5_regions(path) if wanted is None or r[0] in wanted]
                    if regions:
                        CRAFTED_REGIONS[data] = regions
                        seeds.append(data)
                    path.unlink()
                if not seeds:
                    sys.exit(f"fuzz: no structure of kind {args.region} in the crafted files")
            budget_end = time.monotonic() + args.seconds / len(readers) if args.seconds else None
            count, classes, start = 0, {}, time.monotonic()
            while True:
                if args.executions and count >= args.executions:
                    break
                if budget_end and time.monotonic() >= budget_end:
                    break
                if not args.executions and not budget_end:
                    break
                size = args.batch if not args.executions else min(args.batch, args.executions - count)
                batch, origin = [], {}
                for i in range(size):
                    seed = rng.choice(seeds)
                    data = mutate(reader, seed, rng, rng.choice(seeds))
                    path = work / f"{reader}-{count + i}{EXTENSIONS[reader]}"
                    path.write_bytes(data)
                    batch.append(path)
                    origin[path] = (seed, data)
                for path, outcome in check_files(args.zoo, batch, args.hang_seconds):
                    kind = classify(outcome)
                    if kind is None or path is None:
                        continue
                    classes[kind] = classes.get(kind, 0) + 1
                    if kind.split(":")[0].split(" ")[0] in args.fail_on.split(","):
                        failures.append((reader, kind, path))
                    # What the outcome classifies as (without the crash site gdb adds): what
                    # minimising must preserve.
                    outcome_class, site = kind, None
                    if args.keep and kind.startswith("contained") and re.search(r"SIG[A-Z]+", kind):
                        # One file per libhdf5 function that crashes, not per signal.
                        site = crash_site(args.zoo, path)
                        if site == UNREPRODUCED:
                            print(f"  {kind}: no crash in process under gdb; not kept", flush=True)
                            continue
                        if site:
                            kind += " in " + site
                    if args.keep and kind not in known:
                        seed, data = origin[path]
                        small = minimise(args.zoo, reader, seed, data, outcome_class, work, args.hang_seconds)
                        if site and small != data:
                            # Fewer mutated bytes may crash elsewhere: keep the smaller file only
                            # when it still crashes in the same function via the same call.
                            check = work / ("site" + EXTENSIONS[reader])
                            check.write_bytes(small)
                            if crash_site(args.zoo, check) != site:
                                small = data
                        name = f"{reader}-{hashlib.sha1(small).hexdigest()[:10]}{EXTENSIONS[reader]}"
                        FINDINGS.mkdir(exist_ok=True)
                        (FINDINGS / name).write_bytes(small)
                        message = outcome.get("message", outcome.get("detail", ""))
                        expected[name] = {"class": kind, "reader": reader,
                                          "message": message.split(": ", 1)[-1][:200],
                                          **command_statuses(args.zoo, FINDINGS / name)}
                        known.add(kind)
                        # Another campaign may be writing findings too: merge before writing.
                        on_disk = json.loads(expected_path.read_text()) if expected_path.exists() else {}
                        expected = {**on_disk, **expected}
                        expected_path.write_text(json.dumps(expected, indent=2, sort_keys=True) + "\n")
                        print(f"  new finding {kind}: Fixtures/fuzz/{name} ({len(small)} bytes)", flush=True)
                for path in batch:
                    path.unlink(missing_ok=True)
                count += size
            elapsed = time.monotonic() - start
            totals[reader] = (count, classes, elapsed)
            print(f"{reader}: {count} executions in {elapsed:.0f} s ({count / max(elapsed, 1e-9):.0f}/s); "
                  + (", ".join(f"{k} x{v}" for k, v in sorted(classes.items())) or "no findings"), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        for reader, kind, path in failures[:20]:
            print(f"FAIL {reader}: {kind}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
