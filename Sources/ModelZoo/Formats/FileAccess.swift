import Foundation
import HDF5Scan
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A file opened read-only for positioned reads. Readers use it to check declared sizes
/// against the bytes really present before allocating, then read straight into the
/// destination buffer.
final class ReadOnlyFile {
    let path: String
    let size: Int
    let descriptor: Int32

    /// Opens `path`, reporting a missing file, a directory or a permission problem as
    /// `ZooError.unreadableFile` in words a user can act on.
    init(path: String) throws {
        self.path = path
        // Non-blocking, so a FIFO or a device answers at once instead of waiting forever for
        // a writer; anything but a regular file is refused right after.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        if fd < 0 {
            throw ZooError.unreadableFile(path: path, reason: describeOpenFailure(errno))
        }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let code = errno
            close(fd)
            throw ZooError.unreadableFile(path: path, reason: String(cString: strerror(code)))
        }
        switch info.st_mode & S_IFMT {
        case S_IFREG: break
        case S_IFDIR:
            close(fd)
            throw ZooError.unreadableFile(path: path, reason: "is a directory, not a weight file")
        default:
            close(fd)
            throw ZooError.unreadableFile(path: path, reason: "is not a regular file (a pipe, socket or device); refused")
        }
        descriptor = fd
        size = Int(info.st_size)
    }

    deinit { close(descriptor) }

    /// Reads exactly `count` bytes at `offset` into `destination`; a short read means the
    /// file changed or is truncated and is reported as such.
    func read(into destination: UnsafeMutableRawPointer, count: Int, at offset: Int) throws {
        adviseHugePages(destination, count: count)
        var done = 0
        while done < count {
            // Linux reads at most about 2 GiB per call.
            let got = pread(descriptor, destination + done, min(count - done, 1 << 30), off_t(offset + done))
            if got < 0 {
                if errno == EINTR { continue }
                throw ZooError.unreadableFile(path: path, reason: "read failed: \(String(cString: strerror(errno)))")
            }
            if got == 0 {
                throw ZooError.unreadableFile(
                    path: path, reason: "truncated: expected \(count) bytes at offset \(offset), file ends after \(done)")
            }
            done += got
        }
    }

    /// Up to `count` bytes at `offset` (fewer at the end of the file).
    func bytes(at offset: Int, count: Int) throws -> [UInt8] {
        guard offset >= 0, count >= 0, offset <= size else { return [] }
        let available = min(count, size - offset)
        var result = [UInt8](repeating: 0, count: available)
        if available > 0 {
            try result.withUnsafeMutableBytes { raw in
                guard let base = raw.baseAddress else { return }
                try read(into: base, count: available, at: offset)
            }
        }
        return result
    }
}

/// The file-scope `write(2)`, reachable from types that have their own `write` methods.
private func posixWrite(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) -> Int {
    write(fd, buffer, count)
}

/// Asks Linux to back a large, freshly allocated buffer with transparent huge pages (the
/// default policy here is "madvise"). Filling 400 MB of 4 kB pages costs about 100,000 page
/// faults, which made loading VGG16's fc1 twice as slow as numpy (which does the same).
/// Only a hint: failures are ignored.
func adviseHugePages(_ pointer: UnsafeMutableRawPointer, count: Int) {
    HDF5Scan.adviseHugePages(pointer, bytes: count)
}

func describeOpenFailure(_ code: Int32) -> String {
    switch code {
    case ENOENT: return "no such file"
    case EACCES: return "permission denied"
    case EISDIR: return "is a directory, not a weight file"
    default: return String(cString: strerror(code))
    }
}

/// The one way every writer puts a finished file in place: written under a temporary name
/// in the target's folder (same file system, so the rename is atomic), then renamed over
/// the target. A failed or interrupted write leaves the target as it was and removes the
/// temporary file. There is no fsync: like torch.save and safetensors, the write is atomic
/// against this process failing (full disk, crash, Ctrl-C), and durability across power
/// loss is left to the file system; syncing 550 MB would cost more than the conversion.
enum AtomicRename {
    static func temporaryPath(beside path: String) -> String {
        let url = URL(fileURLWithPath: path)
        let suffix = String(UInt64.random(in: 0...UInt64.max), radix: 36)
        return url.deletingLastPathComponent().path + "/." + url.lastPathComponent + ".tmp-\(getpid())-" + suffix
    }

    static func replace(_ path: String, with temporary: String) throws {
        if rename(temporary, path) != 0 {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw ZooError.writeFailed(path: path, reason: reason)
        }
    }
}

/// Writes a file through a descriptor under `AtomicRename`'s temporary name.
struct AtomicFileWriter {
    let path: String
    private let temporaryPath: String
    private var descriptor: Int32

    init(path: String) throws {
        self.path = path
        temporaryPath = AtomicRename.temporaryPath(beside: path)
        descriptor = open(temporaryPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        if descriptor < 0 {
            throw ZooError.writeFailed(
                path: path, reason: "cannot create a temporary file beside it: \(String(cString: strerror(errno)))")
        }
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard let base = bytes.baseAddress else { return }
        var done = 0
        while done < bytes.count {
            let wrote = posixWrite(descriptor, base + done, bytes.count - done)
            if wrote < 0 {
                if errno == EINTR { continue }
                throw ZooError.writeFailed(path: path, reason: String(cString: strerror(errno)))
            }
            done += wrote
        }
    }

    func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }

    /// float32 values in little-endian byte order, the order every format here stores.
    func writeLittleEndian(_ values: [Float]) throws {
        #if _endian(big)
        let little = values.map { $0.bitPattern.littleEndian }
        try little.withUnsafeBytes { try write($0) }
        #else
        try values.withUnsafeBytes { try write($0) }
        #endif
    }

    /// Copies a span of another file in the kernel (`copy_file_range`), falling back to
    /// reading and writing where the file systems cannot.
    func copy(_ span: StoredSpan) throws {
        let source = try ReadOnlyFile(path: span.path)
        guard span.offset >= 0, span.byteCount >= 0, span.offset + span.byteCount <= source.size else {
            throw ZooError.writeFailed(path: path, reason: "\(span.path) is shorter than the tensor bytes it should hold")
        }
        var inputOffset = Int64(span.offset)
        var remaining = span.byteCount
        while remaining > 0 {
            let copied = KernelCopy.function?(source.descriptor, &inputOffset, descriptor, nil, remaining, 0) ?? -1
            if KernelCopy.function == nil { errno = ENOSYS }
            if copied > 0 { remaining -= copied; continue }
            if copied < 0 && errno == EINTR { continue }
            if copied < 0 && ![EXDEV, ENOSYS, EINVAL, EOPNOTSUPP, EBADF].contains(errno) {
                throw ZooError.writeFailed(path: path, reason: String(cString: strerror(errno)))
            }
            if copied == 0 {
                throw ZooError.writeFailed(path: path, reason: "\(span.path) ended before the tensor bytes it should hold")
            }
            // No in-kernel copy between these file systems: through a buffer instead.
            var buffer = [UInt8](repeating: 0, count: min(remaining, 8 << 20))
            while remaining > 0 {
                let chunk = min(remaining, buffer.count)
                try buffer.withUnsafeMutableBytes { raw in
                    guard let base = raw.baseAddress else { return }
                    try source.read(into: base, count: chunk, at: Int(inputOffset))
                    try write(UnsafeRawBufferPointer(start: base, count: chunk))
                }
                inputOffset += Int64(chunk)
                remaining -= chunk
            }
        }
    }

    /// Closes and renames the temporary file over the target.
    mutating func commit() throws {
        let fd = descriptor
        descriptor = -1
        if close(fd) != 0 {
            let reason = String(cString: strerror(errno))
            unlink(temporaryPath)
            throw ZooError.writeFailed(path: path, reason: reason)
        }
        try AtomicRename.replace(path, with: temporaryPath)
    }

    /// Removes the temporary file after a failure; the target is untouched.
    mutating func abandon() {
        if descriptor >= 0 { close(descriptor); descriptor = -1 }
        unlink(temporaryPath)
    }

    /// Runs `body` against a fresh writer and commits, or abandons on any error.
    /// `beforeCommit` runs once the body has written everything: throwing there leaves the
    /// target untouched, as any failure does.
    static func write(to path: String, beforeCommit: (() throws -> Void)? = nil,
                      _ body: (AtomicFileWriter) throws -> Void) throws {
        var writer = try AtomicFileWriter(path: path)
        do {
            try body(writer)
            try beforeCommit?()
            try writer.commit()
        } catch {
            writer.abandon()
            throw error
        }
    }
}

/// A byte count in words ("553.4 MB") for error messages.
func describeBytes(_ count: Int) -> String {
    describeByteCount(count)
}

/// glibc's `copy_file_range`, looked up at run time: its declaration needs `_GNU_SOURCE`,
/// which Swift's Glibc module does not define.
enum KernelCopy {
    typealias Function = @convention(c) (Int32, UnsafeMutablePointer<Int64>?, Int32, UnsafeMutablePointer<Int64>?,
                                         Int, UInt32) -> Int
    static let function: Function? = {
        guard let handle = dlopen(nil, RTLD_NOW), let symbol = dlsym(handle, "copy_file_range") else { return nil }
        return unsafeBitCast(symbol, to: Function.self)
    }()
}
