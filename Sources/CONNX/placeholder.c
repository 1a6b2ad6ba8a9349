/* placeholder until the generated onnx.pb-c.c lands */
