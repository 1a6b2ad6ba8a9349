import CHDF5
import Foundation

/// Every call into libhdf5 goes through `HDF5Library.serialized`: Debian's serial build is
/// not safe to call from several threads at once, and its error-reporting switch lives on
/// the calling thread's error stack, so it is set again on each entry.
enum HDF5Library {
    private static let lock = NSLock()

    /// Keeps libhdf5 from registering its exit handler, which flushes every file still
    /// open: after a write failed half way (a full disk), that second flush of the
    /// abandoned file crashed the process at exit. Every file is closed explicitly, so the
    /// handler has nothing to do otherwise. Must run before the library's first call.
    private static let noExitHandler: Void = { _ = H5dont_atexit() }()

    static func serialized<T>(_ body: () throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        noExitHandler
        // Without this libhdf5 prints its whole error stack to stderr on every failure,
        // including the expected ones (probing creation-order indexes, absent attributes).
        H5Eset_auto2(hid_t(H5E_DEFAULT), nil, nil)
        return try body()
    }

    /// The most specific message libhdf5 left on this thread's error stack, then clears it.
    /// Call only inside `serialized`.
    static func takeErrorMessage() -> String {
        var buffer = [CChar](repeating: 0, count: 512)
        buffer.withUnsafeMutableBufferPointer { raw in
            if let base = raw.baseAddress { zoo_h5_take_error(base, raw.count) }
        }
        let message = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return message.isEmpty ? "libhdf5 gave no reason" : message
    }
}
