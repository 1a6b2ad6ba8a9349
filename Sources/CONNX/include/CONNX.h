/* Umbrella header for the protobuf-c code generated from Proto/onnx.proto (see Tools/gen-onnx-proto.sh). */
#ifndef CONNX_H
#define CONNX_H
#include "onnx.pb-c.h"
#endif
