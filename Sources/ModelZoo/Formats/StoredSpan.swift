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
    /// Counts NaN and Inf among each span's float32 values, reading the file through a
    /// read-only mapping of that span only (the page cache, no copy; a span's pages, not the
    /// whole file, count towards this process's resident memory).
    static func nonFiniteCounts(_ spans: [StoredSpan]) throws -> [(nan: Int, inf: Int)] {
        guard let path = spans.first?.path else { return [] }
        let file = try ReadOnlyFile(path: path)
        var result: [(nan: Int, inf: Int)] = []
        for span in spans {
            guard span.path == path else {
                throw ZooError.unreadableFile(path: span.path, reason: "stored tensor bytes in another file")
            }
            let mapped = try MappedSpan(file, span)
            defer { mapped.unmap() }
            var nan = 0, inf = 0
            let words = mapped.bytes
            let count = span.byteCount / 4
            if count > 0, StoredSpan.nonFiniteAny(words, count: count) {
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

    /// Whether any of `count` little-endian float32 values at `words` is NaN or Inf.
    static func nonFiniteAny(_ words: UnsafeRawPointer, count: Int) -> Bool {
        if Int(bitPattern: words) % 4 == 0 {
            // The common case, written so the compiler vectorizes it: branch-free counting.
            let values = UnsafeBufferPointer(start: words.assumingMemoryBound(to: UInt32.self), count: count)
            var found: UInt32 = 0
            for bits in values { found |= (bits & 0x7f80_0000) == 0x7f80_0000 ? 1 : 0 }
            return found != 0
        }
        // ONNX raw_data need not start on a 4-byte boundary.
        for i in 0..<count where words.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self) & 0x7f80_0000 == 0x7f80_0000 {
            return true
        }
        return false
    }
}

/// A span of a file mapped read-only (the page cache itself, no copy), after checking
/// that it lies inside the file as it is now. Unmapped by `unmap`.
struct MappedSpan {
    /// The span's first byte.
    let bytes: UnsafeRawPointer
    private let base: UnsafeMutableRawPointer?
    private let length: Int

    init(_ file: ReadOnlyFile, _ span: StoredSpan) throws {
        let (end, overflow) = span.offset.addingReportingOverflow(span.byteCount)
        guard span.offset >= 0, span.byteCount >= 0, !overflow, end <= file.size else {
            throw ZooError.unreadableFile(path: span.path, reason: "stored tensor bytes outside the file "
                + "(\(span.byteCount) bytes at offset \(span.offset), the file has \(file.size))")
        }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = span.offset / page * page
        length = end - start
        guard span.byteCount > 0 else {
            base = nil
            bytes = UnsafeRawPointer(bitPattern: 16)!
            return
        }
        guard let mapped = mmap(nil, length, PROT_READ, MAP_SHARED, file.descriptor, off_t(start)), mapped != MAP_FAILED else {
            throw ZooError.unreadableFile(path: span.path, reason: "cannot map the file: \(String(cString: strerror(errno)))")
        }
        base = mapped
        bytes = UnsafeRawPointer(mapped + (span.offset - start))
    }

    func unmap() {
        if let base { munmap(base, length) }
    }
}

/// A tensor whose values are still in the input file, and the layout change they need on
/// the way out: none (copied file to file by the kernel), or a transpose into canonical
/// layout (`LayoutTransform.hwioToOIHW`, `.transpose`, `.transposeFromHWCFlatten`: Keras
/// kernels), streamed in tiles from a read-only mapping of the input through band buffers
/// into the output, never a whole tensor in memory.
struct StoredTensor: Sendable, Equatable {
    let span: StoredSpan
    /// `.none`: the bytes as they are; otherwise a transform `StreamedTranspose` supports.
    let transform: LayoutTransform
    /// The shape the input stores (Keras's HWIO or [in, out]).
    let sourceShape: [Int]

    init(span: StoredSpan, transform: LayoutTransform = .none, sourceShape: [Int]) {
        self.span = span; self.transform = transform; self.sourceShape = sourceShape
    }

    /// Thrown while writing when the streamed values hold NaN or Inf: the ordinary path
    /// then loads the file and reports them as it always does.
    struct NonFinite: Error {}

    /// Writes the canonical bytes: a kernel copy, or the streamed transpose with every value
    /// checked for NaN and Inf on the way (`NonFinite`).
    func write(to writer: AtomicFileWriter) throws {
        guard let plan = StreamedTranspose(transform, sourceShape: sourceShape),
              plan.rows * plan.cols * 4 == span.byteCount else {
            guard transform == .none else {
                throw ZooError.writeFailed(path: writer.path, reason: "no streamed layout change '\(transform.label)' for \(sourceShape)")
            }
            try writer.copy(span)
            return
        }
        let file = try ReadOnlyFile(path: span.path)
        let mapped = try MappedSpan(file, span)
        defer { mapped.unmap() }
        guard Int(bitPattern: mapped.bytes) % 4 == 0 else {
            throw ZooError.writeFailed(path: writer.path, reason: "stored tensor bytes at offset \(span.offset) are not 4-byte aligned")
        }
        try plan.stream(from: mapped.bytes.assumingMemoryBound(to: UInt32.self), check: { band in
            if let base = band.baseAddress, StoredSpan.nonFiniteAny(UnsafeRawPointer(base), count: band.count) {
                throw NonFinite()
            }
        }, write: { try writer.write($0) })
    }
}

/// A Keras kernel seen as the [rows, cols] matrix whose transpose, with the destination
/// columns permuted, is the canonical tensor: destination row `c` (a source column) holds
/// at position `j` the source's row `sourceRow[j]`. The same layout changes as
/// `LayoutTransform.apply`, produced a band of destination rows at a time.
struct StreamedTranspose {
    let rows: Int
    let cols: Int
    /// For each destination position, the offset (in elements) of its source row.
    let sourceRowStart: [Int]

    /// Bytes of destination rows produced per band, about: wide bands visit each source row
    /// (a different page of the mapping) fewer times, and a TLB miss costs a two-level page
    /// walk in a virtual machine; the two band buffers sit on huge pages. VGG16's fc1 in
    /// bands of 160 rows (16 MB) took 0.39-0.54 s to convert whole here, in 8 MB bands
    /// 0.44 s, in 32 MB 0.39-0.48 s.
    static let bandBytes = 16 << 20

    /// nil for transforms that are not a transpose, or a shape that does not fit one.
    init?(_ transform: LayoutTransform, sourceShape shape: [Int]) {
        var rowMap: ((Int) -> Int)?
        switch transform {
        case .hwioToOIHW:
            guard shape.count == 4 else { return nil }
            let (pixels, ci, co) = (shape[0] * shape[1], shape[2], shape[3])
            rows = pixels * ci; cols = co
            // HWIO row (y*kw+x)*ci+i is OIHW column i*kh*kw+(y*kw+x).
            if ci > 0 { rowMap = { ($0 % ci) * pixels + $0 / ci } }
        case .transpose:
            guard shape.count == 2 else { return nil }
            rows = shape[0]; cols = shape[1]
        case .transposeFromHWCFlatten(let c, let h, let w):
            guard shape.count == 2 else { return nil }
            rows = shape[0]; cols = shape[1]
            // As `LayoutKernels.denseFromKeras`: Keras row (y*w+x)*c+ch becomes canonical
            // column (ch*h+y)*w+x, when the flattened volume is this layer's whole input.
            if c * h * w == rows, c > 0 { rowMap = { ($0 % c) * h * w + $0 / c } }
        case .none, .constant, .dividedByFactor:
            return nil
        }
        guard rows > 0, cols > 0, checkedElementCount([rows, cols]) != nil else { return nil }
        var starts = [Int](repeating: 0, count: rows)
        for r in 0..<rows {
            let j = rowMap.map { $0(r) } ?? r
            guard j >= 0, j < rows else { return nil }
            starts[j] = r * cols
        }
        sourceRowStart = starts
    }

    /// Source columns (destination rows) per band: whole tiles of about `bandBytes`, or
    /// fewer rows than a tile when one tile's worth would be far more (a very long row).
    var bandRows: Int {
        let fit = StreamedTranspose.bandBytes / (rows * 4)
        let rounded = fit >= LayoutKernels.tile ? fit / LayoutKernels.tile * LayoutKernels.tile : max(1, fit)
        return min(cols, rounded)
    }

    /// Produces the destination in bands of whole rows, in order, and hands each to
    /// `check` (on this thread, while the band is in cache) and then to `write` (on another
    /// thread, while this one transposes the next band into the other buffer). At most one
    /// write is in flight, and none is when this returns or throws.
    /// `bandRows` overrides the band height (the tests try several).
    func stream(from source: UnsafePointer<UInt32>, bandRows requested: Int? = nil,
                check: (UnsafeBufferPointer<UInt32>) throws -> Void,
                write: @escaping (UnsafeRawBufferPointer) throws -> Void) throws {
        let bandRows = max(1, min(cols, requested ?? self.bandRows))
        let buffers = BandBuffers.shared.take(2, bytes: bandRows * rows * 4)
        let pipeline = BandPipeline(write: write)
        defer {
            pipeline.finish()
            BandBuffers.shared.give(buffers)
        }
        var first = 0
        var index = 0
        while first < cols {
            let last = min(first + bandRows, cols)
            // This buffer's last write (two bands ago) has completed: each band waits for the
            // one before it.
            let buffer = buffers[index % 2].assumingMemoryBound(to: UInt32.self)
            sourceRowStart.withUnsafeBufferPointer { starts in
                LayoutKernels.transposeBand(source, sourceRowStart: starts, columns: first..<last, into: buffer)
            }
            let band = UnsafeBufferPointer(start: UnsafePointer(buffer), count: (last - first) * rows)
            try check(band)
            try pipeline.wait()
            pipeline.submit(UnsafeRawBufferPointer(band))
            first = last
            index += 1
        }
        try pipeline.wait()
    }
}

/// The band writes of one `StreamedTranspose.stream`, one at a time on another thread.
private final class BandPipeline: @unchecked Sendable {
    private let group = DispatchGroup()
    private let write: (UnsafeRawBufferPointer) throws -> Void
    /// Set by the writing thread before it leaves the group; read after waiting on it.
    private var failure: Error?

    init(write: @escaping (UnsafeRawBufferPointer) throws -> Void) { self.write = write }

    func submit(_ bytes: UnsafeRawBufferPointer) {
        let start = UInt(bitPattern: bytes.baseAddress), count = bytes.count
        DispatchQueue.global().async(group: group) {
            do {
                try self.write(UnsafeRawBufferPointer(start: UnsafeRawPointer(bitPattern: start), count: count))
            } catch {
                self.failure = error
            }
        }
    }

    /// Waits for the write in flight; rethrows its error.
    func wait() throws {
        group.wait()
        if let failure {
            self.failure = nil
            throw failure
        }
    }

    /// Waits, whatever happened.
    func finish() { group.wait() }
}

/// Band buffers kept for the next streamed tensor (the first touch of fresh memory is what
/// costs here, not the allocation), 2 MB aligned and advised onto huge pages.
final class BandBuffers: @unchecked Sendable {
    static let shared = BandBuffers()
    private let lock = NSLock()
    private var free: [(pointer: UnsafeMutableRawPointer, bytes: Int)] = []
    private static let alignment = 2 << 20
    /// Buffers kept between streams; more are freed when given back.
    private static let kept = 2

    /// `count` buffers of at least `bytes` each.
    func take(_ count: Int, bytes: Int) -> [UnsafeMutableRawPointer] {
        lock.lock()
        defer { lock.unlock() }
        var taken: [UnsafeMutableRawPointer] = []
        while taken.count < count {
            if let index = free.firstIndex(where: { $0.bytes >= bytes }) {
                taken.append(free.remove(at: index).pointer)
                continue
            }
            let size = (max(bytes, 1) + BandBuffers.alignment - 1) / BandBuffers.alignment * BandBuffers.alignment
            let pointer = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: BandBuffers.alignment)
            adviseHugePages(pointer, count: size)
            sizes[pointer] = size
            taken.append(pointer)
        }
        return taken
    }

    func give(_ buffers: [UnsafeMutableRawPointer]) {
        lock.lock()
        defer { lock.unlock() }
        for pointer in buffers { free.append((pointer, sizes[pointer] ?? 0)) }
        // Keep the largest.
        free.sort { $0.bytes > $1.bytes }
        while free.count > BandBuffers.kept {
            let dropped = free.removeLast()
            sizes[dropped.pointer] = nil
            dropped.pointer.deallocate()
        }
    }

    private var sizes: [UnsafeMutableRawPointer: Int] = [:]
}

/// A tensor's values on their way into a file: in memory, or still where the input file
/// holds them.
enum TensorPayload {
    case values([Float])
    case stored(StoredTensor)

    var byteCount: Int {
        switch self {
        case .values(let v): return v.count * MemoryLayout<Float>.size
        case .stored(let tensor): return tensor.span.byteCount
        }
    }

    var elementCount: Int { byteCount / MemoryLayout<Float>.size }

    func write(to writer: AtomicFileWriter) throws {
        switch self {
        case .values(let v): try writer.writeLittleEndian(v)
        case .stored(let tensor): try tensor.write(to: writer)
        }
    }
}
