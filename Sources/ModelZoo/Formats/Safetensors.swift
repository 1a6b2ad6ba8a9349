import Foundation

/// The element types safetensors names, with their DType and byte width. FP8 types are
/// listed so their byte lengths can be checked, but they do not load.
private let safetensorsTypes: [String: (dtype: DType, width: Int)] = [
    "F64": (.float64, 8), "F32": (.float32, 4), "F16": (.float16, 2), "BF16": (.bfloat16, 2),
    "I64": (.int64, 8), "I32": (.int32, 4), "I16": (.int16, 2), "I8": (.int8, 1),
    "U64": (.uint64, 8), "U32": (.uint32, 4), "U16": (.uint16, 2), "U8": (.uint8, 1),
    "BOOL": (.bool, 1), "F8_E4M3": (.unknown, 1), "F8_E5M2": (.unknown, 1),
    "C64": (.complex64, 8),
]

/// A safetensors file: an 8-byte little-endian header length, a JSON header mapping each
/// tensor name to its dtype, shape and `[begin, end)` byte range in the data that follows,
/// and an optional `__metadata__` string map.
///
/// Opening reads and validates only the header: its length against the file size (and at
/// most `maximumHeaderBytes`), every range inside the data and no two ranges overlapping,
/// and every range's length equal to shape times dtype width. `load` widens F16, BF16 and F64
/// to float32; integer and boolean tensors are listed but refused by `load`. Tensors are
/// listed in the order their data lies in the file.
public final class SafetensorsFile: WeightFile, ProvidesStoredSpans {
    public static let maximumHeaderBytes = 100_000_000

    public let path: String
    public var format: WeightFormat { .safetensors }
    /// From `__metadata__["format"]` ("pt" -> "pytorch", "np" -> "numpy", ...), when present.
    public let producer: String?
    public let tensors: [TensorRecord]
    /// The `__metadata__` map, empty when the file has none.
    public let metadata: [String: String]

    private let file: ReadOnlyFile
    /// Absolute file offset of each tensor's first byte.
    private let dataOffsets: [String: Int]
    private let recordsByName: [String: TensorRecord]

    public init(path: String) throws {
        self.path = path
        let file = try ReadOnlyFile(path: path)
        self.file = file
        func unreadable(_ reason: String) -> ZooError { .unreadableFile(path: path, reason: reason) }

        guard file.size >= 8 else {
            throw unreadable("\(file.size) bytes is too short for a safetensors file (8-byte header length missing)")
        }
        let lengthBytes = try file.bytes(at: 0, count: 8)
        let declared = lengthBytes.reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        guard declared <= UInt64(SafetensorsFile.maximumHeaderBytes) else {
            throw unreadable("header length \(declared) is over the \(SafetensorsFile.maximumHeaderBytes)-byte limit; "
                + "not a safetensors file or corrupt")
        }
        let headerLength = Int(declared)
        guard headerLength <= file.size - 8 else {
            throw unreadable("header length \(headerLength) runs past the end of the file (\(file.size) bytes): truncated or not safetensors")
        }
        let headerBytes = try file.bytes(at: 8, count: headerLength)
        guard let json = try? JSONSerialization.jsonObject(with: Data(headerBytes)),
              let header = json as? [String: Any]
        else {
            throw unreadable("the \(headerLength)-byte header is not a JSON object")
        }
        let dataStart = 8 + headerLength
        let dataLength = file.size - dataStart

        var metadata: [String: String] = [:]
        var entries: [(record: TensorRecord, begin: Int, end: Int)] = []
        for (name, value) in header {
            if name == "__metadata__" {
                guard let map = value as? [String: Any] else { throw unreadable("__metadata__ is not an object") }
                for (key, item) in map {
                    guard let text = item as? String else { throw unreadable("__metadata__['\(key)'] is not a string") }
                    metadata[key] = text
                }
                continue
            }
            func bad(_ reason: String) -> ZooError { .badTensor(path: path, tensor: name, reason: reason) }
            guard let fields = value as? [String: Any],
                  let dtypeName = fields["dtype"] as? String,
                  let shapeValues = fields["shape"] as? [Any],
                  let offsetValues = fields["data_offsets"] as? [Any]
            else { throw bad("header entry needs dtype, shape and data_offsets") }
            guard let type = safetensorsTypes[dtypeName] else { throw bad("unknown dtype '\(dtypeName)'") }
            let shape = try shapeValues.map { item -> Int in
                guard let dim = SafetensorsFile.integer(item), dim >= 0 else { throw bad("shape \(shapeValues) is not a list of sizes") }
                return dim
            }
            guard offsetValues.count == 2, let begin = SafetensorsFile.integer(offsetValues[0]),
                  let end = SafetensorsFile.integer(offsetValues[1]), begin >= 0, begin <= end
            else { throw bad("data_offsets \(offsetValues) is not a [begin, end] pair") }
            guard end <= dataLength else {
                throw bad("data_offsets [\(begin), \(end)] lie outside the \(dataLength) bytes of data")
            }
            guard let count = checkedElementCount(shape) else { throw bad("shape \(shape) overflows") }
            let (bytes, overflow) = count.multipliedReportingOverflow(by: type.width)
            guard !overflow, bytes == end - begin else {
                throw bad("\(dtypeName) shape \(shape) needs \(overflow ? "more than Int.max" : String(bytes)) bytes "
                    + "but data_offsets [\(begin), \(end)] hold \(end - begin)")
            }
            entries.append((TensorRecord(name: name, shape: shape, dtype: type.dtype, byteCount: bytes), begin, end))
        }
        entries.sort { ($0.begin, $0.end, $0.record.name) < ($1.begin, $1.end, $1.record.name) }
        for (previous, next) in zip(entries, entries.dropFirst()) where next.begin < previous.end {
            throw unreadable("tensors '\(previous.record.name)' [\(previous.begin), \(previous.end)) and "
                + "'\(next.record.name)' [\(next.begin), \(next.end)) overlap")
        }
        tensors = entries.map(\.record)
        var offsets: [String: Int] = [:]
        var byName: [String: TensorRecord] = [:]
        for entry in entries {
            offsets[entry.record.name] = dataStart + entry.begin
            byName[entry.record.name] = entry.record
        }
        dataOffsets = offsets
        recordsByName = byName
        self.metadata = metadata
        let producers = ["pt": "pytorch", "np": "numpy", "tf": "tensorflow", "flax": "flax", "mlx": "mlx"]
        producer = metadata["format"].map { producers[$0] ?? $0 }
    }

    public func load(_ name: String) throws -> Tensor {
        guard let record = recordsByName[name], let offset = dataOffsets[name] else {
            throw ZooError.badTensor(path: path, tensor: name, reason: "no such tensor in this file")
        }
        let count = record.elementCount
        switch record.dtype {
        case .float32:
            let data = try [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
                if let base = buffer.baseAddress { try file.read(into: base, count: record.byteCount, at: offset) }
                initialized = count
            }
            return Tensor(shape: record.shape, data: fromLittleEndian(data))
        case .float16, .bfloat16:
            let bits = try readArray(UInt16.self, count: count, record: record, offset: offset)
            let widen = record.dtype == .float16 ? floatFromHalfBits : floatFromBFloat16Bits
            return Tensor(shape: record.shape, data: bits.map { widen(UInt16(littleEndian: $0)) })
        case .float64:
            let values = try readArray(UInt64.self, count: count, record: record, offset: offset)
            return Tensor(shape: record.shape, data: values.map { Float(Double(bitPattern: UInt64(littleEndian: $0))) })
        default:
            throw ZooError.badTensor(path: path, tensor: name,
                                     reason: "stored as \(record.dtype.rawValue); only floating-point tensors load as float32")
        }
    }

    func storedSpan(of name: String) -> StoredSpan? {
        #if _endian(little)
        guard let record = recordsByName[name], record.dtype == .float32, let offset = dataOffsets[name] else { return nil }
        return StoredSpan(path: path, offset: offset, byteCount: record.byteCount)
        #else
        return nil
        #endif
    }

    private func readArray<T>(_: T.Type, count: Int, record: TensorRecord, offset: Int) throws -> [T] {
        try [T](unsafeUninitializedCapacity: count) { buffer, initialized in
            if let base = buffer.baseAddress { try file.read(into: base, count: record.byteCount, at: offset) }
            initialized = count
        }
    }

    private func fromLittleEndian(_ values: [Float]) -> [Float] {
        #if _endian(big)
        return values.map { Float(bitPattern: UInt32(littleEndian: $0.bitPattern)) }
        #else
        return values
        #endif
    }

    /// JSON integers arrive as NSNumber; a fraction or a value beyond Int is not a size.
    private static func integer(_ value: Any) -> Int? {
        guard let number = value as? NSNumber else { return nil }
        let approximate = number.doubleValue
        guard approximate.isFinite, approximate.rounded() == approximate,
              approximate > -9.2e18, approximate < 9.2e18 else { return nil }
        return Int(number.int64Value)
    }
}

/// Writes float32 tensors as a safetensors file.
public enum SafetensorsWriter {
    /// Writes `tensors` in the given order (names must be unique and not `__metadata__`),
    /// with `metadata` as the `__metadata__` map. The header is padded with spaces to a
    /// multiple of 8 bytes so the data starts aligned. The file appears under `path` only
    /// once complete. `int64Scalars` are written after the tensors as 0-dimensional I64
    /// entries: torch's BatchNorm `num_batches_tracked` buffers, which
    /// `load_state_dict(strict=True)` insists on.
    public static func write(_ tensors: [(name: String, tensor: Tensor)], metadata: [String: String] = [:],
                             int64Scalars: [(name: String, value: Int64)] = [], to path: String) throws {
        for (name, tensor) in tensors where checkedElementCount(tensor.shape) != tensor.data.count {
            throw ZooError.writeFailed(path: path, reason: "tensor '\(name)' has shape \(tensor.shape) but \(tensor.data.count) values")
        }
        try write(payloads: tensors.map { ($0.name, $0.tensor.shape, .values($0.tensor.data)) }, metadata: metadata,
                  int64Scalars: int64Scalars, to: path)
    }

    /// The same with values that may still be in another file (copied in the kernel).
    static func write(payloads tensors: [(name: String, shape: [Int], payload: TensorPayload)],
                      metadata: [String: String] = [:], int64Scalars: [(name: String, value: Int64)] = [],
                      to path: String, beforeCommit: (() throws -> Void)? = nil) throws {
        var seen = Set<String>()
        var header = "{"
        var first = true
        if !metadata.isEmpty {
            let entries = metadata.sorted { $0.key < $1.key }
                .map { "\(jsonString($0.key)):\(jsonString($0.value))" }
            header += "\"__metadata__\":{\(entries.joined(separator: ","))}"
            first = false
        }
        var offset = 0
        for (name, tensorShape, payload) in tensors {
            guard name != "__metadata__", seen.insert(name).inserted else {
                throw ZooError.writeFailed(path: path, reason: "tensor name '\(name)' is reserved or used twice")
            }
            guard checkedElementCount(tensorShape) == payload.elementCount, payload.byteCount % 4 == 0 else {
                throw ZooError.writeFailed(path: path, reason: "tensor '\(name)' has shape \(tensorShape) but \(payload.elementCount) values")
            }
            let bytes = payload.byteCount
            let shape = tensorShape.map(String.init).joined(separator: ",")
            header += (first ? "" : ",")
                + "\(jsonString(name)):{\"dtype\":\"F32\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(offset + bytes)]}"
            first = false
            offset += bytes
        }
        for (name, _) in int64Scalars {
            guard name != "__metadata__", seen.insert(name).inserted else {
                throw ZooError.writeFailed(path: path, reason: "tensor name '\(name)' is reserved or used twice")
            }
            header += (first ? "" : ",") + "\(jsonString(name)):{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[\(offset),\(offset + 8)]}"
            first = false
            offset += 8
        }
        header += "}"
        var headerBytes = Array(header.utf8)
        headerBytes += [UInt8](repeating: 0x20, count: (8 - headerBytes.count % 8) % 8)
        let length = UInt64(headerBytes.count)
        let lengthBytes = (0..<8).map { UInt8(truncatingIfNeeded: length >> (8 * UInt64($0))) }

        try AtomicFileWriter.write(to: path, beforeCommit: beforeCommit) { writer in
            try writer.write(lengthBytes + headerBytes)
            for (_, _, payload) in tensors {
                try payload.write(to: writer)
            }
            var scalars: [UInt8] = []
            for (_, value) in int64Scalars {
                withUnsafeBytes(of: value.littleEndian) { scalars += $0 }
            }
            try writer.write(scalars)
        }
    }
}

/// A JSON string literal, escaping what JSON requires.
func jsonString(_ text: String) -> String {
    var out = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case _ where scalar.value < 0x20:
            out += "\\u" + String(repeating: "0", count: 4 - String(scalar.value, radix: 16).count)
                + String(scalar.value, radix: 16)
        default: out.unicodeScalars.append(scalar)
        }
    }
    return out + "\""
}
