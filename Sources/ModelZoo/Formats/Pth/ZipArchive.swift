import CZlibCRC
import Foundation

/// One entry of a zip archive's central directory, with where its bytes lie in the file.
struct ZipEntry: Sendable {
    let name: String
    /// 0: stored; anything else is compressed (8: deflate).
    let method: UInt16
    let crc32: UInt32
    let compressedSize: Int
    let uncompressedSize: Int
    let localHeaderOffset: Int
}

/// The central directory of a zip archive, read with every offset and length checked
/// against the file before it is used.
///
/// Our own parser, not ZIPFoundation: its `Entry` keeps the data offset internal (0.9.20),
/// and a `.pth` reader needs exactly that offset to read a tensor in place with `pread`
/// instead of extracting a copy. Only what torch writes is supported: one disk, zip64
/// records for large archives, entries found through the central directory.
struct ZipDirectory {
    let path: String
    let entries: [ZipEntry]
    private let file: ReadOnlyFile
    /// Where the central directory starts: no entry's data may run into it.
    private let directoryOffset: Int

    /// More central-directory entries than this is not a weight file (torch writes a few
    /// per tensor; ResNet152 has about 950 tensors).
    static let maximumEntries = 1_000_000

    init(file: ReadOnlyFile) throws {
        path = file.path
        self.file = file
        let path = file.path
        func unreadable(_ reason: String) -> ZooError { .unreadableFile(path: path, reason: reason) }

        // The end record is the last 22 bytes plus a comment of up to 65,535 bytes.
        let tailLength = min(file.size, 22 + 65_535)
        let tailStart = file.size - tailLength
        let tail = try file.bytes(at: tailStart, count: tailLength)
        var endIndex: Int?
        var i = tail.count - 22
        while i >= 0 {
            if tail[i] == 0x50, tail[i + 1] == 0x4b, tail[i + 2] == 0x05, tail[i + 3] == 0x06 { endIndex = i; break }
            i -= 1
        }
        guard let end = endIndex else {
            throw unreadable("zip archive without an end-of-central-directory record: truncated or not a zip file")
        }
        let endOffset = tailStart + end
        var count = Int(le16(tail, end + 10))
        var directorySize = Int(le32(tail, end + 12))
        var directoryStart = Int(le32(tail, end + 16))
        var limit = endOffset
        if count == 0xFFFF || directorySize == 0xFFFF_FFFF || directoryStart == 0xFFFF_FFFF {
            // zip64: a locator just before the end record points at the zip64 end record.
            guard endOffset >= 20 else { throw unreadable("zip64 archive without its locator") }
            let locator = try file.bytes(at: endOffset - 20, count: 20)
            guard locator.count == 20, le32(locator, 0) == 0x0706_4b50 else {
                throw unreadable("zip64 archive without its end-of-central-directory locator")
            }
            let record64 = le64(locator, 8)
            guard record64 <= UInt64(endOffset - 20 - 56) else {
                throw unreadable("zip64 end record offset \(record64) lies outside the archive")
            }
            let record = try file.bytes(at: Int(record64), count: 56)
            guard record.count == 56, le32(record, 0) == 0x0606_4b50 else {
                throw unreadable("zip64 end-of-central-directory record missing at offset \(record64)")
            }
            let count64 = le64(record, 32), size64 = le64(record, 40), start64 = le64(record, 48)
            guard count64 <= UInt64(ZipDirectory.maximumEntries), size64 <= UInt64(file.size), start64 <= UInt64(file.size) else {
                throw unreadable("zip64 end record declares \(count64) entries, \(size64) bytes at \(start64): past the file")
            }
            count = Int(count64); directorySize = Int(size64); directoryStart = Int(start64)
            limit = Int(record64)
        }
        guard directoryStart <= limit, directorySize <= limit - directoryStart else {
            throw unreadable("central directory [\(directoryStart), +\(directorySize)) lies outside the archive "
                + "(\(file.size) bytes): truncated or corrupt")
        }
        guard count <= directorySize / 46 else {
            throw unreadable("central directory of \(directorySize) bytes cannot hold \(count) entries")
        }
        directoryOffset = directoryStart
        let directory = try file.bytes(at: directoryStart, count: directorySize)

        var entries: [ZipEntry] = []
        entries.reserveCapacity(count)
        var at = 0
        for index in 0..<count {
            guard at + 46 <= directory.count, le32(directory, at) == 0x0201_4b50 else {
                throw unreadable("central directory entry \(index) is corrupt (bad signature or past the directory)")
            }
            let flags = le16(directory, at + 8)
            let method = le16(directory, at + 10)
            let crc = le32(directory, at + 16)
            var compressed = UInt64(le32(directory, at + 20))
            var uncompressed = UInt64(le32(directory, at + 24))
            let nameLength = Int(le16(directory, at + 28))
            let extraLength = Int(le16(directory, at + 30))
            let commentLength = Int(le16(directory, at + 32))
            var localOffset = UInt64(le32(directory, at + 42))
            let nameStart = at + 46
            let next = nameStart + nameLength + extraLength + commentLength
            guard next <= directory.count else { throw unreadable("central directory entry \(index) runs past the directory") }
            let name = String(decoding: directory[nameStart..<(nameStart + nameLength)], as: UTF8.self)
            if flags & 1 != 0 { throw unreadable("zip entry '\(name)' is encrypted") }
            // The zip64 extra field holds, in this order, whichever of the three were saturated.
            var extra = nameStart + nameLength
            let extraEnd = extra + extraLength
            while extra + 4 <= extraEnd {
                let id = le16(directory, extra), size = Int(le16(directory, extra + 2))
                let body = extra + 4
                guard body + size <= extraEnd else { break }
                if id == 0x0001 {
                    var field = body
                    func take() throws -> UInt64 {
                        guard field + 8 <= body + size else { throw unreadable("zip entry '\(name)': short zip64 extra field") }
                        defer { field += 8 }
                        return le64(directory, field)
                    }
                    if uncompressed == 0xFFFF_FFFF { uncompressed = try take() }
                    if compressed == 0xFFFF_FFFF { compressed = try take() }
                    if localOffset == 0xFFFF_FFFF { localOffset = try take() }
                }
                extra = body + size
            }
            guard compressed <= UInt64(file.size), uncompressed <= UInt64(Int.max), localOffset <= UInt64(file.size) else {
                throw unreadable("zip entry '\(name)' declares sizes or an offset beyond the \(file.size)-byte file")
            }
            entries.append(ZipEntry(name: name, method: method, crc32: crc, compressedSize: Int(compressed),
                                    uncompressedSize: Int(uncompressed), localHeaderOffset: Int(localOffset)))
            at = next
        }
        self.entries = entries
    }

    /// The archive file, for readers that read an entry's bytes themselves.
    var fileHandle: ReadOnlyFile { file }

    /// Where `entry`'s stored bytes start, from its local header, checked to lie with all
    /// its bytes before the central directory.
    func dataOffset(of entry: ZipEntry) throws -> Int {
        let header = try file.bytes(at: entry.localHeaderOffset, count: 30)
        guard header.count == 30, le32(header, 0) == 0x0403_4b50 else {
            throw ZooError.unreadableFile(path: path, reason: "zip entry '\(entry.name)': no local header at offset "
                + "\(entry.localHeaderOffset): truncated or corrupt")
        }
        let start = entry.localHeaderOffset + 30 + Int(le16(header, 26)) + Int(le16(header, 28))
        guard start <= directoryOffset, entry.compressedSize <= directoryOffset - start else {
            throw ZooError.unreadableFile(path: path, reason: "zip entry '\(entry.name)': \(entry.compressedSize) bytes at offset "
                + "\(start) run past the entries' area (\(directoryOffset) bytes): truncated or corrupt")
        }
        return start
    }

    /// A small entry's bytes (stored or deflated), for `data.pkl` and the text records.
    func contents(of entry: ZipEntry, limit: Int) throws -> [UInt8] {
        guard entry.uncompressedSize <= limit else {
            throw ZooError.unreadableFile(path: path, reason: "zip entry '\(entry.name)' is \(entry.uncompressedSize) bytes, "
                + "over the \(limit)-byte limit for it")
        }
        let start = try dataOffset(of: entry)
        let raw = try file.bytes(at: start, count: entry.compressedSize)
        switch entry.method {
        case 0:
            guard entry.compressedSize == entry.uncompressedSize else {
                throw ZooError.unreadableFile(path: path, reason: "stored zip entry '\(entry.name)' has different stored "
                    + "(\(entry.compressedSize)) and declared (\(entry.uncompressedSize)) sizes")
            }
            return raw
        case 8:
            // Deflate expands at most about 1032:1; a larger declared size is a lie that would
            // make us allocate far more than the file holds.
            guard entry.uncompressedSize <= entry.compressedSize.multipliedReportingOverflow(by: 1032).partialValue + 64 else {
                throw ZooError.unreadableFile(path: path, reason: "zip entry '\(entry.name)' declares \(entry.uncompressedSize) "
                    + "bytes from \(entry.compressedSize) deflated bytes: more than deflate can expand to")
            }
            return try inflate(raw, expected: entry.uncompressedSize, name: entry.name)
        default:
            throw ZooError.unreadableFile(path: path, reason: "zip entry '\(entry.name)' uses compression method \(entry.method); "
                + "only stored and deflate are read")
        }
    }

    private func inflate(_ input: [UInt8], expected: Int, name: String) throws -> [UInt8] {
        var output = [UInt8](repeating: 0, count: expected)
        var stream = z_stream()
        guard inflateInit2_(&stream, -MAX_WBITS, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw ZooError.unreadableFile(path: path, reason: "zip entry '\(name)': zlib could not start")
        }
        defer { inflateEnd(&stream) }
        var input = input
        let status = input.withUnsafeMutableBufferPointer { source -> Int32 in
            output.withUnsafeMutableBufferPointer { destination -> Int32 in
                stream.next_in = source.baseAddress
                stream.avail_in = uInt(source.count)
                stream.next_out = destination.baseAddress
                stream.avail_out = uInt(destination.count)
                return CZlibCRC.inflate(&stream, Z_FINISH)
            }
        }
        guard status == Z_STREAM_END, Int(stream.total_out) == expected else {
            throw ZooError.unreadableFile(path: path, reason: "zip entry '\(name)' does not inflate to its declared \(expected) bytes")
        }
        return output
    }
}

func le16(_ b: [UInt8], _ i: Int) -> UInt16 { UInt16(b[i]) | UInt16(b[i + 1]) << 8 }
func le32(_ b: [UInt8], _ i: Int) -> UInt32 {
    UInt32(b[i]) | UInt32(b[i + 1]) << 8 | UInt32(b[i + 2]) << 16 | UInt32(b[i + 3]) << 24
}
func le64(_ b: [UInt8], _ i: Int) -> UInt64 { UInt64(le32(b, i)) | UInt64(le32(b, i + 4)) << 32 }

/// CRC-32 as zip stores it, continuing from `previous`.
func zipCRC32(_ bytes: UnsafeRawBufferPointer, previous: UInt32 = 0) -> UInt32 {
    guard let base = bytes.baseAddress else { return previous }
    var crc = UInt(previous)
    var offset = 0
    // zlib takes a 32-bit length.
    while offset < bytes.count {
        let chunk = min(bytes.count - offset, 1 << 30)
        crc = CZlibCRC.crc32(crc, base.advanced(by: offset).assumingMemoryBound(to: Bytef.self), uInt(chunk))
        offset += chunk
    }
    return UInt32(truncatingIfNeeded: crc)
}

/// Writes a zip archive of stored (uncompressed) entries whose data starts on a multiple
/// of `alignment` bytes, as torch writes `.pth` files so readers can map tensors in place.
/// The local header's extra field carries the padding. No zip64: an archive that would
/// pass 4 GiB is refused before its first byte past the limit.
struct AlignedZipWriter {
    static let alignment = 64
    private let writer: AtomicFileWriter
    private var offset = 0
    private var central: [UInt8] = []
    private var count = 0

    init(_ writer: AtomicFileWriter) { self.writer = writer }

    /// Adds one entry; `crc` is the CRC-32 of the `size` bytes `body` writes.
    mutating func add(_ name: String, size: Int, crc: UInt32, body: () throws -> Void) throws {
        let nameBytes = Array(name.utf8)
        let unpadded = offset + 30 + nameBytes.count
        var padding = (AlignedZipWriter.alignment - unpadded % AlignedZipWriter.alignment) % AlignedZipWriter.alignment
        // An extra field needs 4 bytes of its own header.
        if padding > 0 && padding < 4 { padding += AlignedZipWriter.alignment }
        guard offset + 30 + nameBytes.count + padding + size < Int(UInt32.max), nameBytes.count <= 0xFFFF else {
            throw ZooError.writeFailed(path: writer.path, reason: "the archive would pass 4 GiB at '\(name)': zip64 is not written")
        }
        var local: [UInt8] = []
        local.reserveCapacity(30 + nameBytes.count + padding)
        put32(&local, 0x0403_4b50)
        put16(&local, 20)          // version needed: 2.0
        put16(&local, 0)           // flags
        put16(&local, 0)           // stored
        put16(&local, 0)           // time
        put16(&local, 0x21)        // date: 1980-01-01
        put32(&local, crc)
        put32(&local, UInt32(size))
        put32(&local, UInt32(size))
        put16(&local, UInt16(nameBytes.count))
        put16(&local, UInt16(padding))
        local += nameBytes
        if padding > 0 {
            put16(&local, 0x4246)  // "FB", the id torch's writer gives its padding field
            put16(&local, UInt16(padding - 4))
            local += [UInt8](repeating: 0, count: padding - 4)
        }
        try writer.write(local)
        try body()

        put32(&central, 0x0201_4b50)
        put16(&central, 20)        // made by: 2.0
        put16(&central, 20)
        put16(&central, 0)
        put16(&central, 0)
        put16(&central, 0)
        put16(&central, 0x21)
        put32(&central, crc)
        put32(&central, UInt32(size))
        put32(&central, UInt32(size))
        put16(&central, UInt16(nameBytes.count))
        put16(&central, 0)         // extra
        put16(&central, 0)         // comment
        put16(&central, 0)         // disk
        put16(&central, 0)         // internal attributes
        put32(&central, 0)         // external attributes
        put32(&central, UInt32(offset))
        central += nameBytes
        offset += local.count + size
        count += 1
    }

    mutating func add(_ name: String, bytes: [UInt8]) throws {
        let crc = bytes.withUnsafeBytes { zipCRC32($0) }
        let writer = self.writer
        try add(name, size: bytes.count, crc: crc) { try writer.write(bytes) }
    }

    /// Writes the central directory and the end record.
    func finish() throws {
        guard count < 0xFFFF, offset + central.count < Int(UInt32.max) else {
            throw ZooError.writeFailed(path: writer.path, reason: "too many entries or bytes for a zip without zip64")
        }
        var end: [UInt8] = []
        put32(&end, 0x0605_4b50)
        put16(&end, 0)
        put16(&end, 0)
        put16(&end, UInt16(count))
        put16(&end, UInt16(count))
        put32(&end, UInt32(central.count))
        put32(&end, UInt32(offset))
        put16(&end, 0)
        try writer.write(central + end)
    }
}

private func put16(_ out: inout [UInt8], _ v: UInt16) { out += [UInt8(v & 0xFF), UInt8(v >> 8)] }
private func put32(_ out: inout [UInt8], _ v: UInt32) {
    out += [UInt8(v & 0xFF), UInt8((v >> 8) & 0xFF), UInt8((v >> 16) & 0xFF), UInt8(v >> 24)]
}
