#!/usr/bin/env python3
"""Train LeNet-5 on scikit-learn's bundled digits and write the LeNet fixture family.

Everything is made by the real writers (torch.onnx.export, Keras 3 model.save and
save_weights, safetensors) so the Swift readers are tested against files as they occur
in the wild, and every layout conversion is checked numerically before anything is written.

Outputs (paths relative to the package root):
  Fixtures/lenet/        lenet5_digits.{onnx,h5,weights.h5,safetensors},
                         lenet5_classic_digits.onnx, lenet5_digits04.onnx,
                         input_batch8.npy, logits_batch8_*.npy, meta.json
  Fixtures/digits59/     ImageFolder (train/val, classes "5".."9") for the fine-tune issue
  Fixtures/digits_samples/  single images + labels.json for `zoo predict`

Needs Tools/requirements-tools.txt. Run from anywhere:
  python3 Tools/make_lenet_fixtures.py
Runs on the CPU in well under a minute on 2 cores; a rerun on the same machine and
library versions gives the same weights (fixed seeds, deterministic algorithms).
"""

import os

# Keras picks its backend once, at import; TensorFlow is not installed here.
os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import json
import shutil
import sys
from pathlib import Path

import h5py
import numpy as np
import onnx
import onnxruntime
import safetensors
import sklearn
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import keras  # after KERAS_BACKEND is set

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = PACKAGE_ROOT / "Fixtures"
LENET_DIR = FIXTURES / "lenet"
DIGITS59_DIR = FIXTURES / "digits59"
SAMPLES_DIR = FIXTURES / "digits_samples"

SPLIT_SEED = 0
TRAIN_SEED = 0
CLASSIC_TRAIN_SEED = 1
DIGITS04_TRAIN_SEED = 2
HEAD_FINETUNE_SEED = 3
TEST_FRACTION = 0.2
IMAGE_SIZE = 32
EXPECTED_PARAMETERS = 61_706
KERAS_TOLERANCE = 1e-4
ONNX_TOLERANCE = 1e-4
LEARNING_RATE = 2e-3
WEIGHT_DECAY = 1e-2
BATCH_SIZE = 32
MAX_SHIFT = 2

FINETUNE_TRAIN_PER_CLASS = 30
FINETUNE_VAL_PER_CLASS = 15
FINETUNE_CLASSES = [5, 6, 7, 8, 9]
PRETRAIN_CLASSES = [0, 1, 2, 3, 4]


class LeNet5(nn.Module):
    """Matches Sources/ModelZoo/Architectures/LeNet.swift (ids lenet5 and lenet5-classic)."""

    def __init__(self, classes: int = 10, classic: bool = False):
        super().__init__()
        self.classic = classic
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, classes)

    def _act(self, x):
        return torch.tanh(x) if self.classic else F.relu(x)

    def _pool(self, x):
        return F.avg_pool2d(x, 2, 2) if self.classic else F.max_pool2d(x, 2, 2)

    def features(self, x):
        """Everything before fc3: the 84-wide input of the classifier head."""
        x = self._pool(self._act(self.conv1(x)))
        x = self._pool(self._act(self.conv2(x)))
        x = torch.flatten(x, 1)  # C,H,W order
        x = self._act(self.fc1(x))
        return self._act(self.fc2(x))

    def forward(self, x):
        return self.fc3(self.features(x))


def fail(message: str) -> None:
    print(f"make_lenet_fixtures: FAILED: {message}", file=sys.stderr)
    sys.exit(1)


# ----------------------------------------------------------------------------- data

def load_dataset():
    """Digits as float32 [N,1,32,32] in [0,1], plus labels and sklearn indices, split 80/20."""
    digits = load_digits()
    small = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)
    # Bilinear, half-pixel centres (align_corners=False): the PIL/OpenCV convention.
    large = F.interpolate(small, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear",
                          align_corners=False).clamp_(0.0, 1.0)
    images = large.numpy()
    labels = digits.target.astype(np.int64)
    indices = np.arange(len(labels))
    train_idx, test_idx = train_test_split(indices, test_size=TEST_FRACTION,
                                           stratify=labels, random_state=SPLIT_SEED)
    return images, labels, np.asarray(train_idx), np.asarray(test_idx)


def to_uint8(image_chw: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image_chw[0] * 255.0), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- training

def shifted(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image moved by up to MAX_SHIFT pixels each way (zero fill): the digits are
    centred, so without this the nets overfit to position and stall near 97%."""
    padded = F.pad(batch, (MAX_SHIFT,) * 4)
    span = 2 * MAX_SHIFT + 1
    dx = torch.randint(0, span, (len(batch),), generator=generator).tolist()
    dy = torch.randint(0, span, (len(batch),), generator=generator).tolist()
    return torch.stack([padded[i, :, y:y + IMAGE_SIZE, x:x + IMAGE_SIZE]
                        for i, (x, y) in enumerate(zip(dx, dy))])


def train(model: nn.Module, x: np.ndarray, y: np.ndarray, seed: int, epochs: int) -> nn.Module:
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    optimiser = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=epochs)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(yt), generator=generator)
        for start in range(0, len(order), BATCH_SIZE):
            pick = order[start:start + BATCH_SIZE]
            optimiser.zero_grad()
            loss = F.cross_entropy(model(shifted(xt[pick], generator)), yt[pick])
            loss.backward()
            optimiser.step()
        schedule.step()
    model.eval()
    return model


@torch.no_grad()
def logits_of(model: nn.Module, x: np.ndarray) -> np.ndarray:
    model.eval()
    return model(torch.from_numpy(x)).numpy()


def accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    return float((logits.argmax(1) == y).mean())


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


# ----------------------------------------------------------------------------- writers

def export_onnx(model: nn.Module, path: Path) -> None:
    model.eval()
    dummy = torch.zeros(1, 1, IMAGE_SIZE, IMAGE_SIZE)
    torch.onnx.export(
        model, (dummy,), str(path), dynamo=False, opset_version=17,
        input_names=["input"], output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        do_constant_folding=True, export_params=True,
    )
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)


def run_onnxruntime(path: Path, x: np.ndarray) -> np.ndarray:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 2
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"input": x})[0]


def build_keras_lenet() -> keras.Model:
    """The Keras 3 model equal to LeNet5: channels-last, valid padding, default layer names.

    Default names (conv2d, conv2d_1, dense, ...) are what files in the wild carry, so the
    session is cleared first to make Keras number them from zero.
    """
    keras.backend.clear_session()
    keras.utils.set_random_seed(TRAIN_SEED)
    inputs = keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE, 1))
    x = keras.layers.Conv2D(6, 5, activation="relu")(inputs)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2D(16, 5, activation="relu")(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(120, activation="relu")(x)
    x = keras.layers.Dense(84, activation="relu")(x)
    outputs = keras.layers.Dense(10)(x)
    return keras.Model(inputs, outputs, name="lenet5")


def torch_to_keras_weights(state: dict) -> list:
    """torch state_dict -> Keras weight list in the order of keras_model.weights.

    conv OIHW -> HWIO; dense [out,in] -> [in,out]; fc1's input rows reordered from the
    C,H,W flatten of torch to the H,W,C flatten of Keras (16 channels on a 5x5 grid).
    """
    def np_(name):
        return state[name].detach().cpu().numpy().astype(np.float32)

    conv = lambda name: np.ascontiguousarray(np_(name).transpose(2, 3, 1, 0))
    dense = lambda name: np.ascontiguousarray(np_(name).T)
    fc1 = np_("fc1.weight").T.reshape(16, 5, 5, 120).transpose(1, 2, 0, 3).reshape(400, 120)
    return [
        conv("conv1.weight"), np_("conv1.bias"),
        conv("conv2.weight"), np_("conv2.bias"),
        np.ascontiguousarray(fc1), np_("fc1.bias"),
        dense("fc2.weight"), np_("fc2.bias"),
        dense("fc3.weight"), np_("fc3.bias"),
    ]


def keras_logits(model: keras.Model, x_nchw: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict(x_nchw.transpose(0, 2, 3, 1), batch_size=128, verbose=0))


def check_close(name: str, got: np.ndarray, want: np.ndarray, tolerance: float) -> float:
    diff = float(np.max(np.abs(got - want)))
    if not diff < tolerance:
        fail(f"{name}: max |logit diff| {diff:.3g} >= {tolerance:g}")
    print(f"  {name}: max |logit diff| = {diff:.3g}")
    return diff


def describe_h5(path: Path) -> list:
    """Every dataset and attribute with its HDF5 type, for the reader author's notes."""
    lines = []

    def type_desc(type_id) -> str:
        if isinstance(type_id, h5py.h5t.TypeStringID):
            length = "variable-length" if type_id.is_variable_str() else f"fixed {type_id.get_size()}-byte"
            charset = "UTF-8" if type_id.get_cset() == h5py.h5t.CSET_UTF8 else "ASCII"
            return f"{length} {charset} string"
        return f"{type_id.__class__.__name__.replace('Type', '').replace('ID', '').lower()}" \
               f" {type_id.get_size()}-byte"

    def attr_desc(obj):
        out = []
        for key in obj.attrs:
            raw = obj.attrs.get_id(key)
            shape = "scalar" if raw.shape == () else f"shape {raw.shape}"
            out.append(f"@{key}: {type_desc(raw.get_type())}, {shape}")
        return out

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            layout = {h5py.h5d.CONTIGUOUS: "contiguous", h5py.h5d.CHUNKED: "chunked",
                      h5py.h5d.COMPACT: "compact"}.get(obj.id.get_create_plist().get_layout(), "?")
            lines.append(f"{name}: dataset {obj.dtype.str} {obj.shape} {layout}"
                         f" filters={obj.compression}")
        else:
            lines.append(f"{name}/: group")
        lines.extend("    " + a for a in attr_desc(obj))

    with h5py.File(path, "r") as f:
        lines.extend("/" + a for a in attr_desc(f))
        f.visititems(visit)
    return lines


# ----------------------------------------------------------------------------- images

def save_png(image_chw: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8(image_chw), mode="L").save(path, optimize=True)


def load_png_as_input(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        grey = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    return grey[None, None]


def load_jpeg_as_input(path: Path) -> np.ndarray:
    """The reference pipeline for the colour sample: PIL luma (ITU-R 601-2), bilinear to 32x32."""
    with Image.open(path) as im:
        grey = im.convert("L").resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
        return (np.asarray(grey, dtype=np.float32) / 255.0)[None, None]


def first_per_class(indices: np.ndarray, labels: np.ndarray, cls: int, count: int) -> list:
    picked = [int(i) for i in indices if labels[i] == cls][:count]
    if len(picked) < count:
        fail(f"only {len(picked)} images of class {cls}, need {count}")
    return picked


# ----------------------------------------------------------------------------- main

def main() -> None:
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    for d in (LENET_DIR, DIGITS59_DIR, SAMPLES_DIR):
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)

    images, labels, train_idx, test_idx = load_dataset()
    x_train, y_train = images[train_idx], labels[train_idx]
    x_test, y_test = images[test_idx], labels[test_idx]
    print(f"digits: {len(train_idx)} train, {len(test_idx)} held-out, {IMAGE_SIZE}x{IMAGE_SIZE}")

    # --- LeNet-5 (ReLU, max pooling) on all ten digits
    torch.manual_seed(TRAIN_SEED)
    lenet = LeNet5()
    parameters = sum(p.numel() for p in lenet.parameters())
    if parameters != EXPECTED_PARAMETERS:
        fail(f"LeNet5 has {parameters} parameters, expected {EXPECTED_PARAMETERS}")
    main_epochs = 30
    train(lenet, x_train, y_train, TRAIN_SEED, epochs=main_epochs)
    torch_test_logits = logits_of(lenet, x_test)
    test_accuracy = accuracy(torch_test_logits, y_test)
    train_accuracy = accuracy(logits_of(lenet, x_train), y_train)
    print(f"lenet5: held-out accuracy {test_accuracy:.4f} (train {train_accuracy:.4f})")
    if test_accuracy < 0.95:
        fail(f"lenet5 held-out accuracy {test_accuracy:.4f} is below 0.95")
    state = {k: v.detach().clone().contiguous() for k, v in lenet.state_dict().items()}

    onnx_path = LENET_DIR / "lenet5_digits.onnx"
    export_onnx(lenet, onnx_path)
    check_close("onnxruntime vs torch (held-out)", run_onnxruntime(onnx_path, x_test),
                torch_test_logits, ONNX_TOLERANCE)

    safetensors_path = LENET_DIR / "lenet5_digits.safetensors"
    save_file(state, str(safetensors_path), metadata={"format": "pt"})
    from safetensors.torch import load_file
    reloaded = load_file(str(safetensors_path))
    if set(reloaded) != set(state) or any(not torch.equal(reloaded[k], state[k]) for k in state):
        fail("safetensors round trip changed the state_dict")

    # --- the same weights in Keras 3
    keras_model = build_keras_lenet()
    keras_model.set_weights(torch_to_keras_weights(state))
    check_close("keras (in memory) vs torch (held-out)", keras_logits(keras_model, x_test),
                torch_test_logits, KERAS_TOLERANCE)
    h5_path = LENET_DIR / "lenet5_digits.h5"
    weights_h5_path = LENET_DIR / "lenet5_digits.weights.h5"
    keras_model.save(str(h5_path))  # legacy HDF5 full model: chosen by the .h5 suffix
    keras_model.save_weights(str(weights_h5_path))
    keras_layer_names = [layer.name for layer in keras_model.layers]

    reloaded_model = keras.models.load_model(str(h5_path), compile=False)
    check_close("keras load_model(.h5) vs torch (held-out)",
                keras_logits(reloaded_model, x_test), torch_test_logits, KERAS_TOLERANCE)
    fresh = build_keras_lenet()
    fresh.load_weights(str(weights_h5_path))
    check_close("keras load_weights(.weights.h5) vs torch (held-out)",
                keras_logits(fresh, x_test), torch_test_logits, KERAS_TOLERANCE)

    # --- the 1998 form: tanh, average pooling; ONNX only
    torch.manual_seed(CLASSIC_TRAIN_SEED)
    classic = LeNet5(classic=True)
    classic_epochs = 15
    train(classic, x_train, y_train, CLASSIC_TRAIN_SEED, epochs=classic_epochs)
    classic_test_logits = logits_of(classic, x_test)
    classic_accuracy = accuracy(classic_test_logits, y_test)
    print(f"lenet5-classic: held-out accuracy {classic_accuracy:.4f}")
    classic_path = LENET_DIR / "lenet5_classic_digits.onnx"
    export_onnx(classic, classic_path)
    check_close("classic onnxruntime vs torch (held-out)", run_onnxruntime(classic_path, x_test),
                classic_test_logits, ONNX_TOLERANCE)

    # --- pretrained on digits 0-4 only, 5-way head, for the fine-tune issue
    pre_train = np.isin(y_train, PRETRAIN_CLASSES)
    pre_test = np.isin(y_test, PRETRAIN_CLASSES)
    torch.manual_seed(DIGITS04_TRAIN_SEED)
    lenet04 = LeNet5(classes=len(PRETRAIN_CLASSES))
    digits04_epochs = 30
    train(lenet04, x_train[pre_train], y_train[pre_train], DIGITS04_TRAIN_SEED,
          epochs=digits04_epochs)
    lenet04_test_logits = logits_of(lenet04, x_test[pre_test])
    lenet04_accuracy = accuracy(lenet04_test_logits, y_test[pre_test])
    print(f"lenet5 digits 0-4: held-out accuracy on 0-4 {lenet04_accuracy:.4f}")
    digits04_path = LENET_DIR / "lenet5_digits04.onnx"
    export_onnx(lenet04, digits04_path)
    check_close("digits04 onnxruntime vs torch (held-out 0-4)",
                run_onnxruntime(digits04_path, x_test[pre_test]), lenet04_test_logits,
                ONNX_TOLERANCE)

    # --- ImageFolder for fine-tuning on 5-9: train from the train split (never seen by the
    # 0-4 model), val from the held-out split (never seen by any model here).
    finetune_files = {"train": {}, "val": {}}
    for cls in FINETUNE_CLASSES:
        for split, pool, count in (("train", train_idx, FINETUNE_TRAIN_PER_CLASS),
                                   ("val", test_idx, FINETUNE_VAL_PER_CLASS)):
            chosen = first_per_class(pool, labels, cls, count)
            for i in chosen:
                save_png(images[i], DIGITS59_DIR / split / str(cls) / f"img_{i:04d}.png")
            finetune_files[split][str(cls)] = chosen

    # What a head-only fine-tune achieves, as a reference figure for the Swift trainer:
    # freeze everything up to fc2, fit a new 84->5 head on the train PNGs, score the val PNGs.
    def folder_arrays(split):
        xs, ys = [], []
        for class_index, cls in enumerate(FINETUNE_CLASSES):  # ImageFolder: sorted names
            for path in sorted((DIGITS59_DIR / split / str(cls)).glob("*.png")):
                xs.append(load_png_as_input(path)[0])
                ys.append(class_index)
        return np.stack(xs), np.asarray(ys, dtype=np.int64)

    ft_x_train, ft_y_train = folder_arrays("train")
    ft_x_val, ft_y_val = folder_arrays("val")
    with torch.no_grad():
        feats_train = lenet04.features(torch.from_numpy(ft_x_train))
        feats_val = lenet04.features(torch.from_numpy(ft_x_val))
    torch.manual_seed(HEAD_FINETUNE_SEED)
    head = nn.Linear(84, len(FINETUNE_CLASSES))
    head_epochs, head_lr = 300, 1e-2
    optimiser = torch.optim.Adam(head.parameters(), lr=head_lr)
    for _ in range(head_epochs):  # full batch: 150 feature vectors
        optimiser.zero_grad()
        F.cross_entropy(head(feats_train), torch.from_numpy(ft_y_train)).backward()
        optimiser.step()
    with torch.no_grad():
        head_val_accuracy = accuracy(head(feats_val).numpy(), ft_y_val)
        head_train_accuracy = accuracy(head(feats_train).numpy(), ft_y_train)
    print(f"head-only fine-tune on digits59: val {head_val_accuracy:.4f}"
          f" (train {head_train_accuracy:.4f})")

    # --- single images for `zoo predict`, from the held-out split
    samples = []
    for cls in range(10):
        i = first_per_class(test_idx, labels, cls, 1)[0]
        path = SAMPLES_DIR / f"digit_{cls}_{i:04d}.png"
        save_png(images[i], path)
        samples.append((path, int(cls), i, "png"))
    # One colour JPEG: the grey digit on three equal channels, bilinear 32->64.
    jpeg_index = first_per_class(test_idx, labels, 3, 2)[1]
    jpeg_path = SAMPLES_DIR / f"digit_3_{jpeg_index:04d}_rgb64.jpg"
    grey = Image.fromarray(to_uint8(images[jpeg_index]), mode="L")
    rgb = grey.convert("RGB").resize((64, 64), Image.Resampling.BILINEAR)
    rgb.save(jpeg_path, quality=95)
    samples.append((jpeg_path, 3, jpeg_index, "jpeg"))

    sample_records = []
    for path, label, index, kind in samples:
        x = load_png_as_input(path) if kind == "png" else load_jpeg_as_input(path)
        probs = softmax(logits_of(lenet, x))[0]
        with Image.open(path) as im:
            mode, size = im.mode, im.size
        sample_records.append({
            "file": path.name, "label": label, "sklearn_index": index,
            "mode": mode, "width": size[0], "height": size[1],
            "predicted": int(probs.argmax()),
            "probabilities": [round(float(p), 6) for p in probs],
        })
        if int(probs.argmax()) != label:
            print(f"  note: {path.name} predicted {int(probs.argmax())}, label {label}")
    labels_json = {
        "model": "lenet/lenet5_digits.onnx (same weights as the torch model that made them)",
        "preprocessing": {
            "png": "8-bit grey / 255 -> [1,1,32,32]",
            "jpeg": "PIL convert('L') (ITU-R 601-2 luma: 0.299 R + 0.587 G + 0.114 B), "
                    "PIL bilinear resize 64x64 -> 32x32, / 255. Other decoders and resizers "
                    "shift the probabilities slightly; the predicted class should not change.",
        },
        "class_names": [str(c) for c in range(10)],
        "images": sample_records,
    }
    (SAMPLES_DIR / "labels.json").write_text(json.dumps(labels_json, indent=2) + "\n")

    # --- engine/reader test vectors: the first 8 held-out images, unquantised
    batch = np.ascontiguousarray(x_test[:8], dtype=np.float32)
    np.save(LENET_DIR / "input_batch8.npy", batch)
    vectors = {
        "logits_batch8_onnxruntime.npy": onnx_path,
        "logits_batch8_classic_onnxruntime.npy": classic_path,
        "logits_batch8_digits04_onnxruntime.npy": digits04_path,
    }
    for name, model_path in vectors.items():
        np.save(LENET_DIR / name, run_onnxruntime(model_path, batch).astype(np.float32))
    check_close("batch8 onnxruntime vs torch", np.load(LENET_DIR / "logits_batch8_onnxruntime.npy"),
                logits_of(lenet, batch), ONNX_TOLERANCE)

    h5_layout = {
        "lenet5_digits.h5": describe_h5(h5_path),
        "lenet5_digits.weights.h5": describe_h5(weights_h5_path),
    }

    files = sorted(p for d in (LENET_DIR, DIGITS59_DIR, SAMPLES_DIR) for p in d.rglob("*")
                   if p.is_file())
    meta = {
        "generator": "Tools/make_lenet_fixtures.py",
        "dataset": {
            "source": "sklearn.datasets.load_digits (8x8, 0..16, bundled with scikit-learn)",
            "preprocessing": "x / 16, torch bilinear interpolate (align_corners=False) to 32x32, "
                             "clamp to [0, 1]; NCHW float32",
            "split": f"sklearn train_test_split test_size={TEST_FRACTION}, stratify=labels, "
                     f"random_state={SPLIT_SEED}",
            "train_images": int(len(train_idx)),
            "heldout_images": int(len(test_idx)),
        },
        "seeds": {
            "split": SPLIT_SEED, "lenet5": TRAIN_SEED, "lenet5_classic": CLASSIC_TRAIN_SEED,
            "lenet5_digits04": DIGITS04_TRAIN_SEED, "head_finetune": HEAD_FINETUNE_SEED,
        },
        "training": {
            "optimiser": f"AdamW lr {LEARNING_RATE} weight_decay {WEIGHT_DECAY}, cosine "
                         f"schedule over the epochs, batch {BATCH_SIZE}, cross-entropy",
            "augmentation": f"random shift up to {MAX_SHIFT} px each way, zero fill",
            "lenet5_epochs": main_epochs, "lenet5_classic_epochs": classic_epochs,
            "lenet5_digits04_epochs": digits04_epochs,
            "torch_threads": 2,
        },
        "parameters": parameters,
        "accuracy": {
            "lenet5_heldout": test_accuracy,
            "lenet5_train": train_accuracy,
            "lenet5_classic_heldout": classic_accuracy,
            "lenet5_digits04_heldout_0to4": lenet04_accuracy,
            "lenet5_digits04_heldout_0to4_images": int(pre_test.sum()),
        },
        "finetune_reference": {
            "what": "lenet5_digits04.onnx frozen up to fc2; new Linear(84, 5) trained on "
                    "digits59/train PNGs, scored on digits59/val PNGs",
            "class_to_index": {str(c): i for i, c in enumerate(FINETUNE_CLASSES)},
            "head_optimiser": f"Adam lr {head_lr}, full batch, {head_epochs} steps, "
                              f"seed {HEAD_FINETUNE_SEED}",
            "val_accuracy": head_val_accuracy,
            "train_accuracy": head_train_accuracy,
            "train_sklearn_indices": finetune_files["train"],
            "val_sklearn_indices": finetune_files["val"],
        },
        "input_batch8": {
            "heldout_positions": list(range(8)),
            "sklearn_indices": [int(i) for i in test_idx[:8]],
            "labels": [int(v) for v in y_test[:8]],
        },
        "onnx": {"opset": 17, "exporter": "torch.onnx.export(dynamo=False)",
                 "input": "input [batch,1,32,32]", "output": "logits [batch,classes]",
                 "lenet5_digits04_classes": PRETRAIN_CLASSES},
        "keras": {
            "backend": keras.backend.backend(),
            "layer_names": keras_layer_names,
            "mapping": {"conv2d": "conv1", "conv2d_1": "conv2", "dense": "fc1",
                        "dense_1": "fc2", "dense_2": "fc3"},
            "layouts": "conv kernel HWIO, dense kernel [in,out]; dense (fc1) rows in H,W,C "
                       "flatten order (torch row c*25+h*5+w is Keras row h*80+w*16+c)",
            "h5_layout": h5_layout,
        },
        "tolerances": {"keras_vs_torch": KERAS_TOLERANCE, "onnxruntime_vs_torch": ONNX_TOLERANCE},
        "versions": {
            "python": sys.version.split()[0], "torch": torch.__version__,
            "keras": keras.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__, "numpy": np.__version__,
            "scikit-learn": sklearn.__version__, "h5py": h5py.__version__,
            "hdf5": h5py.version.hdf5_version, "safetensors": safetensors.__version__,
            "pillow": Image.__version__,
        },
        "files": {str(p.relative_to(FIXTURES)): p.stat().st_size for p in files},
    }
    total = sum(meta["files"].values())
    meta["files_total_bytes"] = total
    (LENET_DIR / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {len(files) + 1} files, {total / 1024:.0f} KiB (meta.json not counted)")


if __name__ == "__main__":
    main()
