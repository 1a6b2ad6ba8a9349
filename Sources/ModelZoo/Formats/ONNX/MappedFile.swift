#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A file opened read-only and mapped into memory. Scanning protobuf headers through the
/// mapping touches only the pages the headers sit on; weight payloads are later copied with
/// `pread` straight into their destination arrays, so they never count twice in the
/// process's memory (once as mapped pages, once as floats).
final class MappedFile {
    let path: String
    let size: Int
    private let descriptor: Int32
    private let base: UnsafeRawPointer?

    init(path: String) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw ZooError.unreadableFile(path: path, reason: "cannot open: \(String(cString: strerror(errno)))")
        }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw ZooError.unreadableFile(path: path, reason: "cannot stat: \(reason)")
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            throw ZooError.unreadableFile(path: path, reason: "not a regular file")
        }
        let fileSize = Int(info.st_size)
        var mapping: UnsafeRawPointer? = nil
        if fileSize > 0 {
            let address = mmap(nil, fileSize, PROT_READ, MAP_PRIVATE, fd, 0)
            guard let address, address != MAP_FAILED else {
                let reason = String(cString: strerror(errno))
                close(fd)
                throw ZooError.unreadableFile(path: path, reason: "cannot map \(fileSize) bytes: \(reason)")
            }
            mapping = UnsafeRawPointer(address)
        }
        self.path = path
        self.size = fileSize
        self.descriptor = fd
        self.base = mapping
    }

    deinit {
        if let base { munmap(UnsafeMutableRawPointer(mutating: base), size) }
        close(descriptor)
    }

    /// The whole file as bytes; valid while this object lives.
    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: base == nil ? 0 : size) }

    /// Copies `range` of the file into `destination` (which holds at least `range.count`
    /// bytes). The range must already have been checked against `size`.
    func read(_ range: Range<Int>, into destination: UnsafeMutableRawPointer) throws {
        try readFully(descriptor: descriptor, path: path, range: range, into: destination)
    }
}

/// `pread` until `range` is read, retrying on short reads and EINTR.
func readFully(descriptor: Int32, path: String, range: Range<Int>, into destination: UnsafeMutableRawPointer) throws {
    var done = 0
    while done < range.count {
        let chunk = min(range.count - done, 1 << 30)
        let got = pread(descriptor, destination + done, chunk, off_t(range.lowerBound + done))
        if got < 0 {
            if errno == EINTR { continue }
            throw ZooError.unreadableFile(path: path, reason: "read failed at byte \(range.lowerBound + done): \(String(cString: strerror(errno)))")
        }
        if got == 0 {
            throw ZooError.unreadableFile(path: path, reason: "file ended at byte \(range.lowerBound + done) while reading \(range.count) bytes from \(range.lowerBound)")
        }
        done += got
    }
}
