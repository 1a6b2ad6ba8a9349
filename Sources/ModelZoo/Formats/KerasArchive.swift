import CHDF5
import CZlibCRC
import HDF5Scan
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Keras 3's native `.keras` file: a zip of `metadata.json`, `config.json` (the model's
/// architecture) and `model.weights.h5` (the `.weights.h5` layout).
///
/// The HDF5 entry is never extracted to disk: libhdf5 opens it as a file image in memory
/// (the core driver, through `H5LTopen_file_image` without copying), and only inside the
/// sandboxed worker, as for any HDF5 file. Keras writes the entry stored, so its bytes lie
/// in the zip as they are: the worker maps the zip and reports each contiguous float32
/// dataset at its offset in the zip (entry data offset + offset in the image), which the
/// parent reads directly. A deflated entry (a re-zipped archive) is inflated in the worker,
/// within its declared size, and every tensor comes through the worker's read requests.
enum KerasArchive {
    static let weightsEntryName = "model.weights.h5"
    static let configEntryName = "config.json"
    static let metadataEntryName = "metadata.json"
    /// The largest weights entry a deflated archive may declare: past the largest model
    /// here (VGG19, 575 MB) by far, and small enough that a lying header cannot make the
    /// worker reserve the machine's memory.
    static let maximumInflatedBytes = 8 << 30
    /// config.json and metadata.json are read into memory by the parent.
    static let maximumJSONBytes = 64 << 20

    /// What the opener looks for: a zip holding the weights and the config.
    static func isKerasArchive(_ zip: ZipDirectory) -> Bool {
        let names = Set(zip.entries.map(\.name))
        return names.contains(weightsEntryName) && names.contains(configEntryName)
    }

    struct WeightsEntry {
        let entry: ZipEntry
        /// Where the entry's (stored or deflated) bytes start in the zip.
        let dataOffset: Int
        var stored: Bool { entry.method == 0 }
    }

    static func weightsEntry(_ zip: ZipDirectory) throws -> WeightsEntry {
        let matches = zip.entries.filter { $0.name == weightsEntryName }
        guard let entry = matches.first else {
            throw ZooError.unreadableFile(path: zip.path, reason: "a .keras archive without '\(weightsEntryName)': "
                + "it holds no weights (entries: \(zip.entries.prefix(5).map(\.name).joined(separator: ", ")))")
        }
        guard matches.count == 1 else {
            throw ZooError.unreadableFile(path: zip.path, reason: "the archive has \(matches.count) entries named '\(weightsEntryName)'")
        }
        switch entry.method {
        case 0:
            guard entry.compressedSize == entry.uncompressedSize else {
                throw ZooError.unreadableFile(path: zip.path, reason: "stored entry '\(weightsEntryName)' declares "
                    + "\(entry.compressedSize) stored and \(entry.uncompressedSize) uncompressed bytes")
            }
        case 8:
            guard entry.uncompressedSize <= maximumInflatedBytes else {
                throw ZooError.unreadableFile(path: zip.path, reason: "deflated entry '\(weightsEntryName)' declares "
                    + "\(describeBytes(entry.uncompressedSize)) uncompressed, over the \(describeBytes(maximumInflatedBytes)) limit")
            }
        default:
            throw ZooError.unreadableFile(path: zip.path, reason: "entry '\(weightsEntryName)' uses compression method "
                + "\(entry.method); only stored and deflate are read")
        }
        guard entry.uncompressedSize > 0 else {
            throw ZooError.unreadableFile(path: zip.path, reason: "entry '\(weightsEntryName)' is empty: no weights")
        }
        return WeightsEntry(entry: entry, dataOffset: try zip.dataOffset(of: entry))
    }

    /// A small JSON entry as text, nil when the archive lacks it.
    static func text(_ zip: ZipDirectory, _ name: String) throws -> String? {
        guard let entry = zip.entries.first(where: { $0.name == name }) else { return nil }
        return String(decoding: try zip.contents(of: entry, limit: maximumJSONBytes), as: UTF8.self)
    }

    /// The address space a worker needs beyond its usual 2 GiB: the mapped zip, and the
    /// inflated entry when it is deflated.
    static func workerExtraSpace(fileSize: Int, weights: WeightsEntry) -> UInt64 {
        UInt64(fileSize) + (weights.stored ? 0 : UInt64(weights.entry.uncompressedSize))
    }

    /// The weights entry opened by libhdf5 as a file image. Only the worker (or a process
    /// that turned the isolation off) makes one. Keeps the memory libhdf5 reads alive until
    /// the file is closed.
    final class Image {
        let fileID: hid_t
        /// Bytes of the HDF5 image (the entry's uncompressed size).
        let size: Int
        /// Added to an offset inside the image to get the offset in the zip; nil when the
        /// entry is deflated (its bytes are not in the zip as they are).
        let offsetInArchive: Int?
        private let memory: UnsafeMutableRawPointer
        private let mappedLength: Int?

        init(archive file: ReadOnlyFile) throws {
            let path = file.path
            let zip = try ZipDirectory(file: file)
            let weights = try KerasArchive.weightsEntry(zip)
            size = weights.entry.uncompressedSize
            if weights.stored {
                // A private, writable mapping: libhdf5 only reads a read-only image, but a
                // stray write then changes a copy of the page, never the file.
                let mapped = mmap(nil, file.size, PROT_READ | PROT_WRITE, MAP_PRIVATE, file.descriptor, 0)
                guard let mapped, mapped != MAP_FAILED else {
                    throw ZooError.unreadableFile(path: path, reason: "cannot map the archive: \(String(cString: strerror(errno)))")
                }
                memory = mapped
                mappedLength = file.size
                offsetInArchive = weights.dataOffset
            } else {
                guard let buffer = malloc(size) else {
                    throw ZooError.unreadableFile(path: path, reason: "cannot allocate \(describeBytes(size)) to inflate '\(weightsEntryName)'")
                }
                do {
                    try zip.inflate(weights.entry, into: UnsafeMutableRawBufferPointer(start: buffer, count: size))
                } catch {
                    free(buffer)
                    throw error
                }
                memory = buffer
                mappedLength = nil
                offsetInArchive = nil
            }
            let image = memory + (weights.stored ? weights.dataOffset : 0)
            let imageSize = size
            // libhdf5's image driver fails on a non-HDF5 entry without saying why.
            var signed = false
            var at = 0
            while at + 8 <= imageSize && !signed {
                signed = UnsafeRawBufferPointer(start: image + at, count: 8).elementsEqual(WeightFileOpener.hdf5Signature)
                at = at == 0 ? 512 : at * 2
            }
            guard signed else {
                let (base, length) = (memory, mappedLength)
                if let length { munmap(base, length) } else { free(base) }
                throw ZooError.unreadableFile(path: path, reason: "'\(weightsEntryName)' in the archive is not an HDF5 file "
                    + "(no HDF5 signature found)")
            }
            let id = HDF5Library.serialized { zoo_h5_open_image(image, imageSize) }
            guard id >= 0 else {
                let message = HDF5Library.serialized { HDF5Library.takeErrorMessage() }
                let (base, length) = (memory, mappedLength)
                if let length { munmap(base, length) } else { free(base) }
                throw ZooError.unreadableFile(path: path, reason: "'\(weightsEntryName)' in the archive: "
                    + HDF5Library.explainOpenFailure(message))
            }
            fileID = id
        }

        deinit {
            HDF5Library.serialized { _ = H5Fclose(fileID) }
            if let length = mappedLength { munmap(memory, length) } else { free(memory) }
        }
    }
}

extension ZipDirectory {
    /// Inflates a deflated entry into `buffer`, which must be exactly its declared size.
    /// The input is read and fed in slices, so the compressed bytes need not fit in memory
    /// beside the result.
    func inflate(_ entry: ZipEntry, into buffer: UnsafeMutableRawBufferPointer) throws {
        func failure(_ reason: String) -> ZooError { .unreadableFile(path: path, reason: "zip entry '\(entry.name)': \(reason)") }
        guard entry.method == 8 else { throw failure("not deflated") }
        guard buffer.count == entry.uncompressedSize, let output = buffer.baseAddress else { throw failure("bad output buffer") }
        // Deflate expands at most about 1032:1: a larger declared size is a lie.
        let (bound, overflow) = entry.compressedSize.multipliedReportingOverflow(by: 1032)
        guard overflow || entry.uncompressedSize <= bound + 64 else {
            throw failure("declares \(entry.uncompressedSize) bytes from \(entry.compressedSize) deflated bytes: "
                + "more than deflate can expand to")
        }
        let start = try dataOffset(of: entry)
        var stream = z_stream()
        guard inflateInit2_(&stream, -MAX_WBITS, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw failure("zlib could not start")
        }
        defer { inflateEnd(&stream) }
        let slice = 1 << 24
        var consumed = 0
        var produced = 0
        var status = Z_OK
        var spare: UInt8 = 0
        while status != Z_STREAM_END && consumed < entry.compressedSize {
            var input = try fileHandle.bytes(at: start + consumed, count: min(slice, entry.compressedSize - consumed))
            guard !input.isEmpty else { break }
            consumed += input.count
            status = try input.withUnsafeMutableBufferPointer { source -> Int32 in
                stream.next_in = source.baseAddress
                stream.avail_in = uInt(source.count)
                var result = Z_OK
                while stream.avail_in > 0 {
                    // With the buffer full, one spare byte tells a stream that ends here from
                    // one that holds more than it declared.
                    let room = min(buffer.count - produced, 1 << 30)
                    let target = room > 0 ? (output + produced).assumingMemoryBound(to: Bytef.self)
                        : withUnsafeMutablePointer(to: &spare) { $0 }
                    stream.next_out = target
                    stream.avail_out = uInt(max(room, 1))
                    result = CZlibCRC.inflate(&stream, Z_NO_FLUSH)
                    let wrote = max(room, 1) - Int(stream.avail_out)
                    if room == 0 && wrote > 0 {
                        throw failure("inflates to more than its declared \(entry.uncompressedSize) bytes")
                    }
                    produced += room == 0 ? 0 : wrote
                    if result == Z_STREAM_END { break }
                    guard result == Z_OK else { throw failure("corrupt deflate data (zlib status \(result))") }
                }
                return result
            }
        }
        guard status == Z_STREAM_END, produced == entry.uncompressedSize else {
            throw failure("does not inflate to its declared \(entry.uncompressedSize) bytes: truncated or corrupt")
        }
    }
}
