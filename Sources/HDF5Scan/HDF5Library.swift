internal import CHDF5Scan
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Every call into libhdf5 goes through `HDF5Library.serialized`: Debian's serial build is
/// not safe to call from several threads at once, and its error-reporting switch lives on
/// the calling thread's error stack, so it is set again on each entry.
///
/// This module stays clear of Foundation: the small worker executable links it, and
/// Foundation alone costs a process about 8 ms to start here (a hello world: 4 ms without,
/// 12 ms with).
package enum HDF5Library {
    nonisolated(unsafe) private static let lock: UnsafeMutablePointer<pthread_mutex_t> = {
        let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        return mutex
    }()

    /// Keeps libhdf5 from registering its exit handler, which flushes every file still
    /// open: after a write failed half way (a full disk), that second flush of the
    /// abandoned file crashed the process at exit. Every file is closed explicitly, so the
    /// handler has nothing to do otherwise. Must run before the library's first call.
    private static let noExitHandler: Void = { _ = H5dont_atexit() }()

    package static func serialized<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        noExitHandler
        // Without this libhdf5 prints its whole error stack to stderr on every failure,
        // including the expected ones (probing creation-order indexes, absent attributes).
        H5Eset_auto2(hid_t(H5E_DEFAULT), nil, nil)
        return try body()
    }

    /// The most specific message libhdf5 left on this thread's error stack, then clears it.
    /// Call only inside `serialized`.
    package static func takeErrorMessage() -> String {
        var buffer = [CChar](repeating: 0, count: 512)
        buffer.withUnsafeMutableBufferPointer { raw in
            if let base = raw.baseAddress { zoo_scan_take_error(base, raw.count) }
        }
        let message = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return message.isEmpty ? "libhdf5 gave no reason" : message
    }

    /// Opens a file read-only; the handle is libhdf5's `hid_t`.
    package static func open(_ path: String) throws -> Int64 {
        try serialized { () throws -> Int64 in
            let id = H5Fopen(path, zoo_scan_acc_rdonly(), hid_t(H5P_DEFAULT))
            if id < 0 { throw HDF5ScanError.unreadable(explainOpenFailure(takeErrorMessage())) }
            return Int64(id)
        }
    }

    package static func close(_ fileID: Int64) {
        serialized { _ = H5Fclose(hid_t(fileID)) }
    }

    package static func explainOpenFailure(_ message: String) -> String {
        if message.contains("signature") {
            return "not an HDF5 file (no HDF5 signature found)"
        }
        if message.contains("truncated") {
            return "truncated HDF5 file (\(message))"
        }
        return "libhdf5 cannot open it: \(message)"
    }

    /// A dataset converted to float32 by libhdf5 (float16, float64, big-endian, chunked or
    /// compressed storage). Called in the sandboxed worker, or in process when the boundary
    /// is off.
    package static func readFloats(_ fileID: Int64, tensor name: String, dataset datasetPath: String,
                                   count: Int) throws -> [Float] {
        try serialized { () throws -> [Float] in
            let dataset = H5Dopen2(hid_t(fileID), datasetPath, hid_t(H5P_DEFAULT))
            guard dataset >= 0 else {
                throw HDF5ScanError.badTensor(tensor: name, reason: "cannot open dataset: \(takeErrorMessage())")
            }
            defer { H5Dclose(dataset) }
            var failure: String?
            let data = [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
                if let base = buffer.baseAddress { adviseHugePages(base, bytes: count * 4) }
                // libhdf5 converts float16/float64/big-endian to native float32 on the way in,
                // and reads straight into the buffer when the stored type already matches.
                let status = H5Dread(dataset, zoo_scan_native_float(), hid_t(H5S_ALL), hid_t(H5S_ALL),
                                     hid_t(H5P_DEFAULT), buffer.baseAddress)
                if status < 0 {
                    failure = takeErrorMessage()
                    buffer.initialize(repeating: 0)
                }
                initialized = count
            }
            if let failure { throw HDF5ScanError.badTensor(tensor: name, reason: "reading the data failed: \(failure)") }
            return data
        }
    }
}

/// Why a scan or read failed, before the caller adds the file's path.
package enum HDF5ScanError: Error, Equatable {
    case unreadable(String)
    case badTensor(tensor: String, reason: String)
}

/// Asks for transparent huge pages on a large buffer about to be filled (fewer page faults
/// for a 400 MB tensor).
package func adviseHugePages(_ pointer: UnsafeMutableRawPointer, bytes count: Int) {
    #if os(Linux)
    guard count >= 4 << 20 else { return }
    let page = 2 << 20
    let start = (Int(bitPattern: pointer) + page - 1) & ~(page - 1)
    let end = (Int(bitPattern: pointer) + count) & ~(page - 1)
    if end > start, let aligned = UnsafeMutableRawPointer(bitPattern: start) {
        _ = madvise(aligned, end - start, MADV_HUGEPAGE)
    }
    #endif
}

/// A byte count in words ("553.4 MB") for error messages.
package func describeByteCount(_ count: Int) -> String {
    if count < 10_000 { return "\(count) bytes" }
    let units = ["kB", "MB", "GB", "TB", "PB", "EB"]
    var value = Double(count) / 1000
    var unit = 0
    while value >= 1000, unit < units.count - 1 { value /= 1000; unit += 1 }
    let tenths = Int((value * 10).rounded())
    return "\(tenths / 10).\(tenths % 10) \(units[unit]) (\(count) bytes)"
}
