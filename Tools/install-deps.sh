#!/usr/bin/env bash
# Installs what building and testing ModelZoo needs on a fresh Debian machine with Swift:
# the Debian -dev packages the system-library targets wrap, and the Python peers the tests
# compare against (numpy, onnx, onnxruntime, h5py). Does nothing when all are present.
# As root it installs them; otherwise it prints the exact commands and fails.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(pkg-config libhdf5-dev libaec-dev libprotobuf-c-dev protobuf-c-compiler libdnnl-dev
              libturbojpeg0-dev libpng-dev zlib1g-dev python3 python3-pip)
missing=()
for p in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# A Python from elsewhere (pyenv, /usr/local) counts as python3 + pip.
if command -v python3 >/dev/null && python3 -m pip --version >/dev/null 2>&1; then
    missing=("${missing[@]/python3-pip}"); missing=("${missing[@]/python3}")
    read -r -a missing <<< "${missing[*]:-}"
fi
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "install-deps: installing ${missing[*]}" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "install-deps: missing Debian packages; run:" >&2
        echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
fi

if ! python3 -c "import numpy, onnx, onnxruntime, h5py" 2>/dev/null; then
    echo "install-deps: installing Python test peers from Tools/requirements-test.txt" >&2
    if [ "$(id -u)" = 0 ]; then
        python3 -m pip install -q -r Tools/requirements-test.txt 2>&1 | grep -v "Running pip as the 'root' user" || true
    else
        python3 -m pip install -q --user -r Tools/requirements-test.txt
    fi
    python3 -c "import numpy, onnx, onnxruntime, h5py"
fi
