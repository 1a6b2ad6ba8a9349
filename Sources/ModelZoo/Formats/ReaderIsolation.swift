import CHDF5
import Foundation
import HDF5Scan
#if canImport(Glibc)
import Glibc
#endif

/// Which readers parse the user's file in a sandboxed child process instead of in this one.
///
/// Debian's libhdf5 (1.10.8) crashes on crafted files: segmentation faults, an invalid
/// `free`, endless loops, all reachable from a file a few bytes away from a valid Keras
/// file. A crash in a child is an error message; in our process it would take down `zoo`, or
/// a Swift program using the library. So by default libhdf5 only ever sees a user's file in
/// a child: the small `zoo-hdf5-worker` executable (or `zoo` itself, re-run in a worker mode,
/// for what the small one does not serve), with CPU-time and address-space limits, no
/// inherited descriptors, and a seccomp filter that lets it read files and nothing else. The
/// child reports the file's structure and where each dataset's bytes are; the parent reads
/// contiguous float32 data (nearly every Keras weight) straight from the file itself, and asks
/// a child again only for datasets that need libhdf5 to decode (chunked, compressed, float16
/// or float64).
public enum ReaderIsolation {
    /// `ZOO_HDF5_IN_PROCESS=1` turns the boundary off (for debugging libhdf5 itself). These
    /// settings are read when a file is opened; set them once, before opening files.
    nonisolated(unsafe) public static var hdf5InChildProcess: Bool = ProcessInfo.processInfo.environment["ZOO_HDF5_IN_PROCESS"] != "1"
    /// The same boundary for every other reader (ONNX, safetensors, npy, .pth, Caffe):
    /// `ZOO_ISOLATE_ALL_READERS=1`, off by default because those readers are our own Swift
    /// and protobuf-c code, which fuzzing has not crashed. The file is first opened and
    /// every tensor loaded in a sandboxed child; only if that ends well is it read here.
    nonisolated(unsafe) public static var everyReaderInChildProcess: Bool =
        ProcessInfo.processInfo.environment["ZOO_ISOLATE_ALL_READERS"] == "1"
    /// True inside a worker, which must not start workers of its own (its sandbox forbids it).
    nonisolated(unsafe) static var insideWorker = false

    /// CPU seconds a child may spend on one file's structure before the kernel stops it:
    /// scanning a real file takes milliseconds (VGG16's 553 MB Keras file about 30 ms), and
    /// libhdf5's endless loops on crafted files should cost the user seconds, not minutes.
    /// Reading a dataset through libhdf5 gets one more second per 100 MB.
    nonisolated(unsafe) public static var cpuSecondsLimit = 3
    /// Wall-clock seconds the parent waits for a child (plus the same allowance per 100 MB)
    /// before killing it.
    nonisolated(unsafe) public static var wallSecondsLimit = 5.0

    /// The executable that serves HDF5 scans and reads (`scan`, `read`): `ZOO_WORKER` when
    /// set; otherwise `zoo-hdf5-worker` beside this process's executable (where `swift
    /// build` puts it beside `zoo`, the tests and the examples); otherwise `zoo` as for
    /// `fullWorkerExecutable`, which serves every mode but takes about 15 ms longer to
    /// start (Foundation, oneDNN and 60 shared libraries).
    public static var workerExecutable: String? { workers.lean }

    /// The executable for the modes only `zoo` serves (a `.keras` archive's weights entry,
    /// the other readers' preflight): `ZOO_WORKER` when it names a `zoo`; this process when
    /// it is `zoo`; otherwise a `zoo` beside this process's executable or beside the small
    /// worker.
    public static var fullWorkerExecutable: String? { workers.full }

    static let leanWorkerName = "zoo-hdf5-worker"

    private static let workers: (lean: String?, full: String?) = {
        let fileManager = FileManager.default
        func sibling(of path: String, _ name: String) -> String? {
            let candidate = URL(fileURLWithPath: path).deletingLastPathComponent().appendingPathComponent(name).path
            return fileManager.isExecutableFile(atPath: candidate) ? candidate : nil
        }
        let me = try? fileManager.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        let meIsZoo = me.map { URL(fileURLWithPath: $0).lastPathComponent == "zoo" } ?? false
        var full = meIsZoo ? me : me.flatMap { sibling(of: $0, "zoo") }
        var lean = me.flatMap { sibling(of: $0, leanWorkerName) }
        if let set = ProcessInfo.processInfo.environment["ZOO_WORKER"], !set.isEmpty {
            lean = set
            if URL(fileURLWithPath: set).lastPathComponent == leanWorkerName {
                full = full ?? sibling(of: set, "zoo")
            } else {
                full = set
            }
        }
        return (lean ?? full, full)
    }()
}

/// The parent's side of the process boundary: runs a sandboxed worker (for HDF5 scans and
/// reads, and for the preflight of every other reader under ZOO_ISOLATE_ALL_READERS) and
/// turns what it reports, or how it died, into results and errors.
enum SandboxedWorker {
    static let scanReplyLimit = 256 << 20

    /// `archiveSpace` non-nil: `path` is a `.keras` archive whose worker needs that much
    /// more address space (the mapped zip, an inflated entry).
    static func scan(path: String, archiveSpace: UInt64? = nil) throws -> HDF5Contents {
        let reply = try runWorker([archiveSpace == nil ? "scan" : "scan-keras", path], path: path, tensor: nil,
                                  payloadLimit: scanReplyLimit, addressSpace: (2 << 30) + (archiveSpace ?? 0))
        guard case .contents(let contents) = reply else {
            throw ZooError.unreadableFile(path: path, reason: "the HDF5 worker answered out of turn")
        }
        return contents
    }

    /// Opens the file and loads every tensor in a sandboxed child: a crash, a hang or an
    /// exhausted limit there becomes an error here, before this process parses the file.
    static func preflight(path: String, fileSize: Int) throws {
        let space = UInt64(max(2 << 30, min(3 * fileSize + (1 << 30), 24 << 30)))
        let reply = try runWorker(["preflight", path], path: path, tensor: nil, payloadLimit: 1 << 20,
                                  addressSpace: space, floats: 0, workBytes: fileSize, library: "the file's reader")
        guard case .done = reply else {
            throw ZooError.unreadableFile(path: path, reason: "the reader worker answered out of turn")
        }
    }

    static func read(path: String, tensor: String, dataset: String, count: Int, archiveSpace: UInt64? = nil) throws -> [Float] {
        // The child holds the float32 result plus libhdf5's chunk cache and the stored bytes.
        let space = UInt64(3 * count * 4 + (1 << 31)) + (archiveSpace ?? 0)
        let reply = try runWorker([archiveSpace == nil ? "read" : "read-keras-all", path, dataset, String(count)], path: path, tensor: tensor,
                                  payloadLimit: count * 4, addressSpace: space, floats: count)
        guard case .floats(let values) = reply, values.count == count else {
            throw ZooError.badTensor(path: path, tensor: tensor, reason: "the HDF5 worker sent a short reply")
        }
        return values
    }

    /// Several datasets of a `.keras` archive in one worker run, so a deflated weights entry
    /// is inflated once for all of them rather than once per tensor.
    static func readArchive(path: String, datasets: [(tensor: String, dataset: String, count: Int)],
                            archiveSpace: UInt64) throws -> [String: [Float]] {
        var total = 0
        for item in datasets {
            let (sum, overflow) = total.addingReportingOverflow(item.count)
            guard !overflow, sum <= HDF5File.maximumLoadBytes / 4 else {
                throw ZooError.unreadableFile(path: path, reason: "the archive's tensors add up to more than "
                    + "\(describeBytes(HDF5File.maximumLoadBytes)) as float32")
            }
            total = sum
        }
        let space = UInt64(total) * 8 + (1 << 31) + archiveSpace
        let arguments = ["read-keras-all", path] + datasets.flatMap { [$0.dataset, String($0.count)] }
        let reply = try runWorker(arguments, path: path, tensor: nil, payloadLimit: total * 4, addressSpace: space, floats: total)
        guard case .floats(let values) = reply, values.count == total else {
            throw ZooError.unreadableFile(path: path, reason: "the HDF5 worker sent a short reply")
        }
        var out: [String: [Float]] = [:]
        var at = 0
        for item in datasets {
            out[item.tensor] = Array(values[at..<(at + item.count)])
            at += item.count
        }
        return out
    }

    enum Reply {
        case contents(HDF5Contents)
        case floats([Float])
        case done
    }

    private static func runWorker(_ arguments: [String], path: String, tensor: String?, payloadLimit: Int,
                                  addressSpace: UInt64, floats: Int = 0, workBytes: Int? = nil,
                                  library: String = "the HDF5 library") throws -> Reply {
        let lean = HDF5WorkerModes.modes.contains(arguments[0])
        guard let worker = lean ? ReaderIsolation.workerExecutable : ReaderIsolation.fullWorkerExecutable else {
            throw ZooError.unreadableFile(
                path: path, reason: "files are read by a sandboxed worker and none was found beside this program: build "
                    + (lean ? "it (swift build --product zoo-hdf5-worker)" : "zoo (swift build --product zoo)")
                    + " or set ZOO_WORKER to its path (ZOO_HDF5_IN_PROCESS=1 reads HDF5 in this process)")
        }
        var fds: [Int32] = [0, 0]
        // Close-on-exec, so only the dup2 in the spawn actions reaches the child.
        guard pipe(&fds) == 0, fcntl(fds[0], F_SETFD, FD_CLOEXEC) == 0, fcntl(fds[1], F_SETFD, FD_CLOEXEC) == 0 else {
            throw ZooError.unreadableFile(path: path, reason: "cannot create a pipe: \(String(cString: strerror(errno)))")
        }
        let (readEnd, writeEnd) = (fds[0], fds[1])
        defer { close(readEnd) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, writeEnd, 1)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        let allowance = Double(workBytes ?? floats * 4) / 100e6
        let cpuSeconds = ReaderIsolation.cpuSecondsLimit + Int(allowance.rounded(.up))
        let argv = ([worker, HDF5WorkerModes.commandLineFlag, String(cpuSeconds), String(addressSpace)]
                    + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, worker, &actions, nil, argv, environ)
        close(writeEnd)
        guard spawned == 0 else {
            throw ZooError.unreadableFile(path: path, reason: "cannot start the HDF5 worker \(worker): \(String(cString: strerror(spawned)))")
        }
        let deadline = Date().addingTimeInterval(ReaderIsolation.wallSecondsLimit + allowance)
        var reply: Result<Reply, Error>
        var timedOut = false
        do {
            reply = .success(try receive(readEnd, path: path, tensor: tensor, payloadLimit: payloadLimit,
                                         floats: floats, deadline: deadline))
        } catch is WorkerTimeout {
            timedOut = true
            kill(pid, SIGKILL)
            reply = .failure(WorkerTimeout())
        } catch {
            reply = .failure(error)
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        if timedOut {
            throw ZooError.unreadableFile(path: path, reason: "\(library) did not finish reading this file within "
                                          + "\(Int(ReaderIsolation.wallSecondsLimit)) s (corrupt or crafted); stopped")
        }
        let signal = status & 0x7f
        if signal == SIGXCPU || signal == SIGKILL {
            // The kernel sends SIGXCPU at the soft CPU limit and SIGKILL at the hard one.
            throw ZooError.unreadableFile(path: path, reason: "\(library) spent over \(cpuSeconds) s "
                                          + "of CPU on this file (corrupt or crafted); stopped")
        }
        if signal != 0 {
            throw ZooError.unreadableFile(path: path, reason: "\(library) failed on this file (corrupt or crafted): \(signalName(signal))")
        }
        let exitCode = (status >> 8) & 0xff
        if case .failure = reply, exitCode == 64 {
            throw ZooError.unreadableFile(path: path, reason: "the worker \(worker) does not serve '\(arguments[0])' requests: "
                                          + "set ZOO_WORKER to a zoo or zoo-hdf5-worker built from the same sources")
        }
        if case .failure = reply, exitCode != 0 {
            // Out of address space, the Swift runtime stops the child with a trap or an exit code.
            throw ZooError.unreadableFile(path: path, reason: "the HDF5 worker stopped with status \(exitCode) on this file (corrupt or crafted)")
        }
        return try reply.get()
    }

    struct WorkerTimeout: Error {}

    /// Reads one framed reply (tag, 8-byte length, payload) before the deadline.
    private static func receive(_ fd: Int32, path: String, tensor: String?, payloadLimit: Int, floats: Int,
                                deadline: Date) throws -> Reply {
        var header = [UInt8](repeating: 0, count: 9)
        let got = try header.withUnsafeMutableBytes { try readFully(fd, $0.baseAddress, 9, deadline: deadline) }
        guard got == 9 else {
            // The child died or exited before answering; the caller reads its status.
            throw ZooError.unreadableFile(path: path, reason: "the HDF5 worker ended without an answer")
        }
        let length = header[1..<9].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        let limit = header[0] == UInt8(ascii: "D") ? payloadLimit : max(payloadLimit, 1 << 20)
        guard length <= UInt64(limit) else {
            throw ZooError.unreadableFile(path: path, reason: "the HDF5 worker sent \(length) bytes, over the \(limit) expected")
        }
        let count = Int(length)
        switch header[0] {
        case UInt8(ascii: "D"):
            guard count == floats * 4 else {
                throw ZooError.unreadableFile(path: path, reason: "the HDF5 worker sent \(count) bytes for \(floats) values")
            }
            var complete = 0
            let values = try [Float](unsafeUninitializedCapacity: floats) { buffer, initialized in
                buffer.initialize(repeating: 0)
                initialized = floats
                if let base = buffer.baseAddress {
                    adviseHugePages(base, count: count)
                    complete = try readFully(fd, base, count, deadline: deadline)
                }
            }
            guard complete == count else { throw ZooError.unreadableFile(path: path, reason: "the HDF5 worker ended mid-reply") }
            return .floats(values)
        case UInt8(ascii: "K"):
            return .done
        case UInt8(ascii: "S"), UInt8(ascii: "E"):
            var payload = [UInt8](repeating: 0, count: count)
            let complete = try payload.withUnsafeMutableBytes { try readFully(fd, $0.baseAddress, count, deadline: deadline) }
            guard complete == count else { throw ZooError.unreadableFile(path: path, reason: "the HDF5 worker ended mid-reply") }
            do {
                if header[0] == UInt8(ascii: "E") {
                    let failure = try WorkerWire.decodeFailure(payload)
                    if let name = failure.tensor { throw ZooError.badTensor(path: path, tensor: name, reason: failure.reason) }
                    throw ZooError.unreadableFile(path: path, reason: failure.reason)
                }
                return .contents(try WorkerWire.decodeContents(payload))
            } catch let error as WorkerWire.Malformed {
                throw ZooError.unreadableFile(path: path, reason: "the HDF5 worker's report does not decode: \(error)")
            }
        default:
            throw ZooError.unreadableFile(path: path, reason: "the HDF5 worker answered with an unknown reply")
        }
    }

    /// Reads up to `count` bytes, waiting at most until `deadline`; fewer at end of file.
    private static func readFully(_ fd: Int32, _ base: UnsafeMutableRawPointer?, _ count: Int, deadline: Date) throws -> Int {
        guard let base else { return 0 }
        var done = 0
        while done < count {
            let remaining = deadline.timeIntervalSinceNow
            guard remaining > 0 else { throw WorkerTimeout() }
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&poller, 1, Int32(min(remaining * 1000, 60_000)) + 1)
            if ready < 0 { if errno == EINTR { continue }; break }
            if ready == 0 { continue }
            let got = Glibc.read(fd, base + done, min(count - done, 1 << 24))
            if got < 0 { if errno == EINTR { continue }; break }
            if got == 0 { break }
            done += got
        }
        return done
    }

    static func signalName(_ signal: Int32) -> String {
        switch signal {
        case SIGSEGV: return "SIGSEGV"
        case SIGABRT: return "SIGABRT"
        case SIGBUS: return "SIGBUS"
        case SIGILL: return "SIGILL"
        case SIGFPE: return "SIGFPE"
        case SIGTRAP: return "SIGTRAP"
        case SIGKILL: return "SIGKILL"
        case SIGSYS: return "SIGSYS"
        default: return "signal \(signal)"
        }
    }
}

/// `zoo`'s side of the boundary: `zoo --zoo-hdf5-worker CPU_SECONDS ADDRESS_SPACE MODE ...`
/// serves the small worker's modes (`HDF5WorkerModes`: scan, read, probe) and those that
/// need the whole library: `scan-keras PATH`, `read-keras PATH DATASET COUNT` and
/// `read-keras-all PATH (DATASET COUNT)...` on a `.keras` archive's weights entry, and
/// `preflight PATH` (open the file with its reader and load every tensor). Enters the
/// sandbox before it opens the file, answers once on standard output, and exits.
public enum HDF5Worker {
    public static let commandLineFlag = HDF5WorkerModes.commandLineFlag

    public static func run(_ arguments: [String]) -> Int32 {
        guard let request = HDF5WorkerModes.enterSandbox(arguments) else { return 70 }
        if HDF5WorkerModes.modes.contains(request[0]) { return HDF5WorkerModes.serve(request) }
        guard request.count >= 2 else { return 64 }
        let path = request[1]
        do {
            switch request[0] {
            case "scan-keras" where request.count == 2:
                let image = try KerasArchive.Image(archive: try ReadOnlyFile(path: path))
                var contents = try HDF5File.scanInProcess(image.fileID, path: path, fileSize: image.size)
                contents.place(inArchiveAt: image.offsetInArchive)
                WorkerWire.send("S", WorkerWire.encode(contents))
            case "read-keras-all" where request.count >= 2 && request.count % 2 == 0:
                let image = try KerasArchive.Image(archive: try ReadOnlyFile(path: path))
                var values: [Float] = []
                var index = 2
                while index + 1 < request.count {
                    guard let count = Int(request[index + 1]), count > 0 else { return 64 }
                    let dataset = request[index]
                    values += try HDF5File.withPath(path) {
                        try HDF5Library.readFloats(Int64(image.fileID), tensor: dataset, dataset: dataset, count: count)
                    }
                    index += 2
                }
                values.withUnsafeBytes { WorkerWire.send("D", $0) }
            case "preflight" where request.count == 2:
                // Everything a command does to a file before trusting it, inside the sandbox.
                ReaderIsolation.insideWorker = true
                ReaderIsolation.hdf5InChildProcess = false
                let file = try WeightFileOpener.open(path: path)
                for record in file.tensors where record.dtype.convertsToFloat32 { _ = try file.load(record.name) }
                WorkerWire.send("K", [])
            default:
                return 64
            }
        } catch let ZooError.badTensor(_, tensor, reason) {
            WorkerWire.sendFailure(tensor: tensor, reason: reason)
        } catch let ZooError.unreadableFile(_, reason) {
            WorkerWire.sendFailure(tensor: nil, reason: reason)
        } catch {
            WorkerWire.sendFailure(tensor: nil, reason: "\(error)")
        }
        return 0
    }
}
