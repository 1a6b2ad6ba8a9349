import Foundation

/// Where a tensor's float32 little-endian values lie, byte for byte, in a file: what a
/// converter may copy file to file (`copy_file_range`) instead of reading into memory and
/// writing back.
public struct StoredSpan: Sendable, Equatable {
    public let path: String
    public let offset: Int
    public let byteCount: Int
}

/// Readers whose float32 tensors can sit in the file exactly as every writer here stores
/// them (safetensors data, ONNX `raw_data`).
protocol ProvidesStoredSpans {
    /// nil when the tensor is not float32, not stored contiguously in this file, or the host
    /// is big-endian.
    func storedSpan(of name: String) -> StoredSpan?
}

extension StoredSpan {
    /// Counts NaN and Inf among the span's float32 values, reading the file through a
    /// read-only mapping (the page cache, no copy).
    static func nonFiniteCounts(_ spans: [StoredSpan]) throws -> [(nan: Int, inf: Int)] {
        guard let path = spans.first?.path else { return [] }
        let file = try ReadOnlyFile(path: path)
        var result: [(nan: Int, inf: Int)] = []
        guard file.size > 0, let base = mmap(nil, file.size, PROT_READ, MAP_SHARED | MAP_POPULATE, file.descriptor, 0),
              base != MAP_FAILED else {
            throw ZooError.unreadableFile(path: path, reason: "cannot map the file: \(String(cString: strerror(errno)))")
        }
        defer { munmap(base, file.size) }
        for span in spans {
            guard span.path == path, span.offset >= 0, span.byteCount >= 0, span.offset + span.byteCount <= file.size else {
                throw ZooError.unreadableFile(path: span.path, reason: "stored tensor bytes outside the file")
            }
            var nan = 0, inf = 0
            let words = UnsafeRawPointer(base + span.offset)
            let count = span.byteCount / 4
            var notFinite = 0
            if Int(bitPattern: words) % 4 == 0 {
                // The common case, written so the compiler vectorizes it: branch-free counting.
                let values = UnsafeBufferPointer(start: words.assumingMemoryBound(to: UInt32.self), count: count)
                var found: UInt32 = 0
                for bits in values { found |= (bits & 0x7f80_0000) == 0x7f80_0000 ? 1 : 0 }
                notFinite = Int(found)
            } else {
                // ONNX raw_data need not start on a 4-byte boundary.
                for i in 0..<count where words.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self) & 0x7f80_0000 == 0x7f80_0000 {
                    notFinite += 1
                }
            }
            if notFinite > 0 {
                for i in 0..<count {
                    let bits = UInt32(littleEndian: words.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))
                    guard bits & 0x7f80_0000 == 0x7f80_0000 else { continue }
                    if bits & 0x007f_ffff != 0 { nan += 1 } else { inf += 1 }
                }
            }
            result.append((nan, inf))
        }
        return result
    }
}

/// A tensor's values on their way into a file: in memory, or still where the input file
/// holds them.
enum TensorPayload {
    case values([Float])
    case stored(StoredSpan)

    var byteCount: Int {
        switch self {
        case .values(let v): return v.count * MemoryLayout<Float>.size
        case .stored(let span): return span.byteCount
        }
    }

    var elementCount: Int { byteCount / MemoryLayout<Float>.size }

    func write(to writer: AtomicFileWriter) throws {
        switch self {
        case .values(let v): try writer.writeLittleEndian(v)
        case .stored(let span): try writer.copy(span)
        }
    }
}
