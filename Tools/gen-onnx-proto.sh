#!/bin/sh
# Regenerates the protobuf-c code for the CONNX target from Proto/onnx.proto.
# Needs protoc-c (Debian: protobuf-c-compiler). Run from anywhere; commit the result.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

protoc-c --proto_path="$root/Proto" --c_out="$work" "$root/Proto/onnx.proto"

# SwiftPM exposes only headers under include/, and the .c file must find its header there.
cp "$work/onnx.pb-c.h" "$root/Sources/CONNX/include/onnx.pb-c.h"
sed 's|#include "onnx.pb-c.h"|#include "include/onnx.pb-c.h"|' \
    "$work/onnx.pb-c.c" > "$root/Sources/CONNX/onnx.pb-c.c"

echo "generated Sources/CONNX/onnx.pb-c.c and Sources/CONNX/include/onnx.pb-c.h"
