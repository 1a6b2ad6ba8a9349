"""Fixtures for the Keras formats zoo reads besides .h5/.weights.h5 (Fixtures/keras/).

- lenet5_digits.keras: Keras 3 `model.save` of the Tools/keras_models.py LeNet-5 holding
  the weights of Fixtures/lenet/lenet5_digits.weights.h5 (a zip of metadata.json,
  config.json and model.weights.h5, entries stored, as Keras writes it).
- logits_batch8_keras.npy: that model's outputs on Fixtures/lenet/input_batch8.npy
  (transposed to NHWC for Keras), computed by Keras itself.
- lenet5_digits_deflated.keras: the same archive re-zipped with every entry deflated
  (zipfile.ZIP_DEFLATED), as a user's re-zip would; Keras loads it too.
- lenet5_no_weights.keras: metadata.json and config.json only. truncated.keras: the
  first 60% of lenet5_digits.keras's bytes (the end of the central directory is gone).
- lenet5_keras1.h5 / lenet5_keras1_notop.h5: the same weights in the layout Keras 1 wrote
  and keras.applications still downloads for VGG16/VGG19
  (vgg16_weights_tf_dim_ordering_tf_kernels.h5 and _notop.h5), written with h5py:
    root attribute `layer_names`: every layer, weightless ones too (input_1,
      block1_pool, flatten), as a numpy array of fixed-length byte strings (dtype S);
      no `keras_version` or `backend` attribute;
    one group per layer, attribute `weight_names` (fixed-length byte strings, or an empty
      float64 array for a weightless layer, which is what h5py makes of `[]`);
    the datasets directly in the layer group, named `<layer>_W_1:0` (kernel, HWIO) and
      `<layer>_b_1:0` (bias): Keras 1 named variables `<layer>_W`/`<layer>_b` and
      TensorFlow added `_1` and `:0`;
    dense kernels [in, out], the first one's rows in H,W,C flatten order.
  Layer names follow VGG16's scheme: block1_conv1, block1_pool, block2_conv1, block2_pool,
  flatten, fc1, fc2, predictions. The _notop file stops after block2_pool, as
  include_top=False files stop after block5_pool.
  (Reproduced from the layout of the release files as Keras's loader reads them; the
  553 MB download itself was not byte-compared.)
- features_batch8_notop_keras.npy: Keras's output of the no-top model (the input to
  block2_pool's successor: [8, 5, 5, 16] NHWC), transposed to NCHW [8, 16, 5, 5].

Needs Keras 3 (KERAS_BACKEND=jax) and h5py: `python3 Tools/make_keras_fixtures.py`.
"""
import os
import sys
import zipfile

os.environ.setdefault("KERAS_BACKEND", "jax")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import keras  # noqa: E402
import keras_models  # noqa: E402

ROOT = os.path.dirname(HERE)
OUT = os.path.join(ROOT, "Fixtures", "keras")
LENET = os.path.join(ROOT, "Fixtures", "lenet")


def keras1_file(path, model, top):
    names = ["input_1", "block1_conv1", "block1_pool", "block2_conv1", "block2_pool"]
    if top:
        names += ["flatten", "fc1", "fc2", "predictions"]
    weighted = [l for l in model.layers if l.weights]
    weights_by_name = dict(zip(["block1_conv1", "block2_conv1", "fc1", "fc2", "predictions"], weighted))
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([n.encode() for n in names])
        for name in names:
            g = f.create_group(name)
            layer = weights_by_name.get(name)
            if layer is None:
                g.attrs["weight_names"] = []
                continue
            kernel, bias = [np.asarray(w) for w in layer.get_weights()]
            weight_names = [f"{name}_W_1:0".encode(), f"{name}_b_1:0".encode()]
            g.attrs["weight_names"] = np.array(weight_names)
            g.create_dataset(weight_names[0].decode(), data=kernel.astype(np.float32))
            g.create_dataset(weight_names[1].decode(), data=bias.astype(np.float32))


def main():
    os.makedirs(OUT, exist_ok=True)
    model = keras_models.build("lenet5")
    model.load_weights(os.path.join(LENET, "lenet5_digits.weights.h5"))
    x = np.load(os.path.join(LENET, "input_batch8.npy")).transpose(0, 2, 3, 1)
    np.save(os.path.join(OUT, "logits_batch8_keras.npy"), np.asarray(model.predict(x, verbose=0), np.float32))

    path = os.path.join(OUT, "lenet5_digits.keras")
    model.save(path)
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(os.path.join(OUT, "lenet5_digits_deflated.keras"), "w",
                                                       zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(os.path.join(OUT, "lenet5_no_weights.keras"), "w") as dst:
        for name in ("metadata.json", "config.json"):
            dst.writestr(name, src.read(name))
    data = open(path, "rb").read()
    open(os.path.join(OUT, "truncated.keras"), "wb").write(data[: len(data) * 6 // 10])
    # Keras loads the deflated copy as well: it is a valid .keras.
    again = keras.models.load_model(os.path.join(OUT, "lenet5_digits_deflated.keras"))
    assert np.allclose(again.predict(x, verbose=0), model.predict(x, verbose=0))

    keras1_file(os.path.join(OUT, "lenet5_keras1.h5"), model, top=True)
    keras1_file(os.path.join(OUT, "lenet5_keras1_notop.h5"), model, top=False)
    # Keras's own legacy loader takes the Keras 1 layout, by position, as it takes the
    # keras.applications downloads: same outputs.
    keras.backend.clear_session()
    fresh = keras_models.build("lenet5")
    fresh.load_weights(os.path.join(OUT, "lenet5_keras1.h5"))
    assert np.allclose(fresh.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    notop = keras.Model(model.inputs, model.layers[4].output)
    features = np.asarray(notop.predict(x, verbose=0), np.float32)
    np.save(os.path.join(OUT, "features_batch8_notop_keras.npy"), features.transpose(0, 3, 1, 2).copy())
    print("wrote", sorted(os.listdir(OUT)))


if __name__ == "__main__":
    main()
