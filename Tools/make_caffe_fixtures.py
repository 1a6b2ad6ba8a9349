#!/usr/bin/env python3
"""Writes the Caffe fixtures in Fixtures/caffe/ and the logits Caffe would compute for them.

The .caffemodel files are built with Python classes protoc generates from our own
Proto/caffe.proto (same field numbers as the public caffe.proto), so they are what Caffe
writes: V1 nets (`layers`, enum types, legacy num/channels/height/width blobs) like the
2014-2015 Model Zoo releases, V2 nets (`layer`, string types, BlobShape) like later ones.
Widths are reduced so the files stay small; the layer graphs, names, kernels, strides,
pads, groups, LRN constants and ceil-mode pooling are the released nets'.

The reference is a small interpreter of Caffe's semantics written with torch functions,
run in float64 on the same blobs: convolution, max/average pooling with ceil_mode=True
(Caffe rounds pooled sizes up; average pooling counts the padding), across-channel LRN
(torch's local_response_norm divides alpha by the size as Caffe does), BatchNorm from
running sums divided by the scale-factor blob (a zero factor gives zeros), Scale, Eltwise
sum, Concat, InnerProduct. The input is a formula both sides compute exactly:
x[i] = ((i * 7919) % 1009 - 504) / 64 over the flattened NCHW batch of 2.

Needs protoc (apt-get install protobuf-compiler), protobuf, numpy and torch.
Usage: python3 Tools/make_caffe_fixtures.py [--out Fixtures/caffe]
       python3 Tools/make_caffe_fixtures.py --full-vgg16 PATH   (553 MB, for the benchmark)
"""
import argparse
import importlib
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def caffe_pb2():
    out = tempfile.mkdtemp(prefix="caffe_pb2_")
    subprocess.run(["protoc", f"--proto_path={ROOT}/Proto", f"--python_out={out}", f"{ROOT}/Proto/caffe.proto"], check=True)
    sys.path.insert(0, out)
    return importlib.import_module("caffe_pb2")


pb = caffe_pb2()
BATCH = 2
CLASSES = 10


def formula_input(c, h, w, batch=BATCH):
    i = np.arange(batch * c * h * w, dtype=np.int64)
    return (((i * 7919) % 1009 - 504) / 64.0).reshape(batch, c, h, w)


class Net:
    """Layers as dicts in Caffe's terms; serialised as V1 or V2, run by `reference`."""

    def __init__(self, name, seed):
        self.name = name
        self.layers = []
        self.rng = np.random.default_rng(seed)
        self.shapes = {}

    def add(self, name, type_, bottom, top, blobs=(), phase=None, **params):
        self.layers.append(dict(name=name, type=type_, bottom=list(bottom), top=list(top),
                                blobs=[np.asarray(b, dtype=np.float32) for b in blobs], phase=phase, params=params))
        return top[0] if top else None

    def conv(self, name, bottom, cin, cout, k, stride=1, pad=0, group=1, bias=True, top=None):
        fan_in = cin // group * k * k
        w = self.rng.standard_normal((cout, cin // group, k, k)) * np.sqrt(2.0 / fan_in)
        blobs = [w] + ([self.rng.uniform(-0.1, 0.1, cout)] if bias else [])
        return self.add(name, "Convolution", [bottom], [top or name], blobs,
                        conv=dict(num_output=cout, kernel=k, stride=stride, pad=pad, group=group, bias=bias))

    def fc(self, name, bottom, cin, cout):
        w = self.rng.standard_normal((cout, cin)) * np.sqrt(2.0 / cin)
        return self.add(name, "InnerProduct", [bottom], [name], [w, self.rng.uniform(-0.1, 0.1, cout)], fc=dict(num_output=cout))

    def relu(self, name, blob):
        return self.add(name, "ReLU", [blob], [blob])

    def pool(self, name, bottom, k, stride, pad=0, method="MAX"):
        return self.add(name, "Pooling", [bottom], [name], pool=dict(method=method, kernel=k, stride=stride, pad=pad))

    def lrn(self, name, bottom, size=5, alpha=1e-4, beta=0.75, k=1.0):
        return self.add(name, "LRN", [bottom], [name], lrn=dict(size=size, alpha=alpha, beta=beta, k=k))

    def dropout(self, name, blob, ratio=0.5):
        return self.add(name, "Dropout", [blob], [blob], dropout=ratio)

    def bn_scale(self, bn_name, scale_name, blob, c, factor):
        mean = self.rng.uniform(-0.5, 0.5, c)
        var = self.rng.uniform(0.5, 2.0, c)
        self.add(bn_name, "BatchNorm", [blob], [blob], [mean * factor, var * factor, [factor]], bn=dict(eps=1e-5))
        self.add(scale_name, "Scale", [blob], [blob], [self.rng.uniform(0.5, 1.5, c), self.rng.uniform(-0.2, 0.2, c)], scale=dict(bias=True))


# MARK: Serialisation

V1_TYPES = {"Convolution": 4, "Data": 5, "Dropout": 6, "InnerProduct": 14, "LRN": 15, "Pooling": 17, "ReLU": 18,
            "Softmax": 20, "SoftmaxWithLoss": 21, "Accuracy": 1, "Concat": 3, "Eltwise": 25}


def fill_blob(proto, array, legacy):
    if legacy:
        # The V1 releases give every blob four dims: FC weights 1x1xOUTxIN, biases 1x1x1xN.
        dims = [1] * (4 - array.ndim) + list(array.shape)
        proto.num, proto.channels, proto.height, proto.width = dims
    else:
        proto.shape.dim.extend(array.shape)
    proto.data.extend(array.ravel().tolist())


def fill_params(proto, layer, v1):
    p = layer["params"]
    if "conv" in p:
        c = p["conv"]
        cp = proto.convolution_param
        cp.num_output = c["num_output"]
        cp.kernel_size.append(c["kernel"])
        if c["stride"] != 1:
            cp.stride.append(c["stride"])
        if c["pad"]:
            cp.pad.append(c["pad"])
        if c["group"] != 1:
            cp.group = c["group"]
        if not c["bias"]:
            cp.bias_term = False
    if "fc" in p:
        proto.inner_product_param.num_output = p["fc"]["num_output"]
    if "pool" in p:
        q = p["pool"]
        pp = proto.pooling_param
        pp.pool = pb.PoolingParameter.AVE if q["method"] == "AVE" else pb.PoolingParameter.MAX
        pp.kernel_size, pp.stride = q["kernel"], q["stride"]
        if q["pad"]:
            pp.pad = q["pad"]
    if "lrn" in p:
        q = p["lrn"]
        proto.lrn_param.local_size, proto.lrn_param.alpha, proto.lrn_param.beta = q["size"], q["alpha"], q["beta"]
        if q["k"] != 1:
            proto.lrn_param.k = q["k"]
    if "dropout" in p:
        proto.dropout_param.dropout_ratio = p["dropout"]
    if "bn" in p:
        proto.batch_norm_param.use_global_stats = True
    if "scale" in p:
        proto.scale_param.bias_term = p["scale"]["bias"]
    if "eltwise" in p:
        proto.eltwise_param.operation = pb.EltwiseParameter.SUM
    if "transform" in p:
        t = p["transform"]
        proto.transform_param.crop_size = t["crop"]
        proto.transform_param.mirror = t["mirror"]
        proto.transform_param.mean_value.extend(t["mean"])
    if "data" in p:
        proto.data_param.source = p["data"]
        proto.data_param.batch_size = 256
    if "input" in p:
        proto.input_param.shape.add().dim.extend(p["input"])


def serialise(net, v1, input_dim=None):
    msg = pb.NetParameter()
    msg.name = net.name
    if input_dim:
        msg.input.append("data")
        msg.input_dim.extend(input_dim)
    for layer in net.layers:
        proto = msg.layers.add() if v1 else msg.layer.add()
        proto.name = layer["name"]
        proto.type = V1_TYPES[layer["type"]] if v1 else layer["type"]
        proto.bottom.extend(layer["bottom"])
        proto.top.extend(layer["top"])
        if layer["phase"]:
            proto.include.add().phase = pb.TRAIN if layer["phase"] == "TRAIN" else pb.TEST
        fill_params(proto, layer, v1)
        for b in layer["blobs"]:
            fill_blob(proto.blobs.add(), b, legacy=v1)
    return msg.SerializeToString()


# MARK: Reference: Caffe's forward pass in torch, float64

TRAINING = {"Data", "Input", "Accuracy", "SoftmaxWithLoss", "Softmax"}


def reference(net, x):
    import torch
    import torch.nn.functional as F
    blobs = {"data": torch.from_numpy(x)}
    out = None
    for layer in net.layers:
        t = layer["type"]
        if t in TRAINING or layer["name"].startswith(("loss1/", "loss2/")) or layer["phase"] == "TEST":
            continue
        p = layer["params"]
        w = [torch.from_numpy(b.astype(np.float64)) for b in layer["blobs"]]
        bottom = [blobs[b] for b in layer["bottom"]]
        y = bottom[0] if bottom else None
        if t == "Convolution":
            c = p["conv"]
            y = F.conv2d(y, w[0], w[1] if len(w) > 1 else None, stride=c["stride"], padding=c["pad"], groups=c["group"])
        elif t == "Pooling":
            q = p["pool"]
            if q["method"] == "MAX":
                y = F.max_pool2d(y, q["kernel"], q["stride"], q["pad"], ceil_mode=True)
            else:
                y = F.avg_pool2d(y, q["kernel"], q["stride"], q["pad"], ceil_mode=True, count_include_pad=True)
        elif t == "LRN":
            q = p["lrn"]
            y = F.local_response_norm(y, q["size"], alpha=q["alpha"], beta=q["beta"], k=q["k"])
        elif t == "ReLU":
            y = F.relu(y)
        elif t == "Dropout":
            pass
        elif t == "InnerProduct":
            y = F.linear(y.flatten(1), w[0], w[1])
            out = y
        elif t == "Concat":
            y = torch.cat(bottom, dim=1)
        elif t == "Eltwise":
            y = bottom[0] + bottom[1]
        elif t == "BatchNorm":
            factor = float(w[2][0])
            s = 0.0 if factor == 0 else 1.0 / factor
            mean, var = w[0] * s, w[1] * s
            y = (y - mean[None, :, None, None]) / torch.sqrt(var[None, :, None, None] + p["bn"]["eps"])
        elif t == "Scale":
            y = y * w[0][None, :, None, None] + w[1][None, :, None, None]
        else:
            raise ValueError(t)
        blobs[layer["top"][0]] = y
    return out.numpy().astype(np.float32)


# MARK: The nets

def training_head(net, logits):
    net.add("loss", "SoftmaxWithLoss", [logits, "label"], ["loss"])
    net.add("accuracy", "Accuracy", [logits, "label"], ["accuracy"], phase="TEST")


def data_layers(net, crop):
    for phase in ("TRAIN", "TEST"):
        net.add("data", "Data", [], ["data", "label"], phase=phase, data=f"ilsvrc12_{phase.lower()}_lmdb",
                transform=dict(crop=crop, mirror=phase == "TRAIN", mean=[104.0, 117.0, 123.0]))


def alexnet(d=8, hidden=16):
    """bvlc_alexnet's train_val net: the V1 release, input from the data layer's crop."""
    n = Net("AlexNet", seed=1)
    data_layers(n, 227)
    x = n.conv("conv1", "data", 3, 96 // d, 11, stride=4); n.relu("relu1", x)
    x = n.lrn("norm1", x); x = n.pool("pool1", x, 3, 2)
    x = n.conv("conv2", x, 96 // d, 256 // d, 5, pad=2, group=2); n.relu("relu2", x)
    x = n.lrn("norm2", x); x = n.pool("pool2", x, 3, 2)
    x = n.conv("conv3", x, 256 // d, 384 // d, 3, pad=1); n.relu("relu3", x)
    x = n.conv("conv4", x, 384 // d, 384 // d, 3, pad=1, group=2); n.relu("relu4", x)
    x = n.conv("conv5", x, 384 // d, 256 // d, 3, pad=1, group=2); n.relu("relu5", x)
    x = n.pool("pool5", x, 3, 2)
    x = n.fc("fc6", x, 256 // d * 36, hidden); n.relu("relu6", x); n.dropout("drop6", x)
    x = n.fc("fc7", x, hidden, hidden); n.relu("relu7", x); n.dropout("drop7", x)
    x = n.fc("fc8", x, hidden, CLASSES)
    training_head(n, x)
    return n


def vgg16(d=16, hidden=16):
    """VGG_ILSVRC_16_layers deploy net (V1, input_dim 1x3x224x224), VGG's layer names."""
    n = Net("VGG_ILSVRC_16_layers", seed=2)
    x, cin = "data", 3
    for stage, (width, convs) in enumerate([(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)], start=1):
        for i in range(1, convs + 1):
            x = n.conv(f"conv{stage}_{i}", x, cin, width // d, 3, pad=1); n.relu(f"relu{stage}_{i}", x)
            cin = width // d
        x = n.pool(f"pool{stage}", x, 2, 2)
    x = n.fc("fc6", x, cin * 49, hidden); n.relu("relu6", x); n.dropout("drop6", x)
    x = n.fc("fc7", x, hidden, hidden); n.relu("relu7", x); n.dropout("drop7", x)
    x = n.fc("fc8", x, hidden, CLASSES)
    n.add("prob", "Softmax", [x], ["prob"])
    return n


INCEPTION = [("3a", 64, 96, 128, 16, 32, 32), ("3b", 128, 128, 192, 32, 96, 64), ("4a", 192, 96, 208, 16, 48, 64),
             ("4b", 160, 112, 224, 24, 64, 64), ("4c", 128, 128, 256, 24, 64, 64), ("4d", 112, 144, 288, 32, 64, 64),
             ("4e", 256, 160, 320, 32, 128, 128), ("5a", 256, 160, 320, 32, 128, 128), ("5b", 384, 192, 384, 48, 128, 128)]


def googlenet(d=16):
    """bvlc_googlenet's train_val net (V2) with its auxiliary classifiers and their weights."""
    n = Net("GoogleNet", seed=3)
    data_layers(n, 224)
    w = lambda c: max(1, c // d)
    x = n.conv("conv1/7x7_s2", "data", 3, w(64), 7, stride=2, pad=3); n.relu("conv1/relu_7x7", x)
    x = n.pool("pool1/3x3_s2", x, 3, 2); x = n.lrn("pool1/norm1", x)
    x = n.conv("conv2/3x3_reduce", x, w(64), w(64), 1); n.relu("conv2/relu_3x3_reduce", x)
    x = n.conv("conv2/3x3", x, w(64), w(192), 3, pad=1); n.relu("conv2/relu_3x3", x)
    x = n.lrn("conv2/norm2", x); x = n.pool("pool2/3x3_s2", x, 3, 2)
    cin = w(192)
    for name, b1, b2r, b2, b3r, b3, b4 in INCEPTION:
        p = "inception_" + name
        a = n.conv(p + "/1x1", x, cin, w(b1), 1); n.relu(p + "/relu_1x1", a)
        r = n.conv(p + "/3x3_reduce", x, cin, w(b2r), 1); n.relu(p + "/relu_3x3_reduce", r)
        b = n.conv(p + "/3x3", r, w(b2r), w(b2), 3, pad=1); n.relu(p + "/relu_3x3", b)
        r = n.conv(p + "/5x5_reduce", x, cin, w(b3r), 1); n.relu(p + "/relu_5x5_reduce", r)
        c = n.conv(p + "/5x5", r, w(b3r), w(b3), 5, pad=2); n.relu(p + "/relu_5x5", c)
        q = n.pool(p + "/pool", x, 3, 1, pad=1)
        q = n.conv(p + "/pool_proj", q, cin, w(b4), 1); n.relu(p + "/relu_pool_proj", q)
        x = n.add(p + "/output", "Concat", [a, b, c, q], [p + "/output"])
        cin = w(b1) + w(b2) + w(b3) + w(b4)
        if name in ("4a", "4d"):
            aux = "loss1" if name == "4a" else "loss2"
            y = n.pool(aux + "/ave_pool", x, 5, 3, method="AVE")
            y = n.conv(aux + "/conv", y, cin, w(128), 1); n.relu(aux + "/relu_conv", y)
            y = n.fc(aux + "/fc", y, w(128) * 16, w(1024)); n.relu(aux + "/relu_fc", y); n.dropout(aux + "/drop_fc", y, 0.7)
            y = n.fc(aux + "/classifier", y, w(1024), CLASSES)
            n.add(aux + "/loss1" if aux == "loss1" else aux + "/loss2", "SoftmaxWithLoss", [y, "label"], [aux + "/loss"])
        if name == "3b":
            x = n.pool("pool3/3x3_s2", x, 3, 2)
        if name == "4e":
            x = n.pool("pool4/3x3_s2", x, 3, 2)
    x = n.pool("pool5/7x7_s1", x, 7, 1, method="AVE"); n.dropout("pool5/drop_7x7_s1", x, 0.4)
    x = n.fc("loss3/classifier", x, cin, CLASSES)
    n.add("loss3/loss3", "SoftmaxWithLoss", [x, "label"], ["loss3/loss3"])
    n.add("loss3/top-1", "Accuracy", [x, "label"], ["loss3/top-1"], phase="TEST")
    return n


def resnet(depth_blocks=(3, 4, 6, 3), width=2, letters=True, name="ResNet-50"):
    """ResNet-50-deploy.prototxt of KaimingHe/deep-residual-networks (V2, Input layer)."""
    n = Net(name, seed=4)
    n.add("input", "Input", [], ["data"], input=[1, 3, 224, 224])
    x = n.conv("conv1", "data", 3, width, 7, stride=2, pad=3, bias=True)
    n.bn_scale("bn_conv1", "scale_conv1", x, width, factor=999.982)
    n.relu("conv1_relu", x)
    x = n.pool("pool1", x, 3, 2)
    cin = width
    factors = iter([1.0, 0.0] + [999.98] * 1000)
    for stage, blocks in enumerate(depth_blocks, start=2):
        mid = width << (stage - 2)
        out = mid * 4
        for block in range(blocks):
            tag = f"{stage}" + (chr(ord("a") + block) if letters or block == 0 else f"b{block}")
            s = 2 if block == 0 and stage > 2 else 1
            shortcut = x
            if block == 0:
                shortcut = n.conv(f"res{tag}_branch1", x, cin, out, 1, stride=s, bias=False)
                n.bn_scale(f"bn{tag}_branch1", f"scale{tag}_branch1", shortcut, out, next(factors))
            y = n.conv(f"res{tag}_branch2a", x, cin, mid, 1, stride=s, bias=False)
            n.bn_scale(f"bn{tag}_branch2a", f"scale{tag}_branch2a", y, mid, next(factors)); n.relu(f"res{tag}_branch2a_relu", y)
            y = n.conv(f"res{tag}_branch2b", y, mid, mid, 3, pad=1, bias=False)
            n.bn_scale(f"bn{tag}_branch2b", f"scale{tag}_branch2b", y, mid, next(factors)); n.relu(f"res{tag}_branch2b_relu", y)
            y = n.conv(f"res{tag}_branch2c", y, mid, out, 1, bias=False)
            n.bn_scale(f"bn{tag}_branch2c", f"scale{tag}_branch2c", y, out, next(factors))
            x = n.add(f"res{tag}", "Eltwise", [shortcut, y], [f"res{tag}"], eltwise=True)
            n.relu(f"res{tag}_relu", x)
            cin = out
    x = n.pool("pool5", x, 7, 1, method="AVE")
    x = n.fc("fc1000", x, cin, CLASSES)
    n.add("prob", "Softmax", [x], ["prob"])
    return n


# MARK: Broken files

def varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def broken(out):
    tiny = Net("tiny", seed=5)
    x = tiny.conv("conv1", "data", 3, 4, 3)
    tiny.relu("relu1", x)
    x = tiny.fc("fc", x, 4 * 6 * 6, 3)
    files = {}
    # A blob whose data holds fewer values than its shape: conv1's weight is 4x3x3x3 (108).
    msg = pb.NetParameter.FromString(serialise(tiny, v1=False, input_dim=[1, 3, 8, 8]))
    del msg.layer[0].blobs[0].data[100:]
    files["blob_count_mismatch.caffemodel"] = msg.SerializeToString()
    # A V1 layer type number Caffe never had (77): appended after the valid one, last wins.
    msg = pb.NetParameter.FromString(serialise(tiny, v1=True, input_dim=[1, 3, 8, 8]))
    layers = []
    for i, layer in enumerate(msg.layers):
        body = layer.SerializeToString()
        if i == 1:
            body += b"\x28" + varint(77)
        layers.append(b"\x12" + varint(len(body)) + body)
    head = pb.NetParameter(name=msg.name, input=list(msg.input), input_dim=list(msg.input_dim)).SerializeToString()
    files["unknown_v1_type.caffemodel"] = head + b"".join(layers)
    # A cycle: conv1 reads 'fc', which only the later layer fc writes.
    msg = pb.NetParameter.FromString(serialise(tiny, v1=False, input_dim=[1, 3, 8, 8]))
    msg.layer[0].bottom[0] = "fc"
    files["cycle.caffemodel"] = msg.SerializeToString()
    for name, data in files.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


def full_vgg16(path):
    n = Net("VGG_ILSVRC_16_layers", seed=9)
    n.rng = np.random.default_rng(9)
    net = vgg16(d=1, hidden=4096)
    net.layers[-2]["blobs"][0] = np.zeros((1000, 4096), np.float32)
    net.layers[-2]["blobs"][1] = np.zeros(1000, np.float32)
    with open(path, "wb") as f:
        f.write(serialise(net, v1=True, input_dim=[1, 3, 224, 224]))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=os.path.join(ROOT, "Fixtures", "caffe"))
    parser.add_argument("--full-vgg16")
    args = parser.parse_args()
    if args.full_vgg16:
        full_vgg16(args.full_vgg16)
        return
    os.makedirs(args.out, exist_ok=True)
    made = [("alexnet_w8_v1", alexnet(), True, None, 227),
            ("vgg16_w16_v1", vgg16(), True, [1, 3, 224, 224], 224),
            ("googlenet_w16_v2", googlenet(), False, None, 224),
            ("resnet50_w2_v2", resnet(), False, None, 224)]
    for name, net, v1, input_dim, size in made:
        data = serialise(net, v1=v1, input_dim=input_dim)
        with open(os.path.join(args.out, name + ".caffemodel"), "wb") as f:
            f.write(data)
        logits = reference(net, formula_input(3, size, size))
        np.save(os.path.join(args.out, name + "_logits.npy"), logits)
        print(f"{name}: {len(data):,} bytes, logits {logits.shape}, max |logit| {np.abs(logits).max():.4g}")
    with open(os.path.join(args.out, "googlenet_w16_v2.caffemodel"), "rb") as f:
        whole = f.read()
    with open(os.path.join(args.out, "truncated.caffemodel"), "wb") as f:
        f.write(whole[: len(whole) * 3 // 5])
    broken(args.out)


if __name__ == "__main__":
    main()
