#!/bin/sh
# The Caffe messages of the CCaffe target (Proto/caffe.proto).
exec "$(dirname "$0")/gen-proto.sh" caffe CCaffe
