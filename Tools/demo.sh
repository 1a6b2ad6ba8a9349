#!/usr/bin/env bash
# The main job end to end on a fresh machine: installs dependencies, builds `zoo`, and shows
# what it does with the architectures.
set -euo pipefail
cd "$(dirname "$0")/.."
Tools/install-deps.sh
swift build -c release --product zoo 2>&1 | grep -v "^\[" || true
zoo=".build/release/zoo"
run() { echo; echo "\$ zoo $*"; "$zoo" "$@"; }
run list
run summary lenet5
run summary alexnet-caffe --format markdown
run summary resnet18 --classes 10 --input-size 160
