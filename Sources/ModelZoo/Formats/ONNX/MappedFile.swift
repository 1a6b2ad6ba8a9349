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
    /// The open descriptor and its checks (missing file, directory, permissions) are the
    /// same as every other reader's.
    private let file: ReadOnlyFile
    private let base: UnsafeRawPointer?

    var path: String { file.path }
    var size: Int { file.size }

    init(path: String) throws {
        file = try ReadOnlyFile(path: path)
        var mapping: UnsafeRawPointer? = nil
        if file.size > 0 {
            let address = mmap(nil, file.size, PROT_READ, MAP_PRIVATE, file.descriptor, 0)
            guard let address, address != MAP_FAILED else {
                throw ZooError.unreadableFile(path: path, reason: "cannot map \(file.size) bytes: \(String(cString: strerror(errno)))")
            }
            mapping = UnsafeRawPointer(address)
        }
        base = mapping
    }

    deinit {
        if let base { munmap(UnsafeMutableRawPointer(mutating: base), size) }
    }

    /// The whole file as bytes; valid while this object lives.
    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: base == nil ? 0 : size) }

    /// Copies `range` of the file into `destination` (which holds at least `range.count`
    /// bytes). The range must already have been checked against `size`.
    func read(_ range: Range<Int>, into destination: UnsafeMutableRawPointer) throws {
        try file.read(into: destination, count: range.count, at: range.lowerBound)
    }
}
