#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CONNX
import CProtobufC

/// An ONNX model file, read lazily.
///
/// How it is read, and why:
/// - The file is memory-mapped. protobuf-c's unpacker copies every `bytes` field, so unpacking
///   the ModelProto would copy every weight at open and double peak memory. Instead a small
///   bounds-checked wire scanner (`WireScanner`) walks ModelProto and GraphProto, and parses
///   each initializer's TensorProto header (name, dims, data_type, where raw_data or the typed
///   values lie, external_data). Weight bytes are not touched at open.
/// - Everything that is not a weight goes through protobuf-c: each NodeProto, ValueInfoProto
///   and OperatorSetIdProto is unpacked from its own byte range and turned into Swift values
///   at once, then freed. Only a Constant node's value is copied there, briefly, one node at
///   a time; its data is still read lazily, from the byte range the scanner found.
/// - Loading a tensor `pread`s its bytes straight into the Float array (no intermediate
///   copy, and mapped pages of weights are never touched, so they do not add to the
///   process's resident memory).
///
/// Tensors come from graph initializers, Constant nodes (named by their output) and
/// ConstantOfShape nodes whose shape input is a constant (named by their output; the ONNX
/// model zoo's Caffe2 exports give every weight this way).
public final class ONNXFile: WeightFile, ProvidesStoredSpans {
    public let path: String
    public var format: WeightFormat { .onnx }
    /// "producer_name producer_version", or nil when the file names no producer.
    public let producer: String?
    public let tensors: [TensorRecord]
    public let onnxGraph: ONNXGraph
    public var graph: FileGraph? { .onnx(onnxGraph) }
    public var opsetVersion: Int { onnxGraph.opsetVersion }
    /// The model's `metadata_props` (key to value; a repeated key keeps its last value).
    public let metadata: [String: String]

    private let file: MappedFile
    /// Every loadable tensor: the listed ones plus tensor attributes of other nodes.
    private let headers: [String: ONNXTensorHeader]

    public init(path: String) throws {
        let file = try MappedFile(path: path)
        guard file.size > 0 else {
            throw ZooError.unreadableFile(path: path, reason: "empty file: not an ONNX model")
        }
        let bytes = file.bytes
        let model = try ModelLayout(bytes, path: path)
        var layout = GraphLayout()
        for range in model.graphRanges {
            try layout.scan(bytes, range: range, path: path)
        }

        var headers: [String: ONNXTensorHeader] = [:]
        var records: [TensorRecord] = []
        var initializerNames: [String] = []
        func register(_ header: ONNXTensorHeader, listed: Bool) {
            // The first definition of a name wins; ONNX forbids duplicates anyway.
            guard headers[header.name] == nil else { return }
            headers[header.name] = header
            if listed { records.append(header.record) }
        }

        for (index, range) in layout.initializerRanges.enumerated() {
            let header = try parseTensorHeader(bytes, range: range, path: path, fallbackName: "initializer #\(index)")
            initializerNames.append(header.name)
            register(header, listed: true)
        }

        var nodes: [ONNXNode] = []
        nodes.reserveCapacity(layout.nodeRanges.count)
        for (index, range) in layout.nodeRanges.enumerated() {
            let (node, attributeTensors) = try unpackNode(bytes, range: range, index: index, path: path)
            nodes.append(node)
            for header in attributeTensors where !(node.isDefaultDomain && node.opType == "Constant") {
                register(header, listed: false)
            }
            if node.isDefaultDomain, let output = node.outputs.first, !output.isEmpty {
                if node.opType == "Constant",
                   let header = try constantTensor(node, output: output, attributeTensors: attributeTensors, path: path) {
                    register(header, listed: true)
                } else if node.opType == "ConstantOfShape",
                          let header = try filledTensor(node, output: output, known: headers, bytes: bytes, path: path) {
                    register(header, listed: true)
                }
            }
        }

        var opsets: [String: Int] = [:]
        for range in model.opsetRanges {
            let (domain, version) = try unpackOpset(bytes, range: range, path: path)
            opsets[domain == "ai.onnx" ? "" : domain] = version
        }

        self.file = file
        self.path = path
        self.metadata = model.metadata
        self.headers = headers
        self.tensors = records
        self.onnxGraph = ONNXGraph(
            name: layout.name,
            nodes: nodes,
            inputs: try layout.inputRanges.map { try unpackValueInfo(bytes, range: $0, path: path) },
            outputs: try layout.outputRanges.map { try unpackValueInfo(bytes, range: $0, path: path) },
            initializerNames: initializerNames,
            opsetVersion: opsets[""] ?? 0,
            opsetImports: opsets,
            producerName: model.producerName,
            producerVersion: model.producerVersion,
            irVersion: model.irVersion)
        let producerText = [model.producerName, model.producerVersion].filter { !$0.isEmpty }.joined(separator: " ")
        self.producer = producerText.isEmpty ? nil : producerText
    }

    // MARK: Loading

    public func load(_ name: String) throws -> Tensor {
        guard let header = headers[name] else {
            throw ZooError.badTensor(path: path, tensor: name, reason: "no such tensor in the file")
        }
        return Tensor(shape: header.shape, data: try loadFloats(header))
    }

    func storedSpan(of name: String) -> StoredSpan? {
        #if _endian(little)
        guard let header = headers[name], header.dtype == .float32, case let .raw(range) = header.storage,
              range.count == header.byteCount else { return nil }
        return StoredSpan(path: path, offset: range.lowerBound, byteCount: range.count)
        #else
        return nil
        #endif
    }

    /// Every listed tensor that converts to float32, by name. Tensors of other types
    /// (the int64 shape inputs of ConstantOfShape, for one) stay in `tensors` but are left
    /// out here.
    public func loadAll() throws -> [String: Tensor] {
        var result: [String: Tensor] = [:]
        result.reserveCapacity(tensors.count)
        for record in tensors where record.dtype.convertsToFloat32 {
            result[record.name] = try load(record.name)
        }
        return result
    }

    /// The values of an integer tensor (int64, int32, ...) such as a Reshape target shape,
    /// widened to Int64. Refuses tensors of more than `limit` elements: this is for small
    /// shape-like constants, not weights.
    public func loadIntegers(_ name: String, limit: Int = 1 << 20) throws -> [Int64] {
        guard let header = headers[name] else {
            throw ZooError.badTensor(path: path, tensor: name, reason: "no such tensor in the file")
        }
        return try integerValues(header, limit: limit)
    }

    private func loadFloats(_ header: ONNXTensorHeader) throws -> [Float] {
        guard header.dtype.convertsToFloat32 else {
            throw ZooError.badTensor(path: path, tensor: header.name,
                                     reason: "element type \(onnxDataTypeName(header.dataTypeCode)) cannot be loaded as float32 (only FLOAT, FLOAT16 and BFLOAT16 can)")
        }
        let count = header.elementCount
        switch header.storage {
        case .empty:
            return []
        case let .inlineFloats(values):
            return values
        case .inlineInts:
            throw ZooError.badTensor(path: path, tensor: header.name, reason: "holds integers, not floats")
        case let .fill(value):
            let single = try loadFloats(value)
            guard single.count == 1, let fillValue = single.first else {
                throw ZooError.badTensor(path: path, tensor: header.name,
                                         reason: "ConstantOfShape value must hold one element, found \(single.count)")
            }
            return [Float](repeating: fillValue, count: count)
        case let .typed(field, message):
            return try decodeTypedFloats(header, field: field, message: message)
        case .raw, .external:
            if header.dtype == .float32 {
                var values = try readStored(header, as: Float.self, count: count)
                #if _endian(big)
                values = values.map { Float(bitPattern: UInt32(littleEndian: $0.bitPattern)) }
                #endif
                return values
            }
            let halves = try readStored(header, as: UInt16.self, count: count)
            let isBFloat16 = header.dtype == .bfloat16
            return halves.withUnsafeBufferPointer { source in
                isBFloat16 ? widen16(source, floatFromBFloat16Bits) : widen16(source, floatFromHalfBits)
            }
        }
    }

    /// Float values from float_data (FLOAT) or int32_data (FLOAT16/BFLOAT16 bit patterns),
    /// packed or not, in the order they appear.
    private func decodeTypedFloats(_ header: ONNXTensorHeader, field: Int, message: Range<Int>) throws -> [Float] {
        let bytes = file.bytes
        var values: [Float] = []
        values.reserveCapacity(header.elementCount)
        let isBFloat16 = header.dtype == .bfloat16
        func convert(_ bits: UInt16) -> Float { isBFloat16 ? floatFromBFloat16Bits(bits) : floatFromHalfBits(bits) }
        var scanner = WireScanner(bytes, range: message)
        do {
            while let item = try scanner.next() {
                guard item.number == field else { continue }
                switch (header.dtype, item.wireType) {
                case (.float32, .fixed32):
                    values.append(Float(bitPattern: UInt32(truncatingIfNeeded: item.scalar)))
                case (.float32, .lengthDelimited):
                    var offset = item.payload.lowerBound
                    while offset + 4 <= item.payload.upperBound {
                        let word = UInt32(bytes[offset]) | UInt32(bytes[offset + 1]) << 8
                            | UInt32(bytes[offset + 2]) << 16 | UInt32(bytes[offset + 3]) << 24
                        values.append(Float(bitPattern: word))
                        offset += 4
                    }
                case (_, .varint):
                    values.append(convert(UInt16(truncatingIfNeeded: item.scalar)))
                case (_, .lengthDelimited):
                    for bits in try decodePackedVarints(bytes, item.payload) {
                        values.append(convert(UInt16(truncatingIfNeeded: bits)))
                    }
                default:
                    continue
                }
            }
        } catch let error as WireFormatError {
            throw ZooError.badTensor(path: path, tensor: header.name, reason: "malformed typed data at byte \(error.offset): \(error.reason)")
        }
        guard values.count == header.elementCount else {
            throw ZooError.badTensor(path: path, tensor: header.name,
                                     reason: "typed data holds \(values.count) values but shape \(header.shape) needs \(header.elementCount)")
        }
        return values
    }

    private func integerValues(_ header: ONNXTensorHeader, limit: Int) throws -> [Int64] {
        guard header.elementCount <= limit else {
            throw ZooError.badTensor(path: path, tensor: header.name,
                                     reason: "\(header.elementCount) elements is more than the \(limit) expected of a shape-like constant")
        }
        let count = header.elementCount
        switch (header.storage, header.dtype) {
        case (.empty, _):
            return []
        case let (.inlineInts(values), _):
            return values
        case let (.fill(value), _):
            let single = try integerValues(value, limit: 1)
            guard let fillValue = single.first, single.count == 1 else {
                throw ZooError.badTensor(path: path, tensor: header.name, reason: "ConstantOfShape value must hold one element")
            }
            return [Int64](repeating: fillValue, count: count)
        case (.raw, .int64), (.external, .int64):
            return try readStored(header, as: Int64.self, count: count).map { Int64(littleEndian: $0) }
        case (.raw, .int32), (.external, .int32):
            return try readStored(header, as: Int32.self, count: count).map { Int64(Int32(littleEndian: $0)) }
        case let (.typed(field, message), .int64), let (.typed(field, message), .int32):
            var values: [Int64] = []
            var scanner = WireScanner(file.bytes, range: message)
            do {
                while let item = try scanner.next(), values.count <= count {
                    guard item.number == field else { continue }
                    if item.wireType == .varint { values.append(item.signedValue) }
                    if item.wireType == .lengthDelimited { values += try decodePackedVarints(file.bytes, item.payload) }
                }
            } catch let error as WireFormatError {
                throw ZooError.badTensor(path: path, tensor: header.name, reason: "malformed typed data at byte \(error.offset): \(error.reason)")
            }
            guard values.count == count else {
                throw ZooError.badTensor(path: path, tensor: header.name, reason: "typed data holds \(values.count) values, shape needs \(count)")
            }
            return values
        default:
            throw ZooError.badTensor(path: path, tensor: header.name,
                                     reason: "element type \(onnxDataTypeName(header.dataTypeCode)) is not an integer type this reader decodes")
        }
    }

    /// A raw or external tensor's stored values, read straight into a new array. Where the
    /// bytes are is checked in full (range, external file size) before the array is allocated.
    private func readStored<Element: BitwiseCopyable>(_ header: ONNXTensorHeader, as _: Element.Type,
                                                      count: Int) throws -> [Element] {
        let (byteCount, overflow) = count.multipliedReportingOverflow(by: MemoryLayout<Element>.stride)
        guard !overflow else {
            throw ZooError.badTensor(path: path, tensor: header.name, reason: "\(count) elements overflow a byte count")
        }
        let source = try storedBytes(header, byteCount: byteCount)
        return try [Element](unsafeUninitializedCapacity: count) { buffer, initialized in
            if let base = buffer.baseAddress {
                try source.read(into: UnsafeMutableRawPointer(base))
            }
            initialized = count
        }
    }

    private func storedBytes(_ header: ONNXTensorHeader, byteCount: Int) throws -> StoredBytes {
        switch header.storage {
        case let .raw(range):
            guard range.count == byteCount else {
                throw ZooError.badTensor(path: path, tensor: header.name, reason: "raw_data holds \(range.count) bytes, expected \(byteCount)")
            }
            return StoredBytes(file: file, range: range)
        case let .external(reference):
            return try externalBytes(reference, tensor: header.name, byteCount: byteCount)
        default:
            throw ZooError.badTensor(path: path, tensor: header.name, reason: "has no stored bytes to read")
        }
    }

    // MARK: External data

    private var modelDirectory: String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        let directory = String(path[..<slash])
        return directory.isEmpty ? "/" : directory
    }

    /// Finds and checks external data, refusing any location that could leave the model's
    /// folder: absolute paths, `..` components, and symlinks that resolve elsewhere.
    private func externalBytes(_ reference: ONNXExternalReference, tensor: String, byteCount: Int) throws -> StoredBytes {
        let location = reference.location
        func refuse(_ reason: String) -> ZooError {
            .badTensor(path: path, tensor: tensor, reason: "external data location '\(location)' refused: \(reason)")
        }
        if location.hasPrefix("/") || location.hasPrefix("\\") || location.dropFirst().hasPrefix(":") {
            throw refuse("absolute paths are not allowed; external data must sit beside the model")
        }
        let components = location.split(whereSeparator: { $0 == "/" || $0 == "\\" })
        if components.contains("..") {
            throw refuse("'..' would leave the model's folder")
        }
        if location.utf8.contains(0) {
            throw refuse("contains a NUL byte")
        }
        guard let folder = realPath(modelDirectory) else {
            throw ZooError.unreadableFile(path: path, reason: "cannot resolve the model's folder")
        }
        let candidate = modelDirectory + "/" + components.joined(separator: "/")
        guard let resolved = realPath(candidate) else {
            throw ZooError.badTensor(path: path, tensor: tensor, reason: "external data file '\(location)' not found beside the model")
        }
        let prefix = folder.hasSuffix("/") ? folder : folder + "/"
        guard resolved.hasPrefix(prefix) else {
            throw refuse("resolves to \(resolved), outside the model's folder \(folder)")
        }

        let dataFile = try MappedFile(path: resolved)
        let length = reference.length ?? byteCount
        guard length == byteCount else {
            throw ZooError.badTensor(path: path, tensor: tensor,
                                     reason: "external_data length \(length) does not match the \(byteCount) bytes its shape needs")
        }
        let (end, overflow) = reference.offset.addingReportingOverflow(length)
        guard !overflow, end <= dataFile.size else {
            throw ZooError.badTensor(path: path, tensor: tensor,
                                     reason: "external data bytes \(reference.offset)..<\(reference.offset) + \(length) lie beyond the end of '\(location)' (\(dataFile.size) bytes)")
        }
        return StoredBytes(file: dataFile, range: reference.offset..<end)
    }
}

/// A checked byte range of an open file (the model or an external data file).
private struct StoredBytes {
    let file: MappedFile
    let range: Range<Int>

    func read(into destination: UnsafeMutableRawPointer) throws {
        try file.read(range, into: destination)
    }
}

private func realPath(_ path: String) -> String? {
    guard let resolved = realpath(path, nil) else { return nil }
    defer { free(resolved) }
    return String(cString: resolved)
}

// MARK: - Walking ModelProto and GraphProto

/// The top-level fields of a ModelProto, with the graph left as byte ranges.
private struct ModelLayout {
    var irVersion = 0
    var producerName = ""
    var producerVersion = ""
    var graphRanges: [Range<Int>] = []
    var opsetRanges: [Range<Int>] = []
    /// metadata_props (field 14): StringStringEntryProto { key = 1, value = 2 }.
    var metadata: [String: String] = [:]

    init(_ bytes: UnsafeRawBufferPointer, path: String) throws {
        var scanner = WireScanner(bytes, range: 0..<bytes.count)
        do {
            while let field = try scanner.next() {
                switch (field.number, field.wireType) {
                case (1, .varint): irVersion = Int(truncatingIfNeeded: field.signedValue)
                case (2, .lengthDelimited): producerName = scanner.string(field)
                case (3, .lengthDelimited): producerVersion = scanner.string(field)
                case (7, .lengthDelimited): graphRanges.append(field.payload)
                case (8, .lengthDelimited): opsetRanges.append(field.payload)
                case (14, .lengthDelimited):
                    var entry = WireScanner(bytes, range: field.payload)
                    var key = "", value = ""
                    while let item = try entry.next() {
                        switch (item.number, item.wireType) {
                        case (1, .lengthDelimited): key = entry.string(item)
                        case (2, .lengthDelimited): value = entry.string(item)
                        default: continue
                        }
                    }
                    metadata[key] = value
                case (1, _), (2, _), (3, _), (7, _), (8, _), (14, _):
                    throw WireFormatError(offset: field.payload.lowerBound,
                                          reason: "ModelProto field \(field.number) has the wrong wire type (\(field.wireType))")
                default: continue
                }
            }
        } catch let error as WireFormatError {
            throw ZooError.unreadableFile(path: path, reason: "not a valid ONNX model: at byte \(error.offset): \(error.reason)")
        }
        guard !graphRanges.isEmpty else {
            throw ZooError.unreadableFile(path: path, reason: "not an ONNX model: no graph found in the ModelProto")
        }
    }
}

/// A GraphProto's repeated fields as byte ranges.
private struct GraphLayout {
    var name = ""
    var nodeRanges: [Range<Int>] = []
    var initializerRanges: [Range<Int>] = []
    var inputRanges: [Range<Int>] = []
    var outputRanges: [Range<Int>] = []

    mutating func scan(_ bytes: UnsafeRawBufferPointer, range: Range<Int>, path: String) throws {
        var scanner = WireScanner(bytes, range: range)
        do {
            while let field = try scanner.next() {
                switch (field.number, field.wireType) {
                case (1, .lengthDelimited): nodeRanges.append(field.payload)
                case (2, .lengthDelimited): name = scanner.string(field)
                case (5, .lengthDelimited): initializerRanges.append(field.payload)
                case (11, .lengthDelimited): inputRanges.append(field.payload)
                case (12, .lengthDelimited): outputRanges.append(field.payload)
                case (1, _), (2, _), (5, _), (11, _), (12, _):
                    throw WireFormatError(offset: field.payload.lowerBound,
                                          reason: "GraphProto field \(field.number) has the wrong wire type (\(field.wireType))")
                default: continue
                }
            }
        } catch let error as WireFormatError {
            throw ZooError.unreadableFile(path: path, reason: "not a valid ONNX graph: at byte \(error.offset): \(error.reason)")
        }
    }
}

// MARK: - protobuf-c messages to Swift values

private func cString(_ pointer: UnsafeMutablePointer<CChar>?) -> String {
    guard let pointer else { return "" }
    return String(cString: pointer)
}

private func cStrings(_ pointer: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?, _ count: Int) -> [String] {
    guard let pointer else { return [] }
    return (0..<count).map { cString(pointer[$0]) }
}

private func binaryString(_ data: ProtobufCBinaryData) -> String {
    guard let base = data.data, data.len > 0 else { return "" }
    return String(decoding: UnsafeBufferPointer(start: base, count: data.len), as: UTF8.self)
}

private func messageBytes(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> UnsafePointer<UInt8>? {
    guard let base = bytes.baseAddress, range.lowerBound >= 0, range.upperBound <= bytes.count else { return nil }
    return (base + range.lowerBound).assumingMemoryBound(to: UInt8.self)
}

/// For each AttributeProto in a NodeProto, in order: the byte ranges of its `t` and
/// `tensors` fields. protobuf-c keeps repeated fields in wire order, so index k here is
/// attribute k of the unpacked node.
private func attributeTensorRanges(_ bytes: UnsafeRawBufferPointer, node range: Range<Int>) throws
    -> [(single: Range<Int>?, list: [Range<Int>])] {
    var result: [(single: Range<Int>?, list: [Range<Int>])] = []
    var nodeScanner = WireScanner(bytes, range: range)
    while let field = try nodeScanner.next() {
        guard field.number == 5, field.wireType == .lengthDelimited else { continue }
        var single: Range<Int>?
        var list: [Range<Int>] = []
        var attributeScanner = WireScanner(bytes, range: field.payload)
        while let inner = try attributeScanner.next() {
            guard inner.wireType == .lengthDelimited else { continue }
            if inner.number == 5 { single = inner.payload }
            if inner.number == 10 { list.append(inner.payload) }
        }
        result.append((single, list))
    }
    return result
}

private let attributeTypeNames = [5: "GRAPH", 10: "GRAPHS", 11: "SPARSE_TENSOR", 12: "SPARSE_TENSORS",
                                  13: "TYPE_PROTO", 14: "TYPE_PROTOS"]

/// Unpacks one NodeProto with protobuf-c. Tensor attributes are parsed by the wire scanner
/// instead, so their data stays in the file; they are returned as headers too.
private func unpackNode(_ bytes: UnsafeRawBufferPointer, range: Range<Int>, index: Int, path: String) throws
    -> (ONNXNode, [ONNXTensorHeader]) {
    guard let data = messageBytes(bytes, range),
          let message = onnx__node_proto__unpack(nil, range.count, data) else {
        throw ZooError.unreadableFile(path: path, reason: "node #\(index) (bytes \(range.lowerBound)..<\(range.upperBound)) is not a valid NodeProto")
    }
    defer { onnx__node_proto__free_unpacked(message, nil) }
    let proto = message.pointee
    let outputs = cStrings(proto.output, proto.n_output)
    let name = cString(proto.name)
    let label = !name.isEmpty ? name : (outputs.first.flatMap { $0.isEmpty ? nil : $0 } ?? "node #\(index)")

    let tensorRanges: [(single: Range<Int>?, list: [Range<Int>])]
    do {
        tensorRanges = try attributeTensorRanges(bytes, node: range)
    } catch let error as WireFormatError {
        throw ZooError.unreadableFile(path: path, reason: "node '\(label)': at byte \(error.offset): \(error.reason)")
    }
    let opType = cString(proto.op_type)
    let domain = cString(proto.domain)
    let isConstant = (domain.isEmpty || domain == "ai.onnx") && opType == "Constant"

    var attributes: [String: ONNXAttribute] = [:]
    var tensorHeaders: [ONNXTensorHeader] = []
    if let list = proto.attribute {
        for position in 0..<proto.n_attribute {
            guard let attributePointer = list[position] else { continue }
            let attribute = attributePointer.pointee
            let attributeName = cString(attribute.name)
            let ranges = position < tensorRanges.count ? tensorRanges[position] : (single: nil, list: [])
            var kind = attribute.has_type != 0 ? Int(attribute.type.rawValue) : 0
            if kind == 0 {
                // Files from before IR version 2 leave `type` out: infer it from the field set.
                if attribute.has_f != 0 { kind = 1 } else if attribute.has_i != 0 { kind = 2 } else if attribute.has_s != 0 { kind = 3 }
                else if ranges.single != nil { kind = 4 } else if attribute.n_floats > 0 { kind = 6 }
                else if attribute.n_ints > 0 { kind = 7 } else if attribute.n_strings > 0 { kind = 8 }
                else if !ranges.list.isEmpty { kind = 9 }
            }
            let value: ONNXAttribute
            switch kind {
            case 1: value = .float(attribute.f)
            case 2: value = .int(Int(truncatingIfNeeded: attribute.i))
            case 3: value = .string(binaryString(attribute.s))
            case 6:
                value = .floats(attribute.floats.map { Array(UnsafeBufferPointer(start: $0, count: attribute.n_floats)) } ?? [])
            case 7:
                value = .ints(attribute.ints.map { UnsafeBufferPointer(start: $0, count: attribute.n_ints).map { Int(truncatingIfNeeded: $0) } } ?? [])
            case 8:
                value = .strings(attribute.strings.map { UnsafeBufferPointer(start: $0, count: attribute.n_strings).map(binaryString) } ?? [])
            case 4:
                guard let tensorRange = ranges.single else {
                    throw ZooError.unreadableFile(path: path, reason: "node '\(label)': tensor attribute '\(attributeName)' has no tensor")
                }
                let tensorName = isConstant && attributeName == "value" ? (outputs.first ?? label) : "\(label):\(attributeName)"
                let header = try parseTensorHeader(bytes, range: tensorRange, path: path,
                                                   fallbackName: tensorName, nameOverride: tensorName)
                tensorHeaders.append(header)
                value = .tensor(header.record)
            case 9:
                var records: [TensorRecord] = []
                for (item, tensorRange) in ranges.list.enumerated() {
                    let tensorName = "\(label):\(attributeName)[\(item)]"
                    let header = try parseTensorHeader(bytes, range: tensorRange, path: path,
                                                       fallbackName: tensorName, nameOverride: tensorName)
                    tensorHeaders.append(header)
                    records.append(header.record)
                }
                value = .tensors(records)
            default:
                value = .unsupported(attributeTypeNames[kind] ?? "attribute type \(kind)")
            }
            attributes[attributeName] = value
        }
    }
    let node = ONNXNode(name: name, opType: opType, domain: domain,
                        inputs: cStrings(proto.input, proto.n_input), outputs: outputs, attributes: attributes)
    return (node, tensorHeaders)
}

/// The tensor a Constant node produces, named by its output; nil for kinds that are not
/// numeric arrays (sparse_value, value_string).
private func constantTensor(_ node: ONNXNode, output: String, attributeTensors: [ONNXTensorHeader],
                            path: String) throws -> ONNXTensorHeader? {
    if let header = attributeTensors.first(where: { $0.name == output }) {
        return header
    }
    switch node.attributes["value_float"] ?? node.attributes["value_floats"] ?? node.attributes["value_int"] ?? node.attributes["value_ints"] {
    case let .float(value)?:
        return ONNXTensorHeader(name: output, shape: [], dataTypeCode: 1, dtype: .float32, storage: .inlineFloats([value]), elementCount: 1)
    case let .floats(values)?:
        return ONNXTensorHeader(name: output, shape: [values.count], dataTypeCode: 1, dtype: .float32, storage: .inlineFloats(values), elementCount: values.count)
    case let .int(value)?:
        return ONNXTensorHeader(name: output, shape: [], dataTypeCode: 7, dtype: .int64, storage: .inlineInts([Int64(value)]), elementCount: 1)
    case let .ints(values)?:
        return ONNXTensorHeader(name: output, shape: [values.count], dataTypeCode: 7, dtype: .int64,
                                storage: .inlineInts(values.map { Int64($0) }), elementCount: values.count)
    default:
        return nil
    }
}

private let maximumFilledTensorBytes = 1 << 31

/// A ConstantOfShape whose shape input is a known constant: a tensor of that shape, every
/// element the node's `value` (float 0 when absent, as the operator defines). nil when the
/// shape is computed at run time.
private func filledTensor(_ node: ONNXNode, output: String, known: [String: ONNXTensorHeader],
                          bytes: UnsafeRawBufferPointer, path: String) throws -> ONNXTensorHeader? {
    guard let shapeName = node.inputs.first, let shapeHeader = known[shapeName] else { return nil }
    guard shapeHeader.dtype == .int64, shapeHeader.shape.count == 1 else {
        throw ZooError.badTensor(path: path, tensor: output,
                                 reason: "ConstantOfShape shape input '\(shapeName)' must be a 1-D INT64 tensor, found \(onnxDataTypeName(shapeHeader.dataTypeCode)) of shape \(shapeHeader.shape)")
    }
    // A shape tensor is a handful of numbers: refuse a giant one before reading it.
    guard shapeHeader.elementCount <= 64 else {
        throw ZooError.badTensor(path: path, tensor: output, reason: "ConstantOfShape shape input '\(shapeName)' has \(shapeHeader.elementCount) dimensions")
    }
    let dims = try shapeValues(shapeHeader, bytes: bytes, path: path)
    let shape = try dims.map { dim -> Int in
        guard let value = Int(exactly: dim) else {
            throw ZooError.badTensor(path: path, tensor: output, reason: "dimension \(dim) does not fit in Int")
        }
        return value
    }
    let count = try validatedElementCount(shape, path: path, tensor: output)

    let value: ONNXTensorHeader
    if case let .tensor(record)? = node.attributes["value"] {
        // The caller registered the node's attribute tensors before this call.
        guard let header = known[record.name] else {
            throw ZooError.badTensor(path: path, tensor: output, reason: "ConstantOfShape value tensor is missing")
        }
        value = header
    } else {
        value = ONNXTensorHeader(name: "\(output):value", shape: [1], dataTypeCode: 1, dtype: .float32,
                                 storage: .inlineFloats([0]), elementCount: 1)
    }
    guard value.elementCount == 1 else {
        throw ZooError.badTensor(path: path, tensor: output, reason: "ConstantOfShape value must hold one element, found \(value.elementCount)")
    }
    // The file holds no bytes to check a filled tensor's size against, so cap it instead: no
    // tensor serialized in a protobuf can exceed 2 GiB, so a fill that does comes from a
    // corrupted shape, and loading it would allocate whatever that shape says.
    guard let bytesNeeded = checkedByteCount(shape, value.dtype.byteWidth == nil ? .float32 : value.dtype),
          bytesNeeded <= maximumFilledTensorBytes else {
        throw ZooError.badTensor(path: path, tensor: output,
                                 reason: "ConstantOfShape shape \(shape) is larger than the \(maximumFilledTensorBytes) bytes any stored tensor can be")
    }
    return ONNXTensorHeader(name: output, shape: shape, dataTypeCode: value.dataTypeCode, dtype: value.dtype,
                            storage: .fill(value: value), elementCount: count)
}

/// The values of a small int64 shape tensor held in the model file itself.
private func shapeValues(_ header: ONNXTensorHeader, bytes: UnsafeRawBufferPointer, path: String) throws -> [Int64] {
    switch header.storage {
    case .empty:
        return []
    case let .inlineInts(values):
        return values
    case let .raw(range):
        var values: [Int64] = []
        var offset = range.lowerBound
        while offset + 8 <= range.upperBound {
            var word: UInt64 = 0
            for byte in 0..<8 { word |= UInt64(bytes[offset + byte]) << UInt64(8 * byte) }
            values.append(Int64(bitPattern: word))
            offset += 8
        }
        return values
    case let .typed(field, message):
        var values: [Int64] = []
        var scanner = WireScanner(bytes, range: message)
        do {
            while let item = try scanner.next() {
                guard item.number == field else { continue }
                if item.wireType == .varint { values.append(item.signedValue) }
                if item.wireType == .lengthDelimited { values += try decodePackedVarints(bytes, item.payload) }
            }
        } catch let error as WireFormatError {
            throw ZooError.badTensor(path: path, tensor: header.name, reason: "malformed int64_data at byte \(error.offset): \(error.reason)")
        }
        return values
    default:
        throw ZooError.badTensor(path: path, tensor: header.name,
                                 reason: "a ConstantOfShape shape stored outside the model file is not supported")
    }
}

private func unpackValueInfo(_ bytes: UnsafeRawBufferPointer, range: Range<Int>, path: String) throws -> ONNXValueInfo {
    guard let data = messageBytes(bytes, range),
          let message = onnx__value_info_proto__unpack(nil, range.count, data) else {
        throw ZooError.unreadableFile(path: path, reason: "graph input/output at bytes \(range.lowerBound)..<\(range.upperBound) is not a valid ValueInfoProto")
    }
    defer { onnx__value_info_proto__free_unpacked(message, nil) }
    let info = message.pointee
    var elementType: DType?
    var shape: [ONNXDimension]?
    if let type = info.type, type.pointee.value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE,
       let tensorType = type.pointee.tensor_type {
        if tensorType.pointee.has_elem_type != 0 {
            elementType = dtype(forONNXDataType: Int64(tensorType.pointee.elem_type))
        }
        if let shapeProto = tensorType.pointee.shape {
            let count = shapeProto.pointee.n_dim
            shape = (0..<count).map { index in
                guard let dims = shapeProto.pointee.dim, let dim = dims[index] else { return .unknown }
                switch dim.pointee.value_case {
                case ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE:
                    return .fixed(Int(truncatingIfNeeded: dim.pointee.dim_value))
                case ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM:
                    return .symbolic(cString(dim.pointee.dim_param))
                default:
                    return .unknown
                }
            }
        }
    }
    return ONNXValueInfo(name: cString(info.name), elementType: elementType, shape: shape)
}

private func unpackOpset(_ bytes: UnsafeRawBufferPointer, range: Range<Int>, path: String) throws -> (String, Int) {
    guard let data = messageBytes(bytes, range),
          let message = onnx__operator_set_id_proto__unpack(nil, range.count, data) else {
        throw ZooError.unreadableFile(path: path, reason: "opset_import at bytes \(range.lowerBound)..<\(range.upperBound) is not a valid OperatorSetIdProto")
    }
    defer { onnx__operator_set_id_proto__free_unpacked(message, nil) }
    return (cString(message.pointee.domain), Int(truncatingIfNeeded: message.pointee.version))
}
