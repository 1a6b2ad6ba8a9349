#!/bin/sh
# Regenerates the protobuf-c code of one C target from its schema in Proto/:
#   Tools/gen-proto.sh onnx CONNX     Tools/gen-proto.sh caffe CCaffe
# Needs protoc-c (Debian: protobuf-c-compiler). Run from anywhere; commit the result.
set -eu
name=$1
target=$2
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

protoc-c --proto_path="$root/Proto" --c_out="$work" "$root/Proto/$name.proto"

# SwiftPM exposes only headers under include/, and the .c file must find its header there.
cp "$work/$name.pb-c.h" "$root/Sources/$target/include/$name.pb-c.h"
sed "s|#include \"$name.pb-c.h\"|#include \"include/$name.pb-c.h\"|" \
    "$work/$name.pb-c.c" > "$root/Sources/$target/$name.pb-c.c"

echo "generated Sources/$target/$name.pb-c.c and Sources/$target/include/$name.pb-c.h"
