#!/usr/bin/env python3
"""PyTorch .pth fixtures, written by torch.save itself (Fixtures/pth/):

  resnet18w2.pth             torchvision's ResNet18 structure at 1/32 width (base width 2,
                             10 classes), model.state_dict() in the zip layout (torch >= 1.6)
  resnet18w2_legacy.pth      the same, _use_new_zipfile_serialization=False (pre-1.6 layout)
  resnet18w2.safetensors     the same state_dict through safetensors.torch: the twin the
                             tests compare every tensor with
  resnet18w2_checkpoint.pth  a training checkpoint: {'epoch': 7, 'arch': 'resnet18w2',
                             'best_acc1': 71.5, 'state_dict': {'module.' + k: v}} with the
                             floating-point tensors in float16 (as AMP checkpoints are)
  logits_resnet18w2_torch.npy  torch's logits for Fixtures/torch/input_2x3x64x64.npy
  resnet18w1_module.pth      torch.save(model) of a base-width-1 ResNet18: a whole pickled
                             torchvision.models.resnet.ResNet, which must be refused
  malicious_system.pth       torch.save of an object whose __reduce__ is
                             (os.system, ('echo pwned',)): the pickle names posix.system
  truncated.pth              the first 4096 bytes of resnet18w2.pth (no central directory)
  lenet5_digits.pth          Fixtures/lenet/lenet5_digits.safetensors re-saved with torch.save

Values are pretrained-like: seeded random weights, nonzero biases, BatchNorm statistics
away from 0/1. Deterministic (seed 0). Needs torch, torchvision, safetensors, numpy.

Run: python3 Tools/make_pth_fixtures.py
"""
import collections
import os
import pathlib

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torchvision.models.resnet import BasicBlock, ResNet

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "Fixtures" / "pth"
OUT.mkdir(parents=True, exist_ok=True)


def narrow_resnet18(width):
    """torchvision's own ResNet class with every width divided by 64/width: same module
    names and forward, and `type(model)` stays torchvision.models.resnet.ResNet."""
    model = ResNet(BasicBlock, [2, 2, 2, 2], num_classes=10)
    model.inplanes = width
    model.conv1 = torch.nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
    model.bn1 = torch.nn.BatchNorm2d(width)
    model.layer1 = model._make_layer(BasicBlock, width, 2)
    model.layer2 = model._make_layer(BasicBlock, width * 2, 2, stride=2)
    model.layer3 = model._make_layer(BasicBlock, width * 4, 2, stride=2)
    model.layer4 = model._make_layer(BasicBlock, width * 8, 2, stride=2)
    model.fc = torch.nn.Linear(width * 8, 10)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.num_batches_tracked.fill_(1234)
        model.fc.bias.uniform_(-0.5, 0.5)
    return model.eval()


torch.manual_seed(0)
model = narrow_resnet18(2)
state = model.state_dict()
torch.save(state, OUT / "resnet18w2.pth")
torch.save(state, OUT / "resnet18w2_legacy.pth", _use_new_zipfile_serialization=False)
save_file({k: v.contiguous() for k, v in state.items()}, OUT / "resnet18w2.safetensors", metadata={"format": "pt"})
checkpoint = {
    "epoch": 7, "arch": "resnet18w2", "best_acc1": 71.5,
    "state_dict": collections.OrderedDict(
        ("module." + k, v.half() if v.is_floating_point() else v) for k, v in state.items()),
}
torch.save(checkpoint, OUT / "resnet18w2_checkpoint.pth")
x = torch.from_numpy(np.load(ROOT / "Fixtures" / "torch" / "input_2x3x64x64.npy"))
with torch.no_grad():
    np.save(OUT / "logits_resnet18w2_torch.npy", model(x).numpy())

torch.save(narrow_resnet18(1), OUT / "resnet18w1_module.pth")


class Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


torch.save(Exploit(), OUT / "malicious_system.pth")
(OUT / "truncated.pth").write_bytes((OUT / "resnet18w2.pth").read_bytes()[:4096])

lenet = collections.OrderedDict(load_file(ROOT / "Fixtures" / "lenet" / "lenet5_digits.safetensors"))
torch.save(lenet, OUT / "lenet5_digits.pth")

# Every state_dict fixture must load in torch's own allow-list loader and the whole module
# and the exploit must not: the fixtures are what they claim to be.
for name in ["resnet18w2.pth", "resnet18w2_legacy.pth", "resnet18w2_checkpoint.pth", "lenet5_digits.pth"]:
    torch.load(OUT / name, weights_only=True)
for name in ["resnet18w1_module.pth", "malicious_system.pth"]:
    try:
        torch.load(OUT / name, weights_only=True)
        raise SystemExit(f"{name} loaded with weights_only=True")
    except Exception as error:  # torch raises UnpicklingError
        if "weights_only" not in str(error) and "Unsupported" not in str(error):
            raise
for path in sorted(OUT.iterdir()):
    print(f"{path.stat().st_size:>8}  {path.name}")
