/// A TensorProto's header as found by the wire scanner: its name, shape, element type and
/// where its values are. Building one never reads the values themselves (except to count
/// the elements of varint-packed typed fields, which only small tensors use).

/// ONNX TensorProto.DataType codes, mapped onto the library's element types. Types with no
/// counterpart (float8, int4, ...) become `.unknown` and are reported, never loaded.
func dtype(forONNXDataType code: Int64) -> DType {
    switch code {
    case 1: return .float32
    case 2: return .uint8
    case 3: return .int8
    case 4: return .uint16
    case 5: return .int16
    case 6: return .int32
    case 7: return .int64
    case 8: return .string
    case 9: return .bool
    case 10: return .float16
    case 11: return .float64
    case 12: return .uint32
    case 13: return .uint64
    case 14: return .complex64
    case 15: return .complex128
    case 16: return .bfloat16
    default: return .unknown
    }
}

/// ONNX's name for a data type code, for messages about types the library cannot load.
func onnxDataTypeName(_ code: Int64) -> String {
    let names = [0: "UNDEFINED", 1: "FLOAT", 2: "UINT8", 3: "INT8", 4: "UINT16", 5: "INT16", 6: "INT32",
                 7: "INT64", 8: "STRING", 9: "BOOL", 10: "FLOAT16", 11: "DOUBLE", 12: "UINT32", 13: "UINT64",
                 14: "COMPLEX64", 15: "COMPLEX128", 16: "BFLOAT16", 17: "FLOAT8E4M3FN", 18: "FLOAT8E4M3FNUZ",
                 19: "FLOAT8E5M2", 20: "FLOAT8E5M2FNUZ", 21: "UINT4", 22: "INT4", 23: "FLOAT4E2M1"]
    return names[Int(truncatingIfNeeded: code)] ?? "data type \(code)"
}

/// TensorProto field numbers the scanner cares about.
enum TensorField {
    static let dims = 1, dataType = 2, segment = 3, floatData = 4, int32Data = 5, stringData = 6
    static let int64Data = 7, name = 8, rawData = 9, doubleData = 10, uint64Data = 11
    static let externalData = 13, dataLocation = 14
}

/// The typed repeated field ONNX uses for a data type when raw_data is absent.
func typedField(for dtype: DType) -> Int {
    switch dtype {
    case .float32, .complex64: return TensorField.floatData
    case .float64, .complex128: return TensorField.doubleData
    case .int64: return TensorField.int64Data
    case .uint32, .uint64: return TensorField.uint64Data
    case .string: return TensorField.stringData
    default: return TensorField.int32Data
    }
}

/// The external_data entries of a tensor stored outside the model file, as written. The
/// location is checked (relative, inside the model's folder) only when the tensor is loaded.
struct ONNXExternalReference: Equatable {
    let location: String
    let offset: Int
    /// nil when the writer left it out: the tensor's byte size is used.
    let length: Int?
}

/// Where a tensor's values are.
indirect enum ONNXTensorStorage {
    /// `raw_data` bytes at this range of the model file, little-endian.
    case raw(Range<Int>)
    /// A typed repeated field (float_data, int32_data, ...) of the TensorProto at `message`.
    case typed(field: Int, message: Range<Int>)
    /// In a file beside the model.
    case external(ONNXExternalReference)
    /// ConstantOfShape: every element equals the single value of `value`.
    case fill(value: ONNXTensorHeader)
    /// Given inline by a Constant node's value_float / value_floats attribute.
    case inlineFloats([Float])
    /// Given inline by a Constant node's value_int / value_ints attribute.
    case inlineInts([Int64])
    /// No values at all; only valid for tensors with zero elements.
    case empty
}

struct ONNXTensorHeader {
    let name: String
    let shape: [Int]
    let dataTypeCode: Int64
    let dtype: DType
    let storage: ONNXTensorStorage
    /// Checked at parse time, so records built from headers never overflow.
    let elementCount: Int

    var byteCount: Int {
        if let bytes = checkedByteCount(shape, dtype) { return bytes }
        if case let .raw(range) = storage { return range.count }
        return 0
    }

    var record: TensorRecord { TensorRecord(name: name, shape: shape, dtype: dtype, byteCount: byteCount) }
}

/// Checks a shape from a file: no negative dimension, element count fits in Int.
func validatedElementCount(_ shape: [Int], path: String, tensor: String) throws -> Int {
    if let negative = shape.first(where: { $0 < 0 }) {
        throw ZooError.badTensor(path: path, tensor: tensor, reason: "negative dimension \(negative) in shape \(shape)")
    }
    guard let count = checkedElementCount(shape) else {
        throw ZooError.badTensor(path: path, tensor: tensor, reason: "shape \(shape) has more elements than fit in memory (product overflows)")
    }
    return count
}

/// Parses the TensorProto occupying `range` of `bytes`. `fallbackName` names the tensor in
/// messages and records when the file gives it no name (tensors inside attributes).
func parseTensorHeader(_ bytes: UnsafeRawBufferPointer, range: Range<Int>, path: String,
                       fallbackName: String, nameOverride: String? = nil) throws -> ONNXTensorHeader {
    var scanner = WireScanner(bytes, range: range)
    var dims: [Int64] = []
    var dataTypeCode: Int64 = 0
    var name = ""
    var raw: Range<Int>?
    var segmented = false
    var dataLocation: Int64 = 0
    var externalEntries: [(key: String, value: String)] = []
    // Elements present in each typed field, counted from the wire without decoding values.
    var typedCounts: [Int: Int] = [:]

    func label() -> String { nameOverride ?? (name.isEmpty ? fallbackName : name) }
    func malformed(_ error: WireFormatError) -> ZooError {
        .badTensor(path: path, tensor: label(), reason: "malformed TensorProto at byte \(error.offset): \(error.reason)")
    }

    do {
        while let field = try scanner.next() {
            switch (field.number, field.wireType) {
            case (TensorField.dims, .varint):
                dims.append(field.signedValue)
            case (TensorField.dims, .lengthDelimited):
                dims.append(contentsOf: try decodePackedVarints(bytes, field.payload))
            case (TensorField.dataType, .varint):
                dataTypeCode = field.signedValue
            case (TensorField.segment, _):
                segmented = true
            case (TensorField.name, .lengthDelimited):
                name = scanner.string(field)
            case (TensorField.rawData, .lengthDelimited):
                raw = field.payload
            case (TensorField.dataLocation, .varint):
                dataLocation = field.signedValue
            case (TensorField.externalData, .lengthDelimited):
                externalEntries.append(try parseStringEntry(bytes, field.payload))
            case (TensorField.floatData, .fixed32), (TensorField.doubleData, .fixed64),
                 (TensorField.int32Data, .varint), (TensorField.int64Data, .varint),
                 (TensorField.uint64Data, .varint), (TensorField.stringData, .lengthDelimited):
                typedCounts[field.number, default: 0] += 1
            case (TensorField.floatData, .lengthDelimited):
                guard field.payload.count % 4 == 0 else {
                    throw WireFormatError(offset: field.payload.lowerBound, reason: "packed float_data of \(field.payload.count) bytes is not whole floats")
                }
                typedCounts[field.number, default: 0] += field.payload.count / 4
            case (TensorField.doubleData, .lengthDelimited):
                guard field.payload.count % 8 == 0 else {
                    throw WireFormatError(offset: field.payload.lowerBound, reason: "packed double_data of \(field.payload.count) bytes is not whole doubles")
                }
                typedCounts[field.number, default: 0] += field.payload.count / 8
            case (TensorField.int32Data, .lengthDelimited), (TensorField.int64Data, .lengthDelimited),
                 (TensorField.uint64Data, .lengthDelimited):
                typedCounts[field.number, default: 0] += try countPackedVarints(bytes, field.payload)
            case (TensorField.dims, _), (TensorField.dataType, _), (TensorField.name, _), (TensorField.rawData, _),
                 (TensorField.dataLocation, _), (TensorField.externalData, _), (TensorField.floatData, _),
                 (TensorField.doubleData, _), (TensorField.int32Data, _), (TensorField.int64Data, _),
                 (TensorField.uint64Data, _), (TensorField.stringData, _):
                throw WireFormatError(offset: field.payload.lowerBound,
                                      reason: "field \(field.number) has wire type \(field.wireType), which TensorProto does not allow there")
            default:
                continue  // doc_string, metadata_props, future fields
            }
        }
    } catch let error as WireFormatError {
        throw malformed(error)
    }

    let tensorName = label()
    if segmented {
        throw ZooError.badTensor(path: path, tensor: tensorName, reason: "segmented tensors (TensorProto.segment) are not supported")
    }
    var shape: [Int] = []
    shape.reserveCapacity(dims.count)
    for dim in dims {
        // Int is 64-bit on every platform this builds for; Int(exactly:) keeps that honest.
        guard let value = Int(exactly: dim) else {
            throw ZooError.badTensor(path: path, tensor: tensorName, reason: "dimension \(dim) does not fit in Int")
        }
        shape.append(value)
    }
    let elementCount = try validatedElementCount(shape, path: path, tensor: tensorName)
    let type = dtype(forONNXDataType: dataTypeCode)
    let expectedBytes = checkedByteCount(shape, type)
    if type.byteWidth != nil && expectedBytes == nil {
        throw ZooError.badTensor(path: path, tensor: tensorName, reason: "shape \(shape) of \(type) is more bytes than fit in memory")
    }

    let storage: ONNXTensorStorage
    if dataLocation == 1 {
        storage = .external(try externalReference(externalEntries, path: path, tensor: tensorName))
    } else if let raw {
        if let expectedBytes, raw.count != expectedBytes {
            throw ZooError.badTensor(path: path, tensor: tensorName,
                                     reason: "raw_data holds \(raw.count) bytes but shape \(shape) of \(type) needs \(expectedBytes)")
        }
        storage = .raw(raw)
    } else if elementCount == 0 {
        storage = .empty
    } else {
        let field = typedField(for: type)
        let perElement = (type == .complex64 || type == .complex128) ? 2 : 1
        let found = typedCounts[field] ?? 0
        guard found > 0 else {
            throw ZooError.badTensor(path: path, tensor: tensorName,
                                     reason: "no data: neither raw_data nor the typed field for \(onnxDataTypeName(dataTypeCode)), but shape \(shape) needs \(elementCount) values")
        }
        guard found == elementCount * perElement else {
            throw ZooError.badTensor(path: path, tensor: tensorName,
                                     reason: "typed field \(field) holds \(found) values but shape \(shape) needs \(elementCount * perElement)")
        }
        storage = .typed(field: field, message: range)
    }
    return ONNXTensorHeader(name: tensorName, shape: shape, dataTypeCode: dataTypeCode, dtype: type,
                            storage: storage, elementCount: elementCount)
}

private func countPackedVarints(_ bytes: UnsafeRawBufferPointer, _ payload: Range<Int>) throws -> Int {
    guard !payload.isEmpty else { return 0 }
    // A packed varint run must end on a byte without the continuation bit.
    guard bytes[payload.upperBound - 1] & 0x80 == 0 else {
        throw WireFormatError(offset: payload.upperBound - 1, reason: "packed varints end in the middle of a value")
    }
    var count = 0
    for index in payload where bytes[index] & 0x80 == 0 { count += 1 }
    return count
}

private func parseStringEntry(_ bytes: UnsafeRawBufferPointer, _ payload: Range<Int>) throws -> (key: String, value: String) {
    var scanner = WireScanner(bytes, range: payload)
    var key = "", value = ""
    while let field = try scanner.next() {
        guard field.wireType == .lengthDelimited else { continue }
        if field.number == 1 { key = scanner.string(field) }
        if field.number == 2 { value = scanner.string(field) }
    }
    return (key, value)
}

private func externalReference(_ entries: [(key: String, value: String)], path: String, tensor: String) throws -> ONNXExternalReference {
    var location: String?
    var offset = 0
    var length: Int?
    for (key, value) in entries {
        switch key {
        case "location":
            location = value
        case "offset", "length":
            guard let number = Int(value), number >= 0 else {
                throw ZooError.badTensor(path: path, tensor: tensor, reason: "external_data \(key) '\(value)' is not a non-negative integer")
            }
            if key == "offset" { offset = number } else { length = number }
        default:
            continue  // "checksum" and future keys
        }
    }
    guard let location, !location.isEmpty else {
        throw ZooError.badTensor(path: path, tensor: tensor, reason: "data_location is EXTERNAL but external_data has no 'location'")
    }
    return ONNXExternalReference(location: location, offset: offset, length: length)
}
