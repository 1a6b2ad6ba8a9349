#!/bin/sh
# The ONNX messages of the CONNX target (Proto/onnx.proto).
exec "$(dirname "$0")/gen-proto.sh" onnx CONNX
