/// Widening conversions for the 16-bit float formats weight files store (ONNX, HDF5, safetensors).

/// IEEE 754 binary16 bits to Float, exactly (every half value is representable).
@inline(__always)
func floatFromHalfBits(_ bits: UInt16) -> Float {
    let sign = UInt32(bits & 0x8000) << 16
    let exponent = UInt32((bits >> 10) & 0x1f)
    let mantissa = UInt32(bits & 0x03ff)
    if exponent == 0 {
        // Zero or subnormal: mantissa * 2^-24, which Float holds exactly.
        let magnitude = Float(mantissa) * 0x1p-24
        return Float(bitPattern: sign | magnitude.bitPattern)
    }
    if exponent == 0x1f {
        return Float(bitPattern: sign | 0x7f80_0000 | (mantissa << 13))  // inf or NaN (payload kept)
    }
    return Float(bitPattern: sign | ((exponent + 112) << 23) | (mantissa << 13))
}

/// bfloat16 is the top half of a float32.
@inline(__always)
func floatFromBFloat16Bits(_ bits: UInt16) -> Float {
    Float(bitPattern: UInt32(bits) << 16)
}

/// Converts little-endian 16-bit values to Float with `convert`.
func widen16(_ source: UnsafeBufferPointer<UInt16>, _ convert: (UInt16) -> Float) -> [Float] {
    [Float](unsafeUninitializedCapacity: source.count) { buffer, initialized in
        for index in 0..<source.count {
            buffer[index] = convert(UInt16(littleEndian: source[index]))
        }
        initialized = source.count
    }
}
