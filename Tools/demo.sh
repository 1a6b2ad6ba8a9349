#!/usr/bin/env bash
# The main job end to end on a fresh machine: installs dependencies, builds `zoo` (release),
# then takes the committed LeNet-5 digits model through what users come for: what is this
# file, is it really LeNet-5, what does it see in an image, and a new head for new classes.
set -euo pipefail
cd "$(dirname "$0")/.."
Tools/install-deps.sh
echo "building zoo (release)..."
swift build -c release --product zoo 2>&1 | grep -E "error|warning: unre|Compiling zoo|Build" || true
zoo=".build/release/zoo"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
run() { echo; echo "\$ zoo $*"; "$zoo" "$@"; }

run list
run summary alexnet-caffe
run inspect Fixtures/lenet/lenet5_digits.h5
run verify Fixtures/lenet/lenet5_digits.weights.h5
run verify Fixtures/lenet/lenet5_digits.onnx --arch lenet5-classic || echo "(exit $?: the graph's ReLU and max pooling contradict the 1998 form)"
run predict --weights Fixtures/lenet/lenet5_digits.onnx --top 2 Fixtures/digits_samples/digit_7_1496.png Fixtures/digits_samples/digit_3_0744_rgb64.jpg
run finetune --weights Fixtures/lenet/lenet5_digits04.onnx --data Fixtures/digits59 --out "$out/digits59.safetensors"
run evaluate --weights "$out/digits59.safetensors" --data Fixtures/digits59 --report "$out/report"
run predict --weights "$out/digits59.safetensors" --top 2 Fixtures/digits_samples/digit_8_0500.png
# --train-last on the deep nets: random weights from `zoo init` (nothing to download), the
# digits scaled up to 224; the frozen front runs once per image, then one block (ResNet's
# layer4.1, GoogLeNet's inception5b) trains with the head. Random backbones give large
# features (hence ResNet's small --lr) and BatchNorm statistics fitted to nothing: ResNet
# stays near chance; GoogLeNet with --bn live (the block's BatchNorm normalises with batch
# statistics) climbs to about 40% in five epochs. This shows the machinery and its speed,
# not a result.
run summary resnet18 --blocks
run init resnet18 "$out/resnet18.safetensors" --seed 1
run finetune --weights "$out/resnet18.safetensors" --data Fixtures/digits59 --out "$out/digits59-resnet18.safetensors" --train-last 1 --epochs 3 --lr 0.0003
run init googlenet "$out/googlenet.safetensors" --seed 1
run finetune --weights "$out/googlenet.safetensors" --data Fixtures/digits59 --out "$out/digits59-googlenet.safetensors" --train-last 1 --bn live --epochs 5
