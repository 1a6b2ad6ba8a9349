/* Umbrella header for the protobuf-c code generated from Proto/caffe.proto (see Tools/gen-caffe-proto.sh). */
#ifndef CCAFFE_H
#define CCAFFE_H
#include "caffe.pb-c.h"
#endif
