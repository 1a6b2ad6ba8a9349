#!/bin/sh
# Regenerates the protobuf-c code for the CCaffe target from Proto/caffe.proto.
# Needs protoc-c (Debian: protobuf-c-compiler). Run from anywhere; commit the result.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

protoc-c --proto_path="$root/Proto" --c_out="$work" "$root/Proto/caffe.proto"

# SwiftPM exposes only headers under include/, and the .c file must find its header there.
cp "$work/caffe.pb-c.h" "$root/Sources/CCaffe/include/caffe.pb-c.h"
sed 's|#include "caffe.pb-c.h"|#include "include/caffe.pb-c.h"|' \
    "$work/caffe.pb-c.c" > "$root/Sources/CCaffe/caffe.pb-c.c"

echo "generated Sources/CCaffe/caffe.pb-c.c and Sources/CCaffe/include/caffe.pb-c.h"
