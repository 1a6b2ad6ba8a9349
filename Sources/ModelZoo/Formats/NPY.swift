import Foundation

/// NumPy `.npy` files: one array with a small header (`\x93NUMPY`, version, header length,
/// then a Python dict literal with `descr`, `fortran_order` and `shape`).
///
/// Reading accepts format versions 1.0, 2.0 and 3.0, element types `<f4`, `>f4`, `<f8`,
/// `>f8`, `<f2` and `>f2` (all widened or narrowed to float32), C order only. Writing
/// produces version 1.0 `<f4`, atomically.
public enum NPY {
    /// Longest header accepted; numpy itself refuses headers over 10,000 bytes by default.
    static let maximumHeaderBytes = 1 << 20

    public static func read(path: String) throws -> Tensor {
        let file = try ReadOnlyFile(path: path)
        let header = try NPYHeader(file: file)
        return try header.readData(from: file)
    }

    public static func write(_ tensor: Tensor, to path: String) throws {
        guard checkedElementCount(tensor.shape) == tensor.data.count else {
            throw ZooError.writeFailed(path: path, reason: "shape \(tensor.shape) does not hold \(tensor.data.count) values")
        }
        let shape: String
        switch tensor.shape.count {
        case 0: shape = "()"
        case 1: shape = "(\(tensor.shape[0]),)"
        default: shape = "(" + tensor.shape.map(String.init).joined(separator: ", ") + ")"
        }
        var dictionary = Array("{'descr': '<f4', 'fortran_order': False, 'shape': \(shape), }".utf8)
        // Version 1.0 keeps the header length in 2 bytes; numpy switches to 2.0 past that.
        let longHeader = dictionary.count + 11 > Int(UInt16.max)
        let prefixLength = longHeader ? 12 : 10
        // numpy pads with spaces and ends with a newline so the data starts 64-byte aligned.
        let padding = (64 - (prefixLength + dictionary.count + 1) % 64) % 64
        dictionary += [UInt8](repeating: 0x20, count: padding) + [0x0A]
        var prefix: [UInt8] = [0x93] + Array("NUMPY".utf8) + [longHeader ? 2 : 1, 0]
        let length = dictionary.count
        prefix += (0..<(longHeader ? 4 : 2)).map { UInt8(truncatingIfNeeded: length >> (8 * $0)) }

        try AtomicFileWriter.write(to: path) { writer in
            try writer.write(prefix + dictionary)
            try writer.writeLittleEndian(tensor.data)
        }
    }
}

/// A `.npy` file opened as a weight file: its one array, named by the file name without
/// `.npy`, so `zoo inspect x.npy` works like for any other format.
public final class NPYFile: WeightFile {
    public let path: String
    public var format: WeightFormat { .npy }
    public var producer: String? { "numpy (format \(header.version))" }
    public let tensors: [TensorRecord]
    private let header: NPYHeader
    private let file: ReadOnlyFile

    public init(path: String) throws {
        self.path = path
        file = try ReadOnlyFile(path: path)
        header = try NPYHeader(file: file)
        var name = URL(fileURLWithPath: path).lastPathComponent
        if name.lowercased().hasSuffix(".npy") { name = String(name.dropLast(4)) }
        tensors = [TensorRecord(name: name, shape: header.shape, dtype: header.dtype, byteCount: header.byteCount)]
    }

    public func load(_ name: String) throws -> Tensor {
        guard let record = tensors.first, record.name == name else {
            throw ZooError.badTensor(path: path, tensor: name, reason: "no such tensor; this .npy file holds '\(tensors.first?.name ?? "")'")
        }
        return try header.readData(from: file)
    }
}

/// The parsed and size-checked header of a `.npy` file.
struct NPYHeader {
    let path: String
    let version: String
    let descr: String
    let dtype: DType
    let bigEndian: Bool
    let shape: [Int]
    let dataOffset: Int
    let byteCount: Int

    init(file: ReadOnlyFile) throws {
        path = file.path
        let path = file.path
        func unreadable(_ reason: String) -> ZooError { .unreadableFile(path: path, reason: reason) }
        let prefix = try file.bytes(at: 0, count: 12)
        guard prefix.count >= 10, prefix[0] == 0x93, Array(prefix[1..<6]) == Array("NUMPY".utf8) else {
            throw unreadable("not an npy file (no \\x93NUMPY magic)")
        }
        let major = prefix[6], minor = prefix[7]
        version = "\(major).\(minor)"
        let headerLength: Int
        switch major {
        case 1:
            headerLength = Int(prefix[8]) | Int(prefix[9]) << 8
            dataOffset = 10 + headerLength
        case 2, 3:
            guard prefix.count >= 12 else { throw unreadable("truncated npy header") }
            headerLength = (8..<12).reduce(0) { $0 | Int(prefix[$1]) << (8 * ($1 - 8)) }
            dataOffset = 12 + headerLength
        default:
            throw unreadable("npy format version \(version) is not supported (1.0, 2.0 and 3.0 are)")
        }
        guard headerLength <= NPY.maximumHeaderBytes else {
            throw unreadable("npy header of \(headerLength) bytes is over the \(NPY.maximumHeaderBytes)-byte limit")
        }
        guard dataOffset <= file.size else {
            throw unreadable("truncated: the npy header needs \(dataOffset) bytes, the file has \(file.size)")
        }
        // Versions 1 and 2 are latin-1; 3 is UTF-8. Only ASCII matters for the keys we read.
        let headerBytes = try file.bytes(at: dataOffset - headerLength, count: headerLength)
        let text = major == 3 ? String(decoding: headerBytes, as: UTF8.self)
                              : String(headerBytes.map { Character(Unicode.Scalar($0)) })
        let dictionary: [String: PythonLiteral]
        do {
            var parser = PythonLiteralParser(text)
            guard case let .dictionary(entries) = try parser.parseValue() else {
                throw unreadable("npy header is not a dict: \(text.prefix(200))")
            }
            dictionary = entries
        } catch let error as PythonLiteralParser.Failure {
            throw unreadable("cannot parse npy header (\(error.message)): \(text.prefix(200))")
        }
        guard case let .string(descr)? = dictionary["descr"] else {
            throw unreadable("npy header has no 'descr' string (structured arrays are not supported): \(text.prefix(200))")
        }
        self.descr = descr
        guard case let .boolean(fortran)? = dictionary["fortran_order"] else {
            throw unreadable("npy header has no 'fortran_order' flag")
        }
        if fortran {
            throw unreadable("array is stored in Fortran (column-major) order; only C order is supported "
                + "(save np.ascontiguousarray(a) instead)")
        }
        guard case let .tuple(dims)? = dictionary["shape"] else {
            throw unreadable("npy header has no 'shape' tuple")
        }
        shape = try dims.map { dim in
            guard case let .integer(size) = dim, size >= 0 else { throw unreadable("shape \(dims) is not a tuple of sizes") }
            return size
        }
        let types: [String: DType] = ["f4": .float32, "f8": .float64, "f2": .float16]
        let order = descr.first
        if let type = types[String(descr.dropFirst())], order == "<" || order == ">" || order == "=" {
            dtype = type
            bigEndian = order == ">"
        } else {
            let names: [String: DType] = ["i1": .int8, "u1": .uint8, "i2": .int16, "u2": .uint16, "i4": .int32,
                                          "u4": .uint32, "i8": .int64, "u8": .uint64, "b1": .bool,
                                          "c8": .complex64, "c16": .complex128]
            dtype = names[String(descr.dropFirst())] ?? .unknown
            bigEndian = order == ">"
        }
        guard let count = checkedElementCount(shape) else { throw unreadable("shape \(shape) overflows") }
        if let width = dtype.byteWidth {
            let (bytes, overflow) = count.multipliedReportingOverflow(by: width)
            guard !overflow else { throw unreadable("shape \(shape) overflows") }
            byteCount = bytes
            guard bytes <= file.size - dataOffset else {
                throw unreadable("truncated: shape \(shape) of '\(descr)' needs \(bytes) bytes of data, "
                    + "the file has \(file.size - dataOffset)")
            }
        } else {
            byteCount = file.size - dataOffset
        }
    }

    func readData(from file: ReadOnlyFile) throws -> Tensor {
        let count = shape.reduce(1, *)  // checked in init
        switch dtype {
        case .float32:
            var data = try [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
                if let base = buffer.baseAddress { try file.read(into: base, count: byteCount, at: dataOffset) }
                initialized = count
            }
            if bigEndian != hostIsBigEndian {
                data = data.map { Float(bitPattern: $0.bitPattern.byteSwapped) }
            }
            return Tensor(shape: shape, data: data)
        case .float64:
            let raw = try readRaw(UInt64.self, count: count, from: file)
            let swap = bigEndian != hostIsBigEndian
            return Tensor(shape: shape, data: raw.map { Float(Double(bitPattern: swap ? $0.byteSwapped : $0)) })
        case .float16:
            let raw = try readRaw(UInt16.self, count: count, from: file)
            let swap = bigEndian != hostIsBigEndian
            return Tensor(shape: shape, data: raw.map { floatFromHalfBits(swap ? $0.byteSwapped : $0) })
        default:
            throw ZooError.badTensor(
                path: path, tensor: URL(fileURLWithPath: path).lastPathComponent,
                reason: "npy element type '\(descr)' (\(dtype.rawValue)) cannot load as float32; "
                    + "supported: <f4, >f4, <f8, >f8, <f2, >f2")
        }
    }

    private func readRaw<T>(_: T.Type, count: Int, from file: ReadOnlyFile) throws -> [T] {
        try [T](unsafeUninitializedCapacity: count) { buffer, initialized in
            if let base = buffer.baseAddress { try file.read(into: base, count: byteCount, at: dataOffset) }
            initialized = count
        }
    }

    private var hostIsBigEndian: Bool { 1.bigEndian == 1 }
}

/// The subset of Python literals `.npy` headers use.
enum PythonLiteral: Equatable {
    case string(String)
    case integer(Int)
    case boolean(Bool)
    case none
    case tuple([PythonLiteral])
    case dictionary([String: PythonLiteral])
}

/// Parses a Python literal such as `{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }`:
/// quoted strings, integers (with Python 2's `L` suffix, from old files), True/False/None,
/// tuples and lists (both read as tuples), and dicts with string keys; trailing commas allowed.
struct PythonLiteralParser {
    struct Failure: Error { let message: String }

    private let characters: [Character]
    private var position = 0
    private var depth = 0

    init(_ text: String) { characters = Array(text) }

    mutating func parseValue() throws -> PythonLiteral {
        skipSpace()
        guard position < characters.count else { throw Failure(message: "unexpected end") }
        depth += 1
        defer { depth -= 1 }
        guard depth < 32 else { throw Failure(message: "nested too deeply") }
        let c = characters[position]
        switch c {
        case "'", "\"": return .string(try parseString())
        case "(": return .tuple(try parseSequence(closing: ")"))
        case "[": return .tuple(try parseSequence(closing: "]"))
        case "{": return try parseDictionary()
        case "-", "0"..."9": return .integer(try parseInteger())
        default:
            for (word, value) in [("True", PythonLiteral.boolean(true)), ("False", .boolean(false)), ("None", .none)]
            where characters[position...].starts(with: word) {
                position += word.count
                return value
            }
            throw Failure(message: "unexpected '\(c)' at \(position)")
        }
    }

    private mutating func skipSpace() {
        while position < characters.count, characters[position].isWhitespace { position += 1 }
    }

    private mutating func parseString() throws -> String {
        let quote = characters[position]
        position += 1
        var out = ""
        while position < characters.count {
            let c = characters[position]
            position += 1
            if c == quote { return out }
            if c == "\\", position < characters.count {
                out.append(characters[position])
                position += 1
            } else {
                out.append(c)
            }
        }
        throw Failure(message: "unterminated string")
    }

    private mutating func parseInteger() throws -> Int {
        let start = position
        if characters[position] == "-" { position += 1 }
        while position < characters.count, characters[position].isASCII, characters[position].isNumber { position += 1 }
        guard let value = Int(String(characters[start..<position])) else {
            throw Failure(message: "bad integer at \(start)")
        }
        if position < characters.count, characters[position] == "L" || characters[position] == "l" { position += 1 }
        return value
    }

    private mutating func parseSequence(closing: Character) throws -> [PythonLiteral] {
        position += 1
        var items: [PythonLiteral] = []
        while true {
            skipSpace()
            guard position < characters.count else { throw Failure(message: "unterminated sequence") }
            if characters[position] == closing { position += 1; return items }
            items.append(try parseValue())
            skipSpace()
            guard position < characters.count else { throw Failure(message: "unterminated sequence") }
            if characters[position] == "," { position += 1 } else if characters[position] != closing {
                throw Failure(message: "expected ',' or '\(closing)' at \(position)")
            }
        }
    }

    private mutating func parseDictionary() throws -> PythonLiteral {
        position += 1
        var entries: [String: PythonLiteral] = [:]
        while true {
            skipSpace()
            guard position < characters.count else { throw Failure(message: "unterminated dict") }
            if characters[position] == "}" { position += 1; return .dictionary(entries) }
            guard case let .string(key) = try parseValue() else { throw Failure(message: "dict key is not a string") }
            skipSpace()
            guard position < characters.count, characters[position] == ":" else { throw Failure(message: "expected ':'") }
            position += 1
            entries[key] = try parseValue()
            skipSpace()
            guard position < characters.count else { throw Failure(message: "unterminated dict") }
            if characters[position] == "," { position += 1 } else if characters[position] != "}" {
                throw Failure(message: "expected ',' or '}' at \(position)")
            }
        }
    }
}
