"""Checks the .keras archives `zoo` writes against Keras itself.

For each architecture: `zoo init ARCH x.keras`, then `keras.models.load_model("x.keras")`
(no custom objects), then
- the loaded model's layers (class and name, in order) against the model
  Tools/keras_models.py builds (keras.applications' VGG16/VGG19 for those ids);
- every layer's config against that model's, key by key where both have the key (zoo
  writes only what differs from Keras's defaults, so Keras fills in the rest);
- Keras's outputs against `zoo run` on the same random batch.

    KERAS_BACKEND=jax python3 Tools/check_keras_archive.py [ARCH ...]

Default: lenet5 lenet5-classic alexnet vgg11_bn vgg16 resnet18 resnet50-keras. Needs keras, numpy and a built zoo
(ZOO, default .build/debug/zoo).
"""
import os
import subprocess
import sys
import tempfile

os.environ.setdefault("KERAS_BACKEND", "jax")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
import keras  # noqa: E402
import keras_models  # noqa: E402

ZOO = os.environ.get("ZOO", os.path.join(os.path.dirname(HERE), ".build", "debug", "zoo"))
IGNORED = {"dtype", "build_config", "kernel_initializer", "bias_initializer", "name", "trainable"}


def check(arch, folder):
    path = os.path.join(folder, arch + ".keras")
    subprocess.run([ZOO, "init", arch, path, "--force"], check=True, capture_output=True)
    loaded = keras.models.load_model(path)
    keras.backend.clear_session()  # auto-names count from zero again, as in a fresh process
    reference = keras_models.build(arch)
    layers = [(l.__class__.__name__, l.name) for l in loaded.layers]
    expected = [(l.__class__.__name__, l.name) for l in reference.layers]
    assert layers == expected, f"{arch}: layers differ:\n{layers}\n{expected}"
    for mine, theirs in zip(loaded.layers, reference.layers):
        a, b = mine.get_config(), theirs.get_config()
        for key in set(a) & set(b) - IGNORED:
            assert a[key] == b[key], f"{arch}: {mine.name}.{key}: {a[key]} != {b[key]}"
    shape = loaded.input_shape[1:]
    x = np.random.RandomState(0).rand(2, shape[2], shape[0], shape[1]).astype(np.float32)
    np.save(os.path.join(folder, "x.npy"), x)
    subprocess.run([ZOO, "run", "--weights", path, "--input", os.path.join(folder, "x.npy"),
                    "--output", os.path.join(folder, "y.npy")], check=True, capture_output=True)
    zoo = np.load(os.path.join(folder, "y.npy"))
    ours = np.asarray(loaded.predict(x.transpose(0, 2, 3, 1), verbose=0))
    diff = float(np.abs(zoo - ours).max())
    print(f"{arch:16s} {len(layers):3d} layers, same classes and names as Keras's model; "
          f"outputs {list(ours.shape)}, largest difference {diff:.2e} of {float(np.abs(ours).max()):.3g}")
    assert diff <= 1e-4 * max(1.0, float(np.abs(ours).max())), arch


def main():
    archs = sys.argv[1:] or ["lenet5", "lenet5-classic", "alexnet", "vgg11_bn", "vgg16", "resnet18", "resnet50-keras"]
    with tempfile.TemporaryDirectory() as folder:
        for arch in archs:
            check(arch, folder)


if __name__ == "__main__":
    main()
