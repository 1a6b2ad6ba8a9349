#!/usr/bin/env python3
"""Writes the HDF5, safetensors and npy reader fixtures.

Run from the package root:  python3 Tools/make_hdf5_fixtures.py
Needs numpy, h5py, safetensors, keras 3 (any backend but TensorFlow-free installs use jax)
and torch (for the bfloat16 safetensors file). Tests need none of these: they read the
committed files and the expected.json beside them.

Every fixture's tensors are recorded in <dir>/expected.json as
{fixture: {tensor: {"shape": [...], "dtype": "...", "values": [... as float ...]}}}
(for npy files the one tensor is named by the file's stem, as NPYFile names it).
"""
import json
import os
import struct
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")

import h5py
import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Fixtures")
HDF5_DIR = os.path.join(ROOT, "hdf5")
ST_DIR = os.path.join(ROOT, "safetensors")
NPY_DIR = os.path.join(ROOT, "npy")


def record(arr, dtype=None):
    arr = np.asarray(arr)
    return {
        "shape": list(arr.shape),
        "dtype": dtype or str(arr.dtype),
        "values": [float(v) for v in arr.astype(np.float64).ravel()],
    }


# ---------------------------------------------------------------- Keras models

def small_cnn(keras):
    """conv2d x2 + dense, 129 parameters, weights deterministic."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((6, 6, 1)),
        keras.layers.Conv2D(2, 3, activation="relu"),
        keras.layers.Conv2D(3, 3),
        keras.layers.Flatten(),
        keras.layers.Dense(4),
    ])
    # Bias values away from zero so a swapped kernel/bias shows up.
    for layer in model.layers:
        if layer.weights:
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, np.linspace(-0.5, 0.5, bias.size).astype(np.float32)])
    model.compile(optimizer="adam", loss="mse")
    # One step so the optimizer owns variables and .weights.h5 gets an optimizer group.
    model.fit(np.zeros((2, 6, 6, 1)), np.zeros((2, 4)), verbose=0, epochs=1)
    return model


def deep_cnn(keras):
    """Twelve 1x1 convolutions (conv2d .. conv2d_11); conv2d_k has kernel k+1, bias -(k+1)/10."""
    keras.backend.clear_session()
    layers = [keras.Input((3, 3, 1))] + [keras.layers.Conv2D(1, 1) for _ in range(12)]
    model = keras.Sequential(layers)
    for k, layer in enumerate(model.layers):
        layer.set_weights([np.full((1, 1, 1, 1), k + 1, np.float32), np.array([-(k + 1) / 10], np.float32)])
    return model


def keras_weights(model):
    """[(layer name, [(weight name without ':0', array)])] for layers, in model order."""
    out = []
    for layer in model.layers:
        names = [w.path.split("/")[-1] for w in layer.weights]
        out.append((layer.name, list(zip(names, [np.asarray(w) for w in layer.get_weights()]))))
    return out


def write_keras2_weights_only(path, layers, string_kind):
    """The Keras 2 `save_weights` layout, written by hand: Keras 3 no longer writes it.

    string_kind: "fixed" (numpy S arrays, as Keras 2 wrote them), "vlen" (Python str,
    variable-length), or "chunked" (fixed, with layer_names split into layer_names0/1 the
    way Keras 2 splits attributes larger than an object header).
    """
    def strings(values):
        if string_kind == "vlen":
            return [v for v in values]
        return np.array([v.encode("utf8") for v in values])

    def scalar(value):
        return value if string_kind == "vlen" else value.encode("utf8")

    expected = {}
    with h5py.File(path, "w") as f:
        names = [name for name, _ in layers]
        if string_kind == "chunked":
            f.attrs["layer_names0"] = strings(names[:2])
            f.attrs["layer_names1"] = strings(names[2:])
        else:
            f.attrs["layer_names"] = strings(names)
        f.attrs["backend"] = scalar("tensorflow")
        f.attrs["keras_version"] = scalar("2.4.0")
        for name, weights in layers:
            group = f.create_group(name)
            weight_names = [f"{name}/{w}:0" for w, _ in weights]
            group.attrs["weight_names"] = strings(weight_names) if weight_names else np.array([], dtype="S")
            for weight_name, (_, value) in zip(weight_names, weights):
                group.create_dataset(weight_name, data=value)
                expected[f"{name}/{weight_name}"] = record(value)
    return expected


def write_keras2_full_model(path, layers, model_config):
    """The Keras 2 `model.save` layout (what keras.applications downloads look like)."""
    expected = {}
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = b"2.4.0"
        f.attrs["backend"] = b"tensorflow"
        f.attrs["model_config"] = model_config.encode("utf8")
        weights_group = f.create_group("model_weights")
        weights_group.attrs["layer_names"] = np.array([n.encode() for n, _ in layers])
        weights_group.attrs["backend"] = b"tensorflow"
        weights_group.attrs["keras_version"] = b"2.4.0"
        for name, weights in layers:
            group = weights_group.create_group(name)
            weight_names = [f"{name}/{w}:0" for w, _ in weights]
            group.attrs["weight_names"] = np.array([w.encode() for w in weight_names], dtype="S")
            for weight_name, (_, value) in zip(weight_names, weights):
                group.create_dataset(weight_name, data=value)
                expected[f"{name}/{weight_name}"] = record(value)
        opt = f.create_group("optimizer_weights")
        opt.attrs["weight_names"] = np.array([b"Adam/iter:0"])
        opt.create_dataset("Adam/iter:0", data=np.int64(1))
    return expected


def make_hdf5():
    import keras

    os.makedirs(HDF5_DIR, exist_ok=True)
    expected = {}

    model = small_cnn(keras)
    model.save(os.path.join(HDF5_DIR, "keras3_legacy_full.h5"))
    with h5py.File(os.path.join(HDF5_DIR, "keras3_legacy_full.h5"), "r") as f:
        entry = {}
        for layer in [n for n in f["model_weights"].attrs["layer_names"]]:
            for w in f["model_weights"][layer].attrs["weight_names"]:
                entry[f"{layer}/{w}"] = record(f["model_weights"][layer][w][()])
        expected["keras3_legacy_full.h5"] = entry

    model.save_weights(os.path.join(HDF5_DIR, "small_cnn.weights.h5"))
    with h5py.File(os.path.join(HDF5_DIR, "small_cnn.weights.h5"), "r") as f:
        entry = {}
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and not name.startswith("optimizer/"):
                entry[name] = record(obj[()])
        f.visititems(visit)
        expected["small_cnn.weights.h5"] = entry

    layers = keras_weights(model)
    expected["keras2_weights_fixed.h5"] = write_keras2_weights_only(
        os.path.join(HDF5_DIR, "keras2_weights_fixed.h5"), layers, "fixed")
    expected["keras2_weights_vlen.h5"] = write_keras2_weights_only(
        os.path.join(HDF5_DIR, "keras2_weights_vlen.h5"), layers, "vlen")
    expected["keras2_weights_chunked_attrs.h5"] = write_keras2_weights_only(
        os.path.join(HDF5_DIR, "keras2_weights_chunked_attrs.h5"), layers, "chunked")
    expected["keras2_full.h5"] = write_keras2_full_model(
        os.path.join(HDF5_DIR, "keras2_full.h5"), layers, json.dumps({"class_name": "Sequential", "config": {"name": "small_cnn"}}))

    deep = deep_cnn(keras)
    deep.save_weights(os.path.join(HDF5_DIR, "deep12.weights.h5"))
    with h5py.File(os.path.join(HDF5_DIR, "deep12.weights.h5"), "r") as f:
        entry = {}
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                entry[name] = record(obj[()])
        f.visititems(visit)
        expected["deep12.weights.h5"] = entry

    # Plain h5py file, the way people dump a state dict by hand.
    rng = np.random.default_rng(1)
    plain = {
        "conv1.weight": rng.standard_normal((2, 1, 3, 3)).astype(np.float32),
        "conv1.bias": np.array([0.25, -0.75], np.float32),
        "fc/weight": rng.standard_normal((3, 4)).astype(np.float64),
        "fc/bias": np.array([1.5, -2.0, 0.001], np.float16),
        "big_endian": np.arange(5, dtype=">f4") / 4,
        "scalar": np.float32(3.25),
        "steps": np.array([1, 2, 3], np.int32),
    }
    with h5py.File(os.path.join(HDF5_DIR, "plain.h5"), "w") as f:
        for name, value in plain.items():
            f[name] = value
    expected["plain.h5"] = {
        name: record(value, dtype={"float32": "float32", ">f4": "float32", "float64": "float64",
                                   "float16": "float16", "int32": "int32"}[str(np.asarray(value).dtype)])
        for name, value in plain.items()
    }

    # Malformed and awkward files.
    open(os.path.join(HDF5_DIR, "empty.h5"), "wb").close()
    with open(os.path.join(HDF5_DIR, "random.h5"), "wb") as f:
        f.write(np.random.default_rng(0).integers(0, 256, 1000, dtype=np.uint8).tobytes())
    with open(os.path.join(HDF5_DIR, "keras3_legacy_full.h5"), "rb") as f:
        full = f.read()
    with open(os.path.join(HDF5_DIR, "truncated.h5"), "wb") as f:
        f.write(full[: len(full) // 2])
    with h5py.File(os.path.join(HDF5_DIR, "mixed_types.h5"), "w") as f:
        f["counts"] = np.array([[1, 2], [3, 4]], np.int32)
        f["labels"] = np.array(["cat", "dog"], dtype=h5py.string_dtype())
        f["ok"] = np.array([0.5, 1.5], np.float32)
    with h5py.File(os.path.join(HDF5_DIR, "huge_dims.h5"), "w") as f:
        # Declares 4 TiB; nothing is written, so the file stays tiny (fill value only).
        f.create_dataset("huge", shape=(1 << 20, 1 << 20), dtype=np.float32,
                         chunks=(256, 256), compression="gzip")
        # Contiguous, unwritten: declares 4 GiB, under the load cap but far over the file size.
        f.create_dataset("contiguous_unwritten", shape=(1 << 15, 1 << 15), dtype=np.float32)
        f["small"] = np.array([7.0], np.float32)

    with open(os.path.join(HDF5_DIR, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)


# ---------------------------------------------------------------- safetensors

def write_raw_safetensors(path, header, data):
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)) + blob + data)


def make_safetensors():
    from safetensors.numpy import save_file

    os.makedirs(ST_DIR, exist_ok=True)
    expected = {}
    rng = np.random.default_rng(2)
    tensors = {
        "conv.weight": rng.standard_normal((2, 1, 3, 3)).astype(np.float32),
        "conv.bias": np.array([0.5, -1.25], np.float16),
        "fc.weight": rng.standard_normal((2, 3)).astype(np.float64),
        "scalar": np.array(2.5, np.float32),
        "steps": np.array([1, 2, 3], np.int64),
    }
    save_file(tensors, os.path.join(ST_DIR, "model.safetensors"), metadata={"format": "np", "source": "fixture"})
    expected["model.safetensors"] = {name: record(value) for name, value in tensors.items()}

    try:
        import torch
        from safetensors.torch import save_file as save_torch

        bf = torch.tensor([1.0, -2.5, 0.15625, 3.0e38], dtype=torch.bfloat16)
        save_torch({"bf": bf}, os.path.join(ST_DIR, "bf16.safetensors"))
        expected["bf16.safetensors"] = {"bf": record(bf.float().numpy(), dtype="bfloat16")}
    except ImportError:
        print("torch missing: bf16.safetensors not regenerated", file=sys.stderr)

    data = np.arange(6, dtype=np.float32).tobytes()
    # Header length field points far past the end of the file.
    with open(os.path.join(ST_DIR, "header_past_eof.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", 1_000_000) + b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}')
    write_raw_safetensors(os.path.join(ST_DIR, "offsets_outside.safetensors"),
                          {"a": {"dtype": "F32", "shape": [6], "data_offsets": [0, 24]},
                           "b": {"dtype": "F32", "shape": [4], "data_offsets": [24, 40]}}, data)
    write_raw_safetensors(os.path.join(ST_DIR, "wrong_dtype_size.safetensors"),
                          {"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 24]}}, data)
    write_raw_safetensors(os.path.join(ST_DIR, "overlapping.safetensors"),
                          {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                           "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}, data)

    with open(os.path.join(ST_DIR, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)


# ---------------------------------------------------------------- npy

def make_npy():
    os.makedirs(NPY_DIR, exist_ok=True)
    expected = {}
    rng = np.random.default_rng(3)
    arrays = {
        "f4_2d.npy": rng.standard_normal((3, 4)).astype(np.float32),
        "f8.npy": rng.standard_normal((2, 2)),
        "f2.npy": np.array([0.5, -3.0, 65504.0, 6.1e-5], np.float16),
        "be_f4.npy": (np.arange(6, dtype=">f4") - 2.5).reshape(2, 3),
        "scalar.npy": np.array(3.5, np.float32),
        "vec3.npy": np.array([1.0, 2.0, 3.0], np.float32),
        "zero_rows.npy": np.zeros((0, 3), np.float32),
    }
    for name, value in arrays.items():
        np.save(os.path.join(NPY_DIR, name), value)
        # NPYFile names the one tensor by the file's stem.
        expected[name] = {name[:-4]: record(value, dtype={"float32": "float32", ">f4": "float32", "float64": "float64",
                                                          "float16": "float16"}[str(value.dtype)])}
    for version in [(2, 0), (3, 0)]:
        name = f"v{version[0]}.npy"
        value = rng.standard_normal((2, 3)).astype(np.float32)
        with open(os.path.join(NPY_DIR, name), "wb") as f:
            np.lib.format.write_array(f, value, version=version)
        expected[name] = {name[:-4]: record(value)}

    np.save(os.path.join(NPY_DIR, "fortran.npy"), np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3)))
    np.save(os.path.join(NPY_DIR, "int32.npy"), np.arange(4, dtype=np.int32))
    with open(os.path.join(NPY_DIR, "f4_2d.npy"), "rb") as f:
        blob = f.read()
    with open(os.path.join(NPY_DIR, "truncated.npy"), "wb") as f:
        f.write(blob[:-10])

    with open(os.path.join(NPY_DIR, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    make_hdf5()
    make_safetensors()
    make_npy()
    print("fixtures written under", os.path.normpath(ROOT))
