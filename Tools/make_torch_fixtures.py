"""Real torch.onnx.export output, small enough to commit: a torchvision-structured ResNet18
at 1/8 width (base width 8 instead of 64, 10 classes, 64x64 input), exported
  - in eval mode: torch folds every BatchNorm into the conv before it, and names the
    folded tensors `onnx::Conv_NNN` (Fixtures/torch/resnet18w8_eval.onnx);
  - in training mode: BatchNormalization nodes kept, torchvision names
    (Fixtures/torch/resnet18w8_train.onnx);
plus the same weights as a torchvision state_dict in safetensors, an input batch and
torch's logits for both. Deterministic (seed 0). Needs torch, torchvision, onnx, safetensors.

Run: python3 Tools/make_torch_fixtures.py
"""
import copy
import json
import pathlib

import numpy as np
import torch
from safetensors.torch import save_file
from torchvision.models.resnet import BasicBlock, ResNet

OUT = pathlib.Path(__file__).resolve().parent.parent / "Fixtures" / "torch"
OUT.mkdir(parents=True, exist_ok=True)


class NarrowResNet18(ResNet):
    """torchvision's ResNet with every width divided by 8: same module names and forward."""

    def __init__(self):
        super().__init__(BasicBlock, [2, 2, 2, 2], num_classes=10, width_per_group=64)
        # Rebuild at base width 8; torchvision hard-codes 64, so re-run its layer factory.
        self.inplanes = 8
        self.conv1 = torch.nn.Conv2d(3, 8, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(8)
        self.layer1 = self._make_layer(BasicBlock, 8, 2)
        self.layer2 = self._make_layer(BasicBlock, 16, 2, stride=2)
        self.layer3 = self._make_layer(BasicBlock, 32, 2, stride=2)
        self.layer4 = self._make_layer(BasicBlock, 64, 2, stride=2)
        self.fc = torch.nn.Linear(64, 10)


torch.manual_seed(0)
model = NarrowResNet18()
# Non-trivial BN statistics, so folding changes the numbers.
with torch.no_grad():
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(-0.2, 0.2)
model.eval()
x = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32))
with torch.no_grad():
    logits = model(x)

common = dict(input_names=["input"], output_names=["logits"], opset_version=17,
              dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False)
state = {k: v.clone().contiguous() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
torch.onnx.export(model, x, OUT / "resnet18w8_eval.onnx", **common)
# A training-mode export runs the model in train mode, which updates the BatchNorm running
# statistics and bakes the updated ones into the file: a copy with momentum 0 keeps them as
# they are, so every file holds the weights the logits were computed with.
frozen = copy.deepcopy(model)
for m in frozen.modules():
    if isinstance(m, torch.nn.BatchNorm2d):
        m.momentum = 0.0
torch.onnx.export(frozen, x, OUT / "resnet18w8_train.onnx", training=torch.onnx.TrainingMode.TRAINING,
                  do_constant_folding=False, **common)
save_file(state, OUT / "resnet18w8.safetensors", metadata={"format": "pt"})
np.save(OUT / "input_2x3x64x64.npy", x.numpy())
np.save(OUT / "logits_torch.npy", logits.numpy())
params = sum(v.numel() for k, v in model.named_parameters())
(OUT / "meta.json").write_text(json.dumps({
    "torch": torch.__version__, "parameters": params,
    "bn_buffers": sum(v.numel() for k, v in model.state_dict().items() if "running" in k),
}, indent=2) + "\n")
print("parameters", params)
