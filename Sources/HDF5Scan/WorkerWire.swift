#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How a worker answers its parent on standard output: one frame, a tag byte, an 8-byte
/// little-endian length and the payload. `S` carries the scan (`HDF5Contents`), `D` float32
/// values, `K` success with nothing to say, `E` a failure (an optional tensor name and a
/// reason), `P` the sandbox probe's report. Structured payloads use the small binary form
/// below rather than JSON, so the worker needs no Foundation.
package enum WorkerWire {
    package static let frameHeaderSize = 9

    package static func send(_ tag: Character, _ payload: UnsafeRawBufferPointer) {
        var header = [UInt8(tag.asciiValue ?? 0)]
        var length = UInt64(payload.count)
        for _ in 0..<8 { header.append(UInt8(length & 0xff)); length >>= 8 }
        header.withUnsafeBytes { writeAll($0) }
        writeAll(payload)
    }

    package static func send(_ tag: Character, _ bytes: [UInt8]) {
        bytes.withUnsafeBytes { send(tag, $0) }
    }

    package static func sendFailure(tensor: String?, reason: String) {
        var writer = Writer()
        writer.optional(tensor)
        writer.string(reason)
        send("E", writer.bytes)
    }

    package static func decodeFailure(_ bytes: [UInt8]) throws -> (tensor: String?, reason: String) {
        var reader = Reader(bytes)
        let tensor = try reader.optional()
        let reason = try reader.string()
        try reader.finish()
        return (tensor, reason)
    }

    private static func writeAll(_ raw: UnsafeRawBufferPointer) {
        guard let base = raw.baseAddress else { return }
        var done = 0
        while done < raw.count {
            let wrote = write(1, base + done, raw.count - done)
            if wrote < 0 { if errno == EINTR { continue }; return }
            done += wrote
        }
    }

    package static func encode(_ contents: HDF5Contents) -> [UInt8] {
        var w = Writer()
        w.byte(contents.layout.rawValue)
        for list in [contents.tensors, contents.optimizerTensors] {
            w.count(list.count)
            for t in list {
                w.string(t.name)
                w.count(t.shape.count)
                for dim in t.shape { w.int(dim) }
                w.string(t.dtype)
                w.int(t.byteCount)
            }
        }
        w.strings(contents.layerNames)
        w.listMap(contents.weightNamesByLayer)
        w.listMap(contents.tensorNamesByLayer)
        w.map(contents.datasetPaths)
        w.optional(contents.modelConfigJSON)
        w.optional(contents.kerasVersion)
        w.optional(contents.backend)
        w.map(contents.rootStringAttributes)
        w.map(contents.declaredLayerNames)
        w.strings(contents.absentTensors)
        w.count(contents.storage.count)
        for (name, place) in contents.storage.sorted(by: { $0.key < $1.key }) {
            w.string(name)
            switch place {
            case .direct(let offset): w.byte(0); w.int(offset)
            case .library: w.byte(1)
            case .refused(let reason): w.byte(2); w.string(reason)
            }
        }
        return w.bytes
    }

    package static func decodeContents(_ bytes: [UInt8]) throws -> HDF5Contents {
        var r = Reader(bytes)
        var contents = HDF5Contents()
        guard let layout = HDF5Layout(rawValue: try r.byte()) else { throw r.malformed("layout") }
        contents.layout = layout
        var lists: [[ScannedTensor]] = []
        for _ in 0..<2 {
            var list: [ScannedTensor] = []
            for _ in 0..<(try r.count()) {
                let name = try r.string()
                var shape: [Int] = []
                for _ in 0..<(try r.count()) { shape.append(try r.int()) }
                list.append(ScannedTensor(name: name, shape: shape, dtype: try r.string(), byteCount: try r.int()))
            }
            lists.append(list)
        }
        contents.tensors = lists[0]
        contents.optimizerTensors = lists[1]
        contents.layerNames = try r.strings()
        contents.weightNamesByLayer = try r.listMap()
        contents.tensorNamesByLayer = try r.listMap()
        contents.datasetPaths = try r.map()
        contents.modelConfigJSON = try r.optional()
        contents.kerasVersion = try r.optional()
        contents.backend = try r.optional()
        contents.rootStringAttributes = try r.map()
        contents.declaredLayerNames = try r.map()
        contents.absentTensors = try r.strings()
        for _ in 0..<(try r.count()) {
            let name = try r.string()
            switch try r.byte() {
            case 0: contents.storage[name] = .direct(try r.int())
            case 1: contents.storage[name] = .library
            case 2: contents.storage[name] = .refused(try r.string())
            default: throw r.malformed("storage kind")
            }
        }
        try r.finish()
        return contents
    }

    package struct Malformed: Error, CustomStringConvertible {
        package let description: String
    }

    struct Writer {
        var bytes: [UInt8] = []
        mutating func byte(_ value: UInt8) { bytes.append(value) }
        mutating func int(_ value: Int) {
            var v = UInt64(bitPattern: Int64(value))
            for _ in 0..<8 { bytes.append(UInt8(v & 0xff)); v >>= 8 }
        }
        mutating func count(_ value: Int) { int(value) }
        mutating func string(_ value: String) {
            let utf8 = Array(value.utf8)
            count(utf8.count)
            bytes += utf8
        }
        mutating func optional(_ value: String?) {
            if let value { byte(1); string(value) } else { byte(0) }
        }
        mutating func strings(_ values: [String]) {
            count(values.count)
            for value in values { string(value) }
        }
        mutating func map(_ values: [String: String]) {
            count(values.count)
            for (key, value) in values.sorted(by: { $0.key < $1.key }) { string(key); string(value) }
        }
        mutating func listMap(_ values: [String: [String]]) {
            count(values.count)
            for (key, value) in values.sorted(by: { $0.key < $1.key }) { string(key); strings(value) }
        }
    }

    /// Reads what `Writer` wrote, refusing anything that runs past the payload: a count is
    /// never trusted beyond the bytes that could back it.
    struct Reader {
        let bytes: [UInt8]
        var at = 0
        init(_ bytes: [UInt8]) { self.bytes = bytes }

        func malformed(_ what: String) -> Malformed { Malformed(description: "malformed worker reply (\(what) at byte \(at))") }
        mutating func byte() throws -> UInt8 {
            guard at < bytes.count else { throw malformed("end of reply") }
            defer { at += 1 }
            return bytes[at]
        }
        mutating func int() throws -> Int {
            guard bytes.count - at >= 8 else { throw malformed("end of reply") }
            var v: UInt64 = 0
            for i in (0..<8).reversed() { v = v << 8 | UInt64(bytes[at + i]) }
            at += 8
            return Int(Int64(bitPattern: v))
        }
        mutating func count() throws -> Int {
            let n = try int()
            guard n >= 0, n <= bytes.count - at else { throw malformed("count \(n)") }
            return n
        }
        mutating func string() throws -> String {
            let n = try count()
            defer { at += n }
            return String(decoding: bytes[at..<(at + n)], as: UTF8.self)
        }
        mutating func optional() throws -> String? {
            switch try byte() {
            case 0: return nil
            case 1: return try string()
            default: throw malformed("optional flag")
            }
        }
        mutating func strings() throws -> [String] {
            var out: [String] = []
            for _ in 0..<(try count()) { out.append(try string()) }
            return out
        }
        mutating func map() throws -> [String: String] {
            var out: [String: String] = [:]
            for _ in 0..<(try count()) { let key = try string(); out[key] = try string() }
            return out
        }
        mutating func listMap() throws -> [String: [String]] {
            var out: [String: [String]] = [:]
            for _ in 0..<(try count()) { let key = try string(); out[key] = try strings() }
            return out
        }
        func finish() throws {
            guard at == bytes.count else { throw malformed("\(bytes.count - at) bytes left over") }
        }
    }
}
