#!/usr/bin/env python3
"""Writes Fixtures/engine/<id>/: canonical weights, an input batch and torch's logits for
the two LeNet-5 specs (`lenet5`: ReLU + max pooling, `lenet5-classic`: tanh + average
pooling), so EngineTests can check the oneDNN engine against an independent implementation.

Each tensor is one little-endian float32 .npy (v1.0) named after its canonical parameter
name (conv1.weight.npy, fc3.bias.npy, ...), plus input.npy [4, 1, 32, 32] and
output.npy [4, 10]. Needs torch and numpy; deterministic (fixed seeds).

Usage: python3 Tools/make_engine_fixtures.py [--out Fixtures/engine]
"""
import argparse
import os

import numpy as np
import torch
import torch.nn as nn


class LeNet5(nn.Module):
    """The spec's LeNet-5: conv1 6@5x5, pool, conv2 16@5x5, pool, fc1 120, fc2 84, fc3."""

    def __init__(self, classic: bool, classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, classes)
        self.act = torch.tanh if classic else torch.relu
        self.pool = nn.AvgPool2d(2, 2) if classic else nn.MaxPool2d(2, 2)

    def forward(self, x):
        x = self.pool(self.act(self.conv1(x)))
        x = self.pool(self.act(self.conv2(x)))
        x = torch.flatten(x, 1)  # C,H,W order: the canonical flatten
        x = self.act(self.fc1(x))
        x = self.act(self.fc2(x))
        return self.fc3(x)


def save(path, array):
    np.save(path, np.ascontiguousarray(array, dtype="<f4"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parser.add_argument("--out", default=os.path.join(root, "Fixtures", "engine"))
    args = parser.parse_args()
    for seed, (arch_id, classic) in enumerate([("lenet5", False), ("lenet5-classic", True)]):
        torch.manual_seed(100 + seed)
        model = LeNet5(classic).eval()
        directory = os.path.join(args.out, arch_id)
        os.makedirs(directory, exist_ok=True)
        for name, tensor in model.state_dict().items():
            save(os.path.join(directory, name + ".npy"), tensor.numpy())
        x = torch.rand(4, 1, 32, 32) * 2 - 1
        with torch.no_grad():
            y = model(x)
        save(os.path.join(directory, "input.npy"), x.numpy())
        save(os.path.join(directory, "output.npy"), y.numpy())
        print(f"{directory}: {len(model.state_dict())} tensors, output {tuple(y.shape)}")


if __name__ == "__main__":
    main()
