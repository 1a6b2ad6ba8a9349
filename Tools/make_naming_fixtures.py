"""Files written the way people write them today, for the by-name mapping (Fixtures/naming/):

  - resnet_1_1_12_1.safetensors: a torchvision-structured bottleneck ResNet with 12 blocks in
    its third stage (layer3.10 and layer3.11 sort before layer3.2), base width 4, 10 classes,
    saved by safetensors.torch.save_file, which writes keys sorted by name;
  - resnet18w16_dynamo.onnx / resnet18w16_dynamo_zero.onnx: torchvision's ResNet18 at 1/16
    width (base 4) exported by torch's default exporter (dynamo, opset 18+), with
    pretrained-like BatchNorm (folded into the convs, biases named `<conv>.weight_bias`) and
    untrained (every folded bias is zero, so the exporter drops the bias inputs);
  - vgg11w16_dynamo.onnx / vgg11w16_dynamo_zero.onnx: torchvision's VGG11 structure at 1/16
    width with a 32-wide classifier, exported the same way, with nonzero biases and with torch's
    default init (zero biases, dropped: Convs and Gemms with two inputs);
  - resnet18w16_fp16.onnx: the legacy export of that ResNet18 converted to float16 by
    onnxconverter-common (keep_io_types): float16 initializers, Conv and Gemm in float16;
  - resnet18w16_fp16_cast.onnx: the float32 graph with every initializer stored as float16
    and a Cast to float inserted before each use (written with onnx.helper: the pattern of
    float16 conversions that keep some operators in float32);
  - lenet5_missing_bias.h5: Fixtures/lenet/lenet5_digits.h5 with one bias dataset deleted
    by h5py while its layer's weight_names still lists it;
  - one input batch per net (input_*.npy) and the exporter's outputs: torch's logits for the
    safetensors file, onnxruntime's for each ONNX file (logits_<file>.npy); for the float16
    files also onnxruntime's logits of the float32 graph holding the float16 weights widened
    (logits_<file>_widened.npy), the exact reference for an engine that computes in float32.
Values are pretrained-like (BatchNorm statistics away from 0/1, nonzero biases) except in the
`_zero` files. Deterministic (seed 0). Needs torch, torchvision, onnx, onnxscript, onnxruntime,
safetensors, onnxconverter-common.

Run: python3 Tools/make_naming_fixtures.py
"""
import json
import pathlib

import numpy as np
import onnx
import onnxruntime as ort
import torch
from safetensors.torch import save_file
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet
from torchvision.models.vgg import VGG, make_layers, cfgs

OUT = pathlib.Path(__file__).resolve().parent.parent / "Fixtures" / "naming"
OUT.mkdir(parents=True, exist_ok=True)


class NarrowResNet(ResNet):
    """torchvision's ResNet at another base width and depth: same module names and forward."""

    def __init__(self, block, counts, width):
        super().__init__(block, [1, 1, 1, 1], num_classes=10)
        self.inplanes = width
        self.conv1 = torch.nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(width)
        self.layer1 = self._make_layer(block, width, counts[0])
        self.layer2 = self._make_layer(block, width * 2, counts[1], stride=2)
        self.layer3 = self._make_layer(block, width * 4, counts[2], stride=2)
        self.layer4 = self._make_layer(block, width * 8, counts[3], stride=2)
        self.fc = torch.nn.Linear(width * 8 * block.expansion, 10)


class NarrowVGG(VGG):
    def __init__(self, divisor, hidden):
        cfg = [v if v == "M" else v // divisor for v in cfgs["A"]]
        super().__init__(make_layers(cfg, batch_norm=False), num_classes=10)
        last = cfg[-2]
        self.classifier = torch.nn.Sequential(
            torch.nn.Linear(last * 7 * 7, hidden), torch.nn.ReLU(True), torch.nn.Dropout(),
            torch.nn.Linear(hidden, hidden), torch.nn.ReLU(True), torch.nn.Dropout(),
            torch.nn.Linear(hidden, 10))


def pretrained_like(model):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
            elif isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) and m.bias is not None:
                m.bias.uniform_(-0.1, 0.1)
    return model.eval()


def untrained(model):
    """torchvision's own init: zero biases, BatchNorm 1/0 (what a fresh model exports)."""
    return model.eval()


def batch(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def ort_logits(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def export_dynamo(model, x, name):
    path = OUT / name
    torch.onnx.export(model, (torch.from_numpy(x),), path, dynamo=True, external_data=False)
    # One file: re-save with every initializer inline (small nets only).
    m = onnx.load(path)
    onnx.save(m, path)
    logits = ort_logits(path, x)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    assert np.abs(logits - ref).max() < 1e-4 * max(1.0, np.abs(ref).max()), name
    np.save(OUT / f"logits_{path.stem}.npy", logits)
    return m


meta = {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": ort.__version__}

# 1. More than ten blocks in a stage, keys sorted by name.
torch.manual_seed(0)
deep = pretrained_like(NarrowResNet(Bottleneck, [1, 1, 12, 1], 4))
x64 = batch((2, 3, 64, 64), 0)
np.save(OUT / "input_2x3x64x64.npy", x64)
state = {k: v.contiguous() for k, v in deep.state_dict().items()}
save_file(state, OUT / "resnet_1_1_12_1.safetensors", metadata={"format": "pt"})
with torch.no_grad():
    np.save(OUT / "logits_resnet_1_1_12_1.npy", deep(torch.from_numpy(x64)).numpy())
raw = (OUT / "resnet_1_1_12_1.safetensors").read_bytes()
header = json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])
by_offset = sorted((v["data_offsets"][0], k) for k, v in header.items() if k != "__metadata__")
keys = [k for _, k in by_offset]
meta["resnet_1_1_12_1"] = {"parameters": sum(p.numel() for p in deep.parameters()),
                           "layer3.10 before layer3.2 in the file": keys.index("layer3.10.bn1.bias") < keys.index("layer3.2.bn1.bias")}

# 2. torch's default exporter on a 1/16 ResNet18, pretrained-like and untrained.
torch.manual_seed(1)
export_dynamo(pretrained_like(NarrowResNet(BasicBlock, [2, 2, 2, 2], 4)), x64, "resnet18w16_dynamo.onnx")
torch.manual_seed(2)
export_dynamo(untrained(NarrowResNet(BasicBlock, [2, 2, 2, 2], 4)), x64, "resnet18w16_dynamo_zero.onnx")

# 3. The same for a narrow VGG11 (adaptive pool exported as a 1x1 AveragePool at 32x32).
x32 = batch((2, 3, 32, 32), 3)
np.save(OUT / "input_2x3x32x32.npy", x32)
torch.manual_seed(3)
export_dynamo(pretrained_like(NarrowVGG(16, 32)), x32, "vgg11w16_dynamo.onnx")
torch.manual_seed(4)
export_dynamo(untrained(NarrowVGG(16, 32)), x32, "vgg11w16_dynamo_zero.onnx")

# 4. float16 initializers (onnxconverter-common), from the legacy exporter's eval-mode file.
from onnxconverter_common import float16

torch.manual_seed(5)
fp32_path = OUT / "resnet18w16_fp32.tmp.onnx"
torch.onnx.export(pretrained_like(NarrowResNet(BasicBlock, [2, 2, 2, 2], 4)), (torch.from_numpy(x64),), fp32_path,
                  input_names=["input"], output_names=["logits"], opset_version=17, dynamo=False)
def with_cast_initializers(model):
    """Every float initializer stored as float16 and cast back to float where it is used."""
    graph = model.graph
    casts = []
    for t in graph.initializer:
        if t.data_type != onnx.TensorProto.FLOAT:
            continue
        values = onnx.numpy_helper.to_array(t).astype(np.float16)
        stored = t.name + "_fp16"
        t.CopyFrom(onnx.numpy_helper.from_array(values, stored))
        casts.append(onnx.helper.make_node("Cast", [stored], [stored[:-5]], to=onnx.TensorProto.FLOAT))
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    return model


for name in ["resnet18w16_fp16.onnx", "resnet18w16_fp16_cast.onnx"]:
    if name.endswith("_cast.onnx"):
        half = with_cast_initializers(onnx.load(fp32_path))
    else:
        half = float16.convert_float_to_float16(onnx.load(fp32_path), keep_io_types=True)
    onnx.checker.check_model(half)
    onnx.save(half, OUT / name)
    stem = name[:-5]
    np.save(OUT / f"logits_{stem}.npy", ort_logits(OUT / name, x64))
    # The float32 graph with the float16 weights widened: what a float32 engine must give.
    widened = onnx.load(fp32_path)
    halves = {t.name.removesuffix("_fp16"): onnx.numpy_helper.to_array(t) for t in half.graph.initializer}
    for t in widened.graph.initializer:
        if t.name in halves:
            t.CopyFrom(onnx.numpy_helper.from_array(halves[t.name].astype(np.float32), t.name))
    widened_path = OUT / "widened.tmp.onnx"
    onnx.save(widened, widened_path)
    np.save(OUT / f"logits_{stem}_widened.npy", ort_logits(widened_path, x64))
    widened_path.unlink()
    meta[stem] = {"initializer dtypes": sorted({onnx.TensorProto.DataType.Name(t.data_type) for t in half.graph.initializer}),
                  "ops": sorted({n.op_type for n in half.graph.node})}
fp32_path.unlink()

# 5. A Keras HDF5 file whose weight_names lists a dataset that is not there: the trained
# LeNet-5 (Fixtures/lenet/lenet5_digits.h5) with fc2's bias dataset deleted by h5py.
import shutil

import h5py

broken = OUT / "lenet5_missing_bias.h5"
shutil.copy(OUT.parent / "lenet" / "lenet5_digits.h5", broken)
with h5py.File(broken, "r+") as f:
    group = f["model_weights"]
    layer = [n.decode() if isinstance(n, bytes) else n for n in group.attrs["layer_names"]][-2]
    names = [n.decode() if isinstance(n, bytes) else n for n in group[layer].attrs["weight_names"]]
    bias = next(n for n in names if "bias" in n)
    del group[layer][bias]
    meta["lenet5_missing_bias"] = {"deleted": f"{layer}/{bias}"}

(OUT / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
print(json.dumps(meta, indent=2))
