import Foundation

/// Writes a state_dict as torch.save does since 1.6: a zip archive of stored entries,
/// `archive/data.pkl` (a protocol-2 pickle of an OrderedDict of tensors) and one
/// `archive/data/<i>` entry per tensor with its data 64-byte aligned. The pickle names only
/// the globals `torch.load(weights_only=True)` allows: `collections.OrderedDict`,
/// `torch._utils._rebuild_tensor_v2` and the storage types.
public enum PthWriter {
    /// The archive's folder name. torch.load takes whatever the first entry's folder is.
    static let archiveName = "archive"

    /// Writes float32 `tensors` and then `int64Scalars` (0-dimensional, as BatchNorm's
    /// `num_batches_tracked`), in that order, atomically.
    public static func write(_ tensors: [(name: String, tensor: Tensor)], int64Scalars: [(name: String, value: Int64)] = [],
                             to path: String) throws {
        var seen = Set<String>()
        for name in tensors.map(\.name) + int64Scalars.map(\.name) where !seen.insert(name).inserted {
            throw ZooError.writeFailed(path: path, reason: "tensor name '\(name)' is used twice")
        }
        for (name, tensor) in tensors where checkedElementCount(tensor.shape) != tensor.data.count {
            throw ZooError.writeFailed(path: path, reason: "tensor '\(name)' has shape \(tensor.shape) but \(tensor.data.count) values")
        }
        var pickle = PickleWriter()
        pickle.beginStateDict()
        var key = 0
        for (name, tensor) in tensors {
            pickle.tensor(name: name, storageType: "FloatStorage", key: String(key), shape: tensor.shape)
            key += 1
        }
        for (name, _) in int64Scalars {
            pickle.tensor(name: name, storageType: "LongStorage", key: String(key), shape: [])
            key += 1
        }
        pickle.endStateDict()

        let prefix = archiveName + "/"
        try AtomicFileWriter.write(to: path) { file in
            var zip = AlignedZipWriter(file)
            try zip.add(prefix + "data.pkl", bytes: pickle.bytes)
            try zip.add(prefix + ".format_version", bytes: Array("1".utf8))
            try zip.add(prefix + ".storage_alignment", bytes: Array(String(AlignedZipWriter.alignment).utf8))
            try zip.add(prefix + "byteorder", bytes: Array("little".utf8))
            var index = 0
            for (_, tensor) in tensors {
                let crc = tensor.data.withUnsafeBytes { zipCRC32($0) }
                try zip.add(prefix + "data/\(index)", size: tensor.data.count * MemoryLayout<Float>.size, crc: crc) {
                    try file.writeLittleEndian(tensor.data)
                }
                index += 1
            }
            for (_, value) in int64Scalars {
                var bytes: [UInt8] = []
                withUnsafeBytes(of: value.littleEndian) { bytes += $0 }
                try zip.add(prefix + "data/\(index)", bytes: bytes)
                index += 1
            }
            try zip.add(prefix + "version", bytes: Array("3\n".utf8))
            try zip.finish()
        }
    }
}

/// Emits the protocol-2 pickle opcodes of a state_dict, the way Python's pickler lays it
/// out for torch.save (memoized globals, one SETITEMS), so torch reads it as its own.
struct PickleWriter {
    private(set) var bytes: [UInt8] = [0x80, 0x02]
    private var memo: [String: UInt8] = [:]
    private var nextMemo: UInt32 = 0
    private var pending = 0

    /// GLOBAL the first time, BINGET after.
    private mutating func global(_ module: String, _ name: String) {
        let key = module + "\n" + name
        if let index = memo[key] {
            bytes += [0x68, index]
            return
        }
        bytes += [0x63] + Array((key + "\n").utf8)
        if nextMemo < 256 {
            memo[key] = UInt8(nextMemo)
            bytes += [0x71, UInt8(nextMemo)]
            nextMemo += 1
        }
    }

    private mutating func string(_ text: String) {
        let utf8 = Array(text.utf8)
        bytes.append(0x58)
        bytes += withUnsafeBytes(of: UInt32(utf8.count).littleEndian, Array.init)
        bytes += utf8
    }

    private mutating func integer(_ value: Int) {
        switch value {
        case 0...0xFF: bytes += [0x4B, UInt8(value)]
        case 0x100...0xFFFF: bytes += [0x4D, UInt8(value & 0xFF), UInt8(value >> 8)]
        case Int(Int32.min)...Int(Int32.max):
            bytes.append(0x4A)
            bytes += withUnsafeBytes(of: Int32(value).littleEndian, Array.init)
        default:
            // LONG1: the shortest two's-complement little-endian form.
            var raw = withUnsafeBytes(of: Int64(value).littleEndian, Array.init)
            while raw.count > 1, let last = raw.last,
                  (last == 0 && raw[raw.count - 2] & 0x80 == 0) || (last == 0xFF && raw[raw.count - 2] & 0x80 != 0) {
                raw.removeLast()
            }
            bytes += [0x8A, UInt8(raw.count)] + raw
        }
    }

    private mutating func tuple(_ values: [Int]) {
        switch values.count {
        case 0: bytes.append(0x29)
        case 1...3:
            values.forEach { integer($0) }
            bytes.append(0x84 + UInt8(values.count))
        default:
            bytes.append(0x28)
            values.forEach { integer($0) }
            bytes.append(0x74)
        }
    }

    mutating func beginStateDict() {
        global("collections", "OrderedDict")
        bytes += [0x29, 0x52]  // EMPTY_TUPLE REDUCE
        bytes.append(0x28)     // MARK for SETITEMS
    }

    /// One `name: _rebuild_tensor_v2(storage, 0, shape, contiguous strides, False, OrderedDict())`.
    mutating func tensor(name: String, storageType: String, key: String, shape: [Int]) {
        // Python's pickler flushes SETITEMS every 1000 items; keeping batches that size keeps
        // the unpickler's stack as small as torch's own files do.
        if pending == 1000 {
            bytes += [0x75, 0x28]
            pending = 0
        }
        string(name)
        global("torch._utils", "_rebuild_tensor_v2")
        bytes.append(0x28)           // MARK: the argument tuple
        bytes.append(0x28)           // MARK: the persistent id
        string("storage")
        global("torch", storageType)
        string(key)
        string("cpu")
        integer(shape.reduce(1, *))
        bytes += [0x74, 0x51]        // TUPLE BINPERSID
        integer(0)                   // storage offset
        tuple(shape)
        var strides = [Int](repeating: 1, count: shape.count)
        for i in stride(from: shape.count - 2, through: 0, by: -1) { strides[i] = strides[i + 1] * shape[i + 1] }
        tuple(strides)
        bytes.append(0x89)           // requires_grad False
        global("collections", "OrderedDict")
        bytes += [0x29, 0x52]        // backward hooks: OrderedDict()
        bytes += [0x74, 0x52]        // TUPLE REDUCE
        pending += 1
    }

    mutating func endStateDict() {
        bytes += [0x75, 0x2E]  // SETITEMS STOP
    }
}
