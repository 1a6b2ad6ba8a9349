/* Umbrella header for the protobuf-c code generated from Proto/onnx.proto (see Tools/gen-onnx-proto.sh). */
