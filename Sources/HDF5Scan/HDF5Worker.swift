import CSandbox
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The child's side of the HDF5 boundary, for the modes the small `zoo-hdf5-worker`
/// executable serves: `WORKER --zoo-hdf5-worker CPU_SECONDS ADDRESS_SPACE MODE ...` with
/// `scan PATH`, `read PATH DATASET COUNT` or `probe PATH`. `zoo` itself, run with the same
/// flag, serves these and the modes that need the whole library (a `.keras` archive's
/// weights entry, the other readers' preflight). Enters the sandbox before it opens the
/// file, answers once on standard output (`WorkerWire`), and exits.
package enum HDF5WorkerModes {
    package static let commandLineFlag = "--zoo-hdf5-worker"
    /// The modes `serve` knows; a parent sends any other to `zoo`.
    package static let modes: Set<String> = ["scan", "read", "probe"]

    /// Applies the limits and the seccomp filter named by the first two arguments; returns
    /// the rest (the mode and its arguments), or nil when they are malformed or the sandbox
    /// could not be entered.
    package static func enterSandbox(_ arguments: [String]) -> [String]? {
        guard arguments.count >= 3, let cpu = UInt(arguments[0]), let space = UInt64(arguments[1]) else { return nil }
        if zoo_sandbox_enter(cpu, space) < 0 { return nil }
        return Array(arguments.dropFirst(2))
    }

    /// Serves one of `modes` (`request` is the mode and its arguments); the exit status.
    package static func serve(_ request: [String]) -> Int32 {
        guard request.count >= 2 else { return 64 }
        let path = request[1]
        do {
            switch request[0] {
            case "scan" where request.count == 2:
                var info = stat()
                guard stat(path, &info) == 0 else { throw HDF5ScanError.unreadable("cannot stat the file") }
                let id = try HDF5Library.open(path)
                let contents = try HDF5Library.serialized { try Scanner(fileID: id).scan(fileSize: Int(info.st_size)) }
                WorkerWire.send("S", WorkerWire.encode(contents))
            case "read" where request.count == 4:
                guard let count = Int(request[3]), count > 0 else { return 64 }
                let id = try HDF5Library.open(path)
                let values = try HDF5Library.readFloats(id, tensor: request[2], dataset: request[2], count: count)
                values.withUnsafeBytes { WorkerWire.send("D", $0) }
            case "probe" where request.count == 2:
                WorkerWire.send("P", Array(probe(path).utf8))
            default:
                return 64
            }
        } catch let HDF5ScanError.badTensor(tensor, reason) {
            WorkerWire.sendFailure(tensor: tensor, reason: reason)
        } catch let HDF5ScanError.unreadable(reason) {
            WorkerWire.sendFailure(tensor: nil, reason: reason)
        } catch {
            WorkerWire.sendFailure(tensor: nil, reason: "\(error)")
        }
        return 0
    }

    /// What the sandbox lets through, for the tests: errno of each forbidden call, as JSON.
    static func probe(_ path: String) -> String {
        let file = open("/tmp/zoo-sandbox-probe-\(getpid())", O_WRONLY | O_CREAT, 0o600)
        let writeErrno = file < 0 ? errno : 0
        #if canImport(Glibc)
        let socketFD = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
        let socketFD = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        let socketErrno = socketFD < 0 ? errno : 0
        let argv: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/true"), nil]
        execv("/bin/true", argv)
        let execErrno = errno
        let readable = open(path, O_RDONLY)
        let readErrno = readable < 0 ? errno : 0
        return "{\"write\": \(writeErrno), \"socket\": \(socketErrno), \"exec\": \(execErrno), \"read\": \(readErrno)}"
    }
}
