import HDF5Scan
/// Element types a weight file may declare. Readers report the file's own type; only
/// float32, float16 and bfloat16 are converted to float32 on load, the rest are reported.
public enum DType: String, Sendable, Codable, CaseIterable {
    case float32, float16, bfloat16, float64
    case int8, uint8, int16, uint16, int32, uint32, int64, uint64
    case bool, string, complex64, complex128, unknown

    /// Bytes per element, or nil for variable-size types.
    public var byteWidth: Int? {
        switch self {
        case .bool, .int8, .uint8: return 1
        case .float16, .bfloat16, .int16, .uint16: return 2
        case .float32, .int32, .uint32: return 4
        case .float64, .int64, .uint64, .complex64: return 8
        case .complex128: return 16
        case .string, .unknown: return nil
        }
    }

    /// Types the loaders turn into float32 without loss of meaning.
    public var convertsToFloat32: Bool { self == .float32 || self == .float16 || self == .bfloat16 }
}

/// A dense float32 tensor in row-major order, the one in-memory form weights take once loaded.
public struct Tensor: Sendable, Equatable {
    public var shape: [Int]
    public var data: [Float]

    public init(shape: [Int], data: [Float]) {
        precondition(shape.reduce(1, *) == data.count, "shape \(shape) does not hold \(data.count) values")
        self.shape = shape
        self.data = data
    }

    public init(zeros shape: [Int]) {
        self.shape = shape
        self.data = [Float](repeating: 0, count: shape.reduce(1, *))
    }

    public var count: Int { data.count }
}

/// Element count of a shape with overflow checks: file headers are untrusted, so a product
/// that does not fit in Int, or a negative dimension, is refused before anything is allocated.
/// (The HDF5 worker, which links no ModelZoo, owns the one implementation.)
public func checkedElementCount(_ shape: [Int]) -> Int? {
    HDF5Scan.checkedElementCount(shape)
}

/// Byte size of `shape` elements of `dtype`, overflow-checked.
public func checkedByteCount(_ shape: [Int], _ dtype: DType) -> Int? {
    guard let count = checkedElementCount(shape), let width = dtype.byteWidth else { return nil }
    let (bytes, overflow) = count.multipliedReportingOverflow(by: width)
    return overflow ? nil : bytes
}
