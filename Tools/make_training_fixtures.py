#!/usr/bin/env python3
"""Writes Fixtures/training/: torch references for the oneDNN trainer (TrainingBackwardTests).

- gradnet.safetensors: a small graph with every trainable layer kind (grouped conv with bias,
  conv without, BatchNorm with frozen statistics, ceil-mode max pool, LRN, average pool
  counting its padding, concat, residual add, adaptive average pool, flatten, linear with
  tanh, linear), pretrained-like weights, an input batch, the gradient arriving at the logits
  (`dy`), and torch.autograd's gradient of every parameter (`grad.<name>`), computed in
  float64 from the float32 weights.
- resnet_tail.safetensors, googlenet_tail.safetensors: the tail `zoo finetune --train-last 1`
  trains on a narrow ResNet18 (torchvision layout, base width 4, 112x112 input: layer4.1 +
  avgpool + fc) and a narrow Caffe GoogLeNet (widths / 16: inception_5b + pool5 + dropout +
  loss3/classifier): its starting weights and frozen BatchNorm statistics, a new 3-class head,
  cached features (`features`, `labels`), and the weights after one epoch of torch.optim.SGD
  (`final.<name>`) with the trainer's settings: batch 4, lr 0.05, momentum 0.9, weight decay
  1e-3 on conv and linear weights only, the module in eval mode (frozen statistics, no
  dropout), mean cross-entropy, and the trainer's seeded shuffle (SplitMix64, seed 0x9E37,
  Fisher-Yates from the end) mirrored here.
- gradnet_live.safetensors: gradnet's weights, input and `dy` again, with torch.autograd's
  gradients when every BatchNorm normalises with the batch's statistics (model.train()).
- resnet_tail_live.safetensors: resnet_tail's start (the same seed, so the same weights and
  features) trained one epoch with live BatchNorm (`--bn live`): the block in model.train()
  (batch mean and biased variance in the forward pass, the full gradient through them,
  running statistics updated with momentum 0.1 and the unbiased variance); `final.<name>`
  also holds the running statistics after the epoch.

Deterministic: numpy seeds. Run: python3 Tools/make_training_fixtures.py
"""
import os

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Fixtures", "training")
LR, MOMENTUM, WEIGHT_DECAY, BATCH = 0.05, 0.9, 1e-3, 4


def conv_weight(rng, o, i, k):
    return (rng.standard_normal((o, i, k, k)) * np.sqrt(2.0 / (i * k * k))).astype(np.float32)


def vector(rng, n, scale=0.1, offset=0.0):
    return (offset + rng.standard_normal(n) * scale).astype(np.float32)


def bn(rng, name, c, weights):
    weights[name + ".weight"] = rng.uniform(0.8, 1.2, c).astype(np.float32)
    weights[name + ".bias"] = vector(rng, c)
    weights[name + ".running_mean"] = vector(rng, c, 0.2)
    weights[name + ".running_var"] = rng.uniform(0.5, 1.5, c).astype(np.float32)


LIVE = False  # whether batch_norm runs as in model.train(); set by the live fixtures


def batch_norm(x, w, name, eps):
    # In training mode torch updates w's running_mean / running_var in place (momentum 0.1).
    return F.batch_norm(x, w[name + ".running_mean"], w[name + ".running_var"], w[name + ".weight"],
                        w[name + ".bias"], training=LIVE, momentum=0.1, eps=eps)


# ---------------------------------------------------------------- gradnet

def gradnet_weights(rng):
    w = {}
    w["c1.weight"] = conv_weight(rng, 6, 2, 3)  # groups 2: 4 -> 6
    w["c1.bias"] = vector(rng, 6)
    bn(rng, "bn1", 6, w)
    w["c2a.weight"] = conv_weight(rng, 4, 6, 1)
    w["c2a.bias"] = vector(rng, 4)
    w["c2b.weight"] = conv_weight(rng, 4, 6, 3)
    bn(rng, "bn2b", 4, w)
    w["c2c.weight"] = conv_weight(rng, 4, 6, 1)
    w["c2c.bias"] = vector(rng, 4)
    w["c3.weight"] = conv_weight(rng, 12, 12, 3)
    w["c3.bias"] = vector(rng, 12)
    bn(rng, "bn3", 12, w)
    w["fc1.weight"] = (rng.standard_normal((8, 12)) / np.sqrt(12)).astype(np.float32)
    w["fc1.bias"] = vector(rng, 8)
    w["fc.weight"] = (rng.standard_normal((5, 8)) / np.sqrt(8)).astype(np.float32)
    w["fc.bias"] = vector(rng, 5)
    return w


def gradnet(w, x):
    """The graph TrainingBackwardTests.gradNet declares, layer for layer."""
    y = F.relu(F.conv2d(x, w["c1.weight"], w["c1.bias"], padding=1, groups=2))
    y = F.relu(batch_norm(y, w, "bn1", 1e-5))
    y = F.max_pool2d(y, 3, 2, ceil_mode=True)
    n1 = F.local_response_norm(y, 5, alpha=1e-2, beta=0.75, k=2.0)
    a = F.relu(F.conv2d(n1, w["c2a.weight"], w["c2a.bias"]))
    b = batch_norm(F.conv2d(n1, w["c2b.weight"], None, padding=1), w, "bn2b", 1e-3)
    c = F.conv2d(F.avg_pool2d(n1, 3, 1, 1, count_include_pad=True), w["c2c.weight"], w["c2c.bias"])
    cat = torch.cat([a, b, c], 1)
    r = batch_norm(F.conv2d(cat, w["c3.weight"], w["c3.bias"], padding=1), w, "bn3", 1e-5)
    y = F.relu(r + cat)
    y = F.adaptive_avg_pool2d(y, 1).flatten(1)
    y = torch.tanh(F.linear(y, w["fc1.weight"], w["fc1.bias"]))
    return F.linear(y, w["fc.weight"], w["fc.bias"])


def make_gradnet(name="gradnet.safetensors"):
    rng = np.random.default_rng(1201)
    w = gradnet_weights(rng)
    x = rng.standard_normal((3, 4, 10, 10)).astype(np.float32)
    dy = rng.standard_normal((3, 5)).astype(np.float32)
    params = {k: torch.tensor(v, dtype=torch.float64, requires_grad=not k.endswith(("running_mean", "running_var")))
              for k, v in w.items()}
    out = gradnet(params, torch.tensor(x, dtype=torch.float64))
    (out * torch.tensor(dy, dtype=torch.float64)).sum().backward()
    tensors = {k: torch.tensor(v) for k, v in w.items()}
    tensors["x"] = torch.tensor(x)
    tensors["dy"] = torch.tensor(dy)
    for k, p in params.items():
        if p.requires_grad:
            tensors["grad." + k] = p.grad.to(torch.float32)
    save_file(tensors, os.path.join(OUT, name), metadata={"format": "pt"})


# ---------------------------------------------------------------- one epoch of SGD

def trainer_order(n, seed=0x9E37):
    """TailTrainer's epoch-0 order: SplitMix64(seed) driving a Fisher-Yates shuffle."""
    mask = (1 << 64) - 1
    state = seed

    def next_value():
        nonlocal state
        state = (state + 0x9E3779B97F4A7C15) & mask
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        return z ^ (z >> 31)

    order = list(range(n))
    for i in range(n - 1, 0, -1):
        j = next_value() % (i + 1)
        order[i], order[j] = order[j], order[i]
    return order


def sgd_epoch(w, decays, forward, features, labels):
    params = {k: torch.tensor(v, requires_grad=k in decays) for k, v in w.items()}
    trained = [k for k in w if k in decays]
    groups = [{"params": [params[k] for k in trained if decays[k]], "weight_decay": WEIGHT_DECAY},
              {"params": [params[k] for k in trained if not decays[k]], "weight_decay": 0.0}]
    opt = torch.optim.SGD(groups, lr=LR, momentum=MOMENTUM)
    order = trainer_order(len(labels))
    x_all, y_all = torch.tensor(features), torch.tensor(labels, dtype=torch.long)
    for start in range(0, len(order), BATCH):
        rows = order[start:start + BATCH]
        opt.zero_grad()
        loss = F.cross_entropy(forward(params, x_all[rows]), y_all[rows])
        loss.backward()
        opt.step()
    final = {k: params[k].detach() for k in trained}
    if LIVE:
        final.update({k: params[k].detach() for k in w if k.endswith(("running_mean", "running_var"))})
    return final


def save_epoch(name, w, decays, forward, features, labels):
    final = sgd_epoch(w, decays, forward, features, labels)
    tensors = {k: torch.tensor(v) for k, v in w.items()}
    tensors["features"] = torch.tensor(features)
    tensors["labels"] = torch.tensor(np.array(labels, dtype=np.float32))
    for k, v in final.items():
        tensors["final." + k] = v.contiguous()
    save_file(tensors, os.path.join(OUT, name), metadata={"format": "pt"})


def make_resnet_tail(name="resnet_tail.safetensors"):
    rng = np.random.default_rng(1202)
    c, classes, n = 32, 3, 12
    w, decays = {}, {}
    for conv in ("conv1", "conv2"):
        w[f"layer4.1.{conv}.weight"] = conv_weight(rng, c, c, 3)
        decays[f"layer4.1.{conv}.weight"] = True
    for b in ("bn1", "bn2"):
        bn(rng, f"layer4.1.{b}", c, w)
        decays[f"layer4.1.{b}.weight"] = False
        decays[f"layer4.1.{b}.bias"] = False
    w["fc.weight"] = rng.uniform(-1 / np.sqrt(c), 1 / np.sqrt(c), (classes, c)).astype(np.float32)
    w["fc.bias"] = np.zeros(classes, np.float32)
    decays["fc.weight"], decays["fc.bias"] = True, False

    def forward(p, x):
        y = F.relu(batch_norm(F.conv2d(x, p["layer4.1.conv1.weight"], padding=1), p, "layer4.1.bn1", 1e-5))
        y = batch_norm(F.conv2d(y, p["layer4.1.conv2.weight"], padding=1), p, "layer4.1.bn2", 1e-5)
        y = F.relu(y + x)
        return F.linear(F.adaptive_avg_pool2d(y, 1).flatten(1), p["fc.weight"], p["fc.bias"])

    features = np.maximum(rng.standard_normal((n, c, 4, 4)), 0).astype(np.float32)
    labels = [i % classes for i in range(n)]
    save_epoch(name, w, decays, forward, features, labels)


def make_googlenet_tail():
    rng = np.random.default_rng(1203)
    cin, classes, n = 52, 3, 12
    block = "inception_5b"
    shapes = {"1x1": (24, cin, 1), "3x3_reduce": (12, cin, 1), "3x3": (24, 12, 3), "5x5_reduce": (3, cin, 1),
              "5x5": (8, 3, 5), "pool_proj": (8, cin, 1)}
    w, decays = {}, {}
    for conv, (o, i, k) in shapes.items():
        w[f"{block}/{conv}.weight"] = conv_weight(rng, o, i, k)
        w[f"{block}/{conv}.bias"] = vector(rng, o)
        decays[f"{block}/{conv}.weight"], decays[f"{block}/{conv}.bias"] = True, False
    w["loss3/classifier.weight"] = rng.uniform(-1 / 8, 1 / 8, (classes, 64)).astype(np.float32)
    w["loss3/classifier.bias"] = np.zeros(classes, np.float32)
    decays["loss3/classifier.weight"], decays["loss3/classifier.bias"] = True, False

    def conv(p, name, x, pad=0):
        return F.relu(F.conv2d(x, p[f"{block}/{name}.weight"], p[f"{block}/{name}.bias"], padding=pad))

    def forward(p, x):
        b1 = conv(p, "1x1", x)
        b2 = conv(p, "3x3", conv(p, "3x3_reduce", x), 1)
        b3 = conv(p, "5x5", conv(p, "5x5_reduce", x), 2)
        b4 = conv(p, "pool_proj", F.max_pool2d(x, 3, 1, 1, ceil_mode=True))
        y = F.avg_pool2d(torch.cat([b1, b2, b3, b4], 1), 7, 1)
        return F.linear(y.flatten(1), p["loss3/classifier.weight"], p["loss3/classifier.bias"])

    features = np.maximum(rng.standard_normal((n, cin, 7, 7)), 0).astype(np.float32)
    labels = [(i * 2) % classes for i in range(n)]
    save_epoch("googlenet_tail.safetensors", w, decays, forward, features, labels)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    make_gradnet()
    make_resnet_tail()
    make_googlenet_tail()
    LIVE = True
    make_gradnet("gradnet_live.safetensors")
    make_resnet_tail("resnet_tail_live.safetensors")
    for name in sorted(os.listdir(OUT)):
        print(name, os.path.getsize(os.path.join(OUT, name)), "bytes")
