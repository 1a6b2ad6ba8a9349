import Foundation

/// A PyTorch `.pth`/`.pt` file holding a state_dict, or a training checkpoint with one
/// inside, in either layout torch.save writes:
///
/// - the zip archive of torch 1.6 and later: `NAME/data.pkl` (the pickle), `NAME/data/<key>`
///   (one stored entry per storage, its data 64-byte aligned), `NAME/byteorder`,
///   `NAME/version`;
/// - the legacy layout before it: back-to-back pickles (magic number, protocol version,
///   sys info, the object, the storage keys), then each storage as an 8-byte little-endian
///   element count and its raw bytes, in the order of the keys.
///
/// The pickle goes through `Unpickler`, which runs nothing and knows only the globals that
/// rebuild tensors and containers. Opening reads the pickle and the archive's directory;
/// tensor data is read by `load`, in place from the file (no copy of the archive). Tensors
/// keep their full key names (`module.` prefixes included).
public final class PthFile: WeightFile {
    public enum Layout: String, Sendable { case zip, legacy }

    /// The keys training scripts put a model's state_dict under, in the order they are tried.
    public static let checkpointKeys = ["state_dict", "model", "model_state_dict", "net"]
    /// The pickle is read whole into memory; a state_dict's pickle is ~100 bytes a tensor.
    public static let maximumPickleBytes = 256 << 20

    public let path: String
    public var format: WeightFormat { .pth }
    public let layout: Layout
    public var producer: String? { "pytorch" + (archiveVersion.map { " (zip archive version \($0))" } ?? " (legacy layout)") }
    public let tensors: [TensorRecord]
    /// The checkpoint key the state_dict was found under; nil when the file is the state_dict.
    public let weightsKey: String?
    /// Entries beside the weights (epoch, arch, best accuracy...), as `(key, value)` text.
    public let otherEntries: [(String, String)]

    private let file: ReadOnlyFile
    private let archiveVersion: String?
    private struct Location { let record: TensorRecord; let offset: Int }
    private let locations: [String: Location]

    private static let legacyMagic: [UInt8] = [0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19]
    /// What a legacy file starts with: PROTO 2, LONG1 of 10 bytes, the magic number.
    static let legacyPrefix: [UInt8] = [0x80, 0x02, 0x8A, 0x0A] + legacyMagic

    public convenience init(path: String) throws {
        let file = try ReadOnlyFile(path: path)
        let head = try file.bytes(at: 0, count: 4)
        if head == [0x50, 0x4B, 0x03, 0x04] {
            try self.init(zip: try ZipDirectory(file: file), file: file)
        } else {
            try self.init(legacy: file)
        }
    }

    init(zip: ZipDirectory, file: ReadOnlyFile) throws {
        path = file.path
        self.file = file
        layout = .zip
        let path = file.path
        func unreadable(_ reason: String) -> ZooError { .unreadableFile(path: path, reason: reason) }
        guard let pickleEntry = zip.entries.first(where: { PthFile.isDataPickle($0.name) }) else {
            throw unreadable("a zip archive without '<name>/data.pkl': not a PyTorch file")
        }
        let prefix = String(pickleEntry.name.dropLast("data.pkl".count))
        var byName: [String: ZipEntry] = [:]
        for entry in zip.entries where entry.name.hasPrefix(prefix) { byName[String(entry.name.dropFirst(prefix.count))] = entry }
        if let order = byName["byteorder"] {
            let text = String(decoding: try zip.contents(of: order, limit: 64), as: UTF8.self)
            guard text == "little" else { throw unreadable("byteorder '\(text)': only little-endian files are read") }
        }
        archiveVersion = try byName["version"].map {
            String(decoding: try zip.contents(of: $0, limit: 64), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let pickle = try zip.contents(of: pickleEntry, limit: PthFile.maximumPickleBytes)
        var unpickler = Unpickler(path: path, bytes: pickle)
        let root = try unpickler.load()

        // Each storage is the stored entry data/<key>: its bytes are the storage's bytes.
        var storageStarts: [String: (offset: Int, bytes: Int)] = [:]
        for (key, storage) in unpickler.storages {
            guard let entry = byName["data/" + key] else {
                throw unreadable("storage '\(key)' has no entry '\(prefix)data/\(key)' in the archive")
            }
            guard entry.method == 0 else {
                throw unreadable("storage entry '\(entry.name)' is compressed (method \(entry.method)): torch stores tensor "
                    + "data uncompressed so it can be read in place; re-save it with torch.save")
            }
            guard entry.compressedSize == entry.uncompressedSize else {
                throw unreadable("stored entry '\(entry.name)' declares \(entry.uncompressedSize) bytes but stores \(entry.compressedSize)")
            }
            _ = storage
            storageStarts[key] = (try zip.dataOffset(of: entry), entry.compressedSize)
        }
        (weightsKey, otherEntries, tensors, locations) = try PthFile.index(root, storages: storageStarts, path: path)
    }

    init(legacy file: ReadOnlyFile) throws {
        path = file.path
        self.file = file
        layout = .legacy
        archiveVersion = nil
        let path = file.path
        func unreadable(_ reason: String) -> ZooError { .unreadableFile(path: path, reason: reason) }
        let head = try file.bytes(at: 0, count: PthFile.legacyPrefix.count)
        guard head == PthFile.legacyPrefix else {
            throw unreadable("not a PyTorch file: neither a zip archive nor the legacy magic number")
        }
        // The pickles come first and the storages after them, with no length anywhere: read
        // a window of the file, and a larger one when the pickles run past it.
        var window = min(file.size, 1 << 20)
        var parsed: LegacyPickles
        while true {
            var reader = Unpickler(path: path, bytes: try file.bytes(at: 0, count: window))
            do {
                parsed = try PthFile.legacyPickles(&reader, path: path)
                break
            } catch {
                guard reader.ranOut, window < min(file.size, PthFile.maximumPickleBytes) else { throw error }
                window = min(file.size, PthFile.maximumPickleBytes, window * 8)
            }
        }
        let (root, keyList, reader) = (parsed.root, parsed.keys, parsed.reader)
        var storageStarts: [String: (offset: Int, bytes: Int)] = [:]
        var offset = reader.end
        for item in keyList.items {
            guard case .string(let key) = item else { throw unreadable("legacy .pth: a storage key is not a string") }
            guard let storage = reader.storages[key], let width = storage.dtype.byteWidth else {
                throw unreadable("legacy .pth: storage '\(key)' is listed but no tensor declares its type")
            }
            let countBytes = try file.bytes(at: offset, count: 8)
            guard countBytes.count == 8 else {
                throw unreadable("truncated: storage '\(key)' should start at offset \(offset), the file ends at \(file.size)")
            }
            let count = le64(countBytes, 0)
            let (bytes, overflow) = Int(clamping: count).multipliedReportingOverflow(by: width)
            guard count <= UInt64(Int.max), !overflow, bytes <= file.size - offset - 8 else {
                throw unreadable("truncated: storage '\(key)' declares \(count) \(storage.dtype.rawValue) elements at offset "
                    + "\(offset), more than the \(file.size - offset - 8) bytes left")
            }
            storageStarts[key] = (offset + 8, bytes)
            offset += 8 + bytes
        }
        (weightsKey, otherEntries, tensors, locations) = try PthFile.index(root, storages: storageStarts, path: path)
    }

    private struct LegacyPickles {
        let root: PickleValue
        let keys: PickleList
        let reader: Unpickler
    }

    private static func legacyPickles(_ reader: inout Unpickler, path: String) throws -> LegacyPickles {
        func unreadable(_ reason: String) -> ZooError { .unreadableFile(path: path, reason: reason) }
        guard case .bigInt(let magic) = try reader.load(), magic == PthFile.legacyMagic else {
            throw unreadable("legacy .pth without its magic number")
        }
        guard case .int(let protocolVersion) = try reader.load() else {
            throw unreadable("legacy .pth: the protocol version is not an integer")
        }
        guard protocolVersion == 1001 else { throw unreadable("legacy .pth protocol version \(protocolVersion); 1001 is read") }
        if case .dict(let info) = try reader.load(), case .bool(false)? = info["little_endian"] {
            throw unreadable("written on a big-endian machine: only little-endian files are read")
        }
        let root = try reader.load()
        guard case .list(let keys) = try reader.load() else { throw unreadable("legacy .pth: the storage key list is missing") }
        return LegacyPickles(root: root, keys: keys, reader: reader)
    }

    static func isDataPickle(_ name: String) -> Bool {
        name == "data.pkl" || (name.hasSuffix("/data.pkl") && !name.dropLast("/data.pkl".count).contains("/"))
    }

    /// Whether a zip archive's names make it a torch file.
    static func isTorchArchive(_ zip: ZipDirectory) -> Bool { zip.entries.contains { isDataPickle($0.name) } }

    // MARK: - Finding the weights

    private struct Found {
        var key: String?
        var tensors: [(String, PickleTensor)]
        var others: [(String, String)]
    }

    private static func tensorCount(_ dict: PickleDict) -> Int {
        dict.values.reduce(0) { if case .tensor = $1 { return $0 + 1 }; return $0 }
    }

    /// The state_dict is the root when its values are tensors, otherwise the first of the
    /// checkpoint keys holding tensors, otherwise the only dict entry that holds any.
    private static func stateDict(in root: PickleValue, path: String) throws -> Found {
        guard case .dict(let top) = root else {
            throw ZooError.unreadableFile(path: path, reason: "holds a pickled \(root.typeName), not a state_dict (a dict of tensors)")
        }
        var chosen: (key: String?, dict: PickleDict)?
        if tensorCount(top) > 0 || top.count == 0 {
            chosen = (nil, top)
        } else {
            for key in checkpointKeys {
                if case .dict(let inner)? = top[key], tensorCount(inner) > 0 { chosen = (key, inner); break }
            }
            if chosen == nil {
                let candidates = zip(top.keys, top.values).compactMap { key, value -> (String, PickleDict)? in
                    guard case .string(let name) = key, case .dict(let inner) = value, tensorCount(inner) > 0 else { return nil }
                    return (name, inner)
                }
                if candidates.count == 1, let only = candidates.first { chosen = (only.0, only.1) }
            }
        }
        guard let (key, dict) = chosen else {
            let keys = top.keys.map(describeKey).joined(separator: ", ")
            throw ZooError.unreadableFile(path: path, reason: "no state_dict found: the top-level dict has no tensors, and none "
                + "of its entries (\(keys)) is a dict of tensors under \(checkpointKeys.joined(separator: ", "))")
        }
        var found = Found(key: key, tensors: [], others: [])
        for (k, value) in zip(dict.keys, dict.values) {
            if case .tensor(let t) = value, case .string(let name) = k {
                found.tensors.append((name, t))
            } else {
                found.others.append(((key.map { $0 + "." } ?? "") + describeKey(k), describe(value)))
            }
        }
        if key != nil {
            for (k, value) in zip(top.keys, top.values) {
                if case .string(let name) = k, name == key { continue }
                found.others.append((describeKey(k), describe(value)))
            }
        }
        return found
    }

    private static func describeKey(_ key: PickleValue) -> String {
        if case .string(let s) = key { return s }
        return describe(key)
    }

    /// A short text for a non-tensor value: scalars as they are, containers by size.
    private static func describe(_ value: PickleValue) -> String {
        switch value {
        case .none: return "None"
        case .bool(let b): return b ? "True" : "False"
        case .int(let i): return String(i)
        case .bigInt(let raw): return "a \(raw.count)-byte integer"
        case .float(let d): return String(d)
        case .string(let s): return s.count > 80 ? String(s.prefix(77)) + "..." : s
        case .bytes(let b): return "\(b.count) bytes"
        case .tuple(let items): return "tuple of \(items.count)"
        case .list(let list): return "list of \(list.items.count)"
        case .dict(let dict):
            let n = tensorCount(dict)
            return "dict of \(dict.count) entries" + (n > 0 ? " (\(n) tensors, not read)" : "")
        case .global(let g): return g.qualifiedName
        case .storage: return "a storage"
        case .tensor(let t): return "tensor \(t.shape)"
        }
    }

    /// Checks every tensor against its storage and works out where its bytes lie.
    /// The state dict found in the unpickled `root`, its tensors placed in their storages:
    /// what both layouts end with once their storages are located.
    private static func index(_ root: PickleValue, storages: [String: (offset: Int, bytes: Int)], path: String) throws
        -> (String?, [(String, String)], [TensorRecord], [String: Location]) {
        let found = try stateDict(in: root, path: path)
        let placed = try place(found.tensors, storages: storages, path: path)
        let locations = placed.locations.reduce(into: [:]) { $0[$1.record.name] = Location(record: $1.record, offset: $1.offset) }
        return (found.key, found.others, placed.records, locations)
    }

    private static func place(_ found: [(String, PickleTensor)], storages: [String: (offset: Int, bytes: Int)],
                              path: String) throws -> (records: [TensorRecord], locations: [(record: TensorRecord, offset: Int)]) {
        var records: [TensorRecord] = []
        var locations: [(record: TensorRecord, offset: Int)] = []
        for (name, tensor) in found {
            func bad(_ reason: String) -> ZooError { .badTensor(path: path, tensor: name, reason: reason) }
            let storage = tensor.storage
            guard let width = storage.dtype.byteWidth else { throw bad("storage of unknown element type") }
            guard let span = storages[storage.key] else { throw bad("its storage '\(storage.key)' is not in the file") }
            guard let count = checkedElementCount(tensor.shape) else { throw bad("shape \(tensor.shape) overflows") }
            let (byteCount, overflow) = count.multipliedReportingOverflow(by: width)
            guard !overflow else { throw bad("shape \(tensor.shape) needs more than Int.max bytes") }
            // Row-major contiguous: each dimension's stride is the product of the sizes after
            // it (a dimension of size 1 may have any stride).
            var expected = 1
            for (size, stride) in zip(tensor.shape, tensor.stride).reversed() {
                if size != 1 && stride != expected {
                    throw bad("strides \(tensor.stride) for shape \(tensor.shape) are not row-major contiguous "
                        + "(a transposed or sliced view): save tensor.contiguous() instead")
                }
                expected = expected.multipliedReportingOverflow(by: size).partialValue
            }
            let (startBytes, offsetOverflow) = tensor.storageOffset.multipliedReportingOverflow(by: width)
            let (endBytes, endOverflow) = startBytes.addingReportingOverflow(byteCount)
            guard !offsetOverflow, !endOverflow, endBytes <= span.bytes else {
                throw bad("offset \(tensor.storageOffset) + \(count) elements of \(storage.dtype.rawValue) run past its "
                    + "storage '\(storage.key)' (\(span.bytes / width) elements)")
            }
            let record = TensorRecord(name: name, shape: tensor.shape, dtype: storage.dtype, byteCount: byteCount)
            records.append(record)
            locations.append((record, span.offset + startBytes))
        }
        return (records, locations)
    }

    // MARK: - Reading data

    public func load(_ name: String) throws -> Tensor {
        guard let location = locations[name] else {
            throw ZooError.badTensor(path: path, tensor: name, reason: "no such tensor in this file")
        }
        let record = location.record
        let count = record.elementCount
        switch record.dtype {
        case .float32:
            var data = try read(Float.self, count: count, location)
            #if _endian(big)
            data = data.map { Float(bitPattern: UInt32(littleEndian: $0.bitPattern)) }
            #endif
            return Tensor(shape: record.shape, data: data)
        case .float16, .bfloat16:
            let bits = try read(UInt16.self, count: count, location)
            let widen = record.dtype == .float16 ? floatFromHalfBits : floatFromBFloat16Bits
            return Tensor(shape: record.shape, data: bits.map { widen(UInt16(littleEndian: $0)) })
        case .float64:
            let values = try read(UInt64.self, count: count, location)
            return Tensor(shape: record.shape, data: values.map { Float(Double(bitPattern: UInt64(littleEndian: $0))) })
        default:
            throw ZooError.badTensor(path: path, tensor: name,
                                     reason: "stored as \(record.dtype.rawValue); only floating-point tensors load as float32")
        }
    }

    private func read<T>(_: T.Type, count: Int, _ location: Location) throws -> [T] {
        try [T](unsafeUninitializedCapacity: count) { buffer, initialized in
            if let base = buffer.baseAddress { try file.read(into: base, count: location.record.byteCount, at: location.offset) }
            initialized = count
        }
    }
}

extension PthFile: DescribesContents {
    public var contentDetails: [(String, String)] {
        var lines = [("layout", layout == .zip ? "zip archive (torch >= 1.6)" : "legacy (torch < 1.6)")]
        let prefixed = tensors.contains { $0.name.hasPrefix("module.") }
        let weights = weightsKey.map { "under '\($0)'" } ?? "the top-level dict (a plain state_dict)"
        lines.append(("weights", weights + ", \(tensors.count) tensors" + (prefixed ? ", keys prefixed 'module.' (DataParallel)" : "")))
        for (key, value) in otherEntries { lines.append(("entry " + key, value)) }
        return lines
    }
}
