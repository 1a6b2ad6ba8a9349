"""Keras models that `zoo convert` writes Keras HDF5 weights for.

`build(arch_id, classes=None)` returns a Keras 3 model whose weights load from the files
`zoo convert ... x.h5` / `x.weights.h5` writes for that architecture:

- vgg16, vgg19, resnet50-keras: keras.applications (VGG16, VGG19, ResNet50) with
  `weights=None` and `classifier_activation=None`, so the outputs are logits.
- everything else zoo can write as Keras: built here, in the spec's layer order, with Keras
  auto-names (conv2d, conv2d_1, batch_normalization, dense, ...). The Swift writer
  (Sources/ModelZoo/Writers/KerasLayout.swift) relies on that order: change both together.

Padding: torch pads symmetrically; a Keras "valid" conv after ZeroPadding2D does the same.
Max pooling after a ReLU may pad with zeros (torch pads with -inf, but no value is below 0).

Needs Keras 3 with any backend (`KERAS_BACKEND=jax` or `torch`). Tools only: not for CI.
"""
import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402  (after KERAS_BACKEND)
from keras import layers  # noqa: E402

VGG_CONFIGS = {
    11: [64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0],
    13: [64, 64, 0, 128, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0],
    16: [64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0],
    19: [64, 64, 0, 128, 128, 0, 256, 256, 256, 256, 0, 512, 512, 512, 512, 0, 512, 512, 512, 512, 0],
}

DEFAULT_CLASSES = {"lenet5": 10, "lenet5-classic": 10}


def lenet5(classes, classic):
    act = "tanh" if classic else "relu"
    pool = layers.AveragePooling2D if classic else layers.MaxPooling2D
    inputs = keras.Input((32, 32, 1))
    x = layers.Conv2D(6, 5, activation=act)(inputs)
    x = pool(2)(x)
    x = layers.Conv2D(16, 5, activation=act)(x)
    x = pool(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(120, activation=act)(x)
    x = layers.Dense(84, activation=act)(x)
    return keras.Model(inputs, layers.Dense(classes)(x), name="lenet5")


def alexnet(classes):
    inputs = keras.Input((224, 224, 3))
    x = layers.ZeroPadding2D(2)(inputs)
    x = layers.Conv2D(64, 11, strides=4, activation="relu")(x)
    x = layers.MaxPooling2D(3, 2)(x)
    x = layers.ZeroPadding2D(2)(x)
    x = layers.Conv2D(192, 5, activation="relu")(x)
    x = layers.MaxPooling2D(3, 2)(x)
    for width in (384, 256, 256):
        x = layers.ZeroPadding2D(1)(x)
        x = layers.Conv2D(width, 3, activation="relu")(x)
    x = layers.MaxPooling2D(3, 2)(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(0.5)(x)
    x = layers.Dense(4096, activation="relu")(x)
    x = layers.Dropout(0.5)(x)
    x = layers.Dense(4096, activation="relu")(x)
    return keras.Model(inputs, layers.Dense(classes)(x), name="alexnet")


def vgg(depth, batch_norm, classes):
    inputs = keras.Input((224, 224, 3))
    x = inputs
    for width in VGG_CONFIGS[depth]:
        if width == 0:
            x = layers.MaxPooling2D(2)(x)
        elif batch_norm:
            x = layers.Conv2D(width, 3, padding="same")(x)
            x = layers.BatchNormalization(epsilon=1e-5)(x)
            x = layers.ReLU()(x)
        else:
            x = layers.Conv2D(width, 3, padding="same", activation="relu")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(4096, activation="relu")(x)
    x = layers.Dropout(0.5)(x)
    x = layers.Dense(4096, activation="relu")(x)
    x = layers.Dropout(0.5)(x)
    return keras.Model(inputs, layers.Dense(classes)(x), name=f"vgg{depth}" + ("_bn" if batch_norm else ""))


def resnet_basic(depth, classes):
    """torchvision's ResNet18/34 (basic blocks, no conv biases, BN eps 1e-5). Within a
    downsampling block the shortcut is created after the main branch, in the spec's order."""
    counts = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3]}[depth]
    inputs = keras.Input((224, 224, 3))
    x = layers.ZeroPadding2D(3)(inputs)
    x = layers.Conv2D(64, 7, strides=2, use_bias=False)(x)
    x = layers.BatchNormalization(epsilon=1e-5)(x)
    x = layers.ReLU()(x)
    x = layers.ZeroPadding2D(1)(x)
    x = layers.MaxPooling2D(3, 2)(x)
    in_channels = 64
    for stage, blocks in enumerate(counts):
        width = 64 << stage
        for block in range(blocks):
            stride = 2 if block == 0 and stage > 0 else 1
            y = layers.ZeroPadding2D(1)(x)
            y = layers.Conv2D(width, 3, strides=stride, use_bias=False)(y)
            y = layers.BatchNormalization(epsilon=1e-5)(y)
            y = layers.ReLU()(y)
            y = layers.ZeroPadding2D(1)(y)
            y = layers.Conv2D(width, 3, use_bias=False)(y)
            y = layers.BatchNormalization(epsilon=1e-5)(y)
            shortcut = x
            if stride != 1 or in_channels != width:
                shortcut = layers.Conv2D(width, 1, strides=stride, use_bias=False)(x)
                shortcut = layers.BatchNormalization(epsilon=1e-5)(shortcut)
            x = layers.ReLU()(layers.Add()([y, shortcut]))
            in_channels = width
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(classes)(x), name=f"resnet{depth}")


def build(arch, classes=None):
    """The Keras model for a zoo architecture id, outputs as logits."""
    classes = classes or DEFAULT_CLASSES.get(arch, 1000)
    if arch == "vgg16":
        return keras.applications.VGG16(weights=None, classes=classes, classifier_activation=None)
    if arch == "vgg19":
        return keras.applications.VGG19(weights=None, classes=classes, classifier_activation=None)
    if arch == "resnet50-keras":
        return keras.applications.ResNet50(weights=None, classes=classes, classifier_activation=None)
    if arch in ("lenet5", "lenet5-classic"):
        return lenet5(classes, arch == "lenet5-classic")
    if arch == "alexnet":
        return alexnet(classes)
    for depth in VGG_CONFIGS:
        if arch == f"vgg{depth}":
            return vgg(depth, False, classes)
        if arch == f"vgg{depth}_bn":
            return vgg(depth, True, classes)
    if arch in ("resnet18", "resnet34"):
        return resnet_basic(int(arch[6:]), classes)
    raise ValueError(f"no Keras model for {arch}")
