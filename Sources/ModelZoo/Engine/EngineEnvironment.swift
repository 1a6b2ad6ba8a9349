import Foundation

/// OpenMP settings the engine needs, and whether the process must restart to get them.
///
/// Debian's oneDNN runs on OpenMP (libgomp). libgomp reads `OMP_WAIT_POLICY` (and the initial
/// `OMP_NUM_THREADS`) once, when the library loads, before any Swift code runs: setting them
/// with `setenv` inside the process is too late. With the default passive waiting, worker
/// threads sleep between the many short parallel regions of a forward pass and two threads
/// barely beat one; with `OMP_WAIT_POLICY=active` they spin and oneDNN convolutions reach
/// 90% of peak. So the `zoo` command re-executes itself once with these variables set when
/// `needsReexec` says so (the marker variable stops a second restart). The thread count
/// itself can change later: `Network` calls `omp_set_num_threads` before each forward pass.
public enum EngineEnvironment {
    /// Set in the re-executed process so it never restarts twice.
    public static let reexecMarker = "ZOO_OMP_REEXEC"

    /// Worker threads to use when the caller gives none: `OMP_NUM_THREADS` if set and
    /// valid, else every core.
    public static func defaultThreads(environment: [String: String] = ProcessInfo.processInfo.environment) -> Int {
        if let value = environment["OMP_NUM_THREADS"]?.split(separator: ",").first,
           let count = Int(value.trimmingCharacters(in: .whitespaces)), count >= 1 {
            return count
        }
        return max(1, ProcessInfo.processInfo.activeProcessorCount)
    }

    /// The variables the engine wants present at library load.
    public static func requiredVariables(threads: Int?,
                                         environment: [String: String] = ProcessInfo.processInfo.environment)
        -> [String: String] {
        let count = threads ?? defaultThreads(environment: environment)
        return [
            "OMP_NUM_THREADS": String(max(1, count)),
            "OMP_WAIT_POLICY": "active",
            reexecMarker: "1",
        ]
    }

    /// True when the current process was started without `OMP_WAIT_POLICY` (and has not been
    /// re-executed already), so a launcher should `execve` itself with
    /// `environment.merging(requiredVariables(...)) { $1 }`. A user who set the policy
    /// explicitly is respected. The thread count alone never needs a restart.
    public static func needsReexec(environment: [String: String] = ProcessInfo.processInfo.environment) -> Bool {
        environment[reexecMarker] == nil && environment["OMP_WAIT_POLICY"] == nil
    }
}

/// Calls into the OpenMP runtime oneDNN was linked against, looked up at run time so that
/// the package does not link libgomp itself (and works with a oneDNN built on another
/// threading runtime, where these calls are simply skipped).
enum OpenMPRuntime {
    private typealias SetThreads = @convention(c) (Int32) -> Void
    private typealias GetThreads = @convention(c) () -> Int32

    private static func symbol(_ name: String) -> UnsafeMutableRawPointer? {
        guard let handle = dlopen(nil, RTLD_NOW) else { return nil }
        return dlsym(handle, name)
    }

    static func setThreads(_ count: Int) {
        guard let pointer = symbol("omp_set_num_threads") else { return }
        unsafeBitCast(pointer, to: SetThreads.self)(Int32(clamping: count))
    }

    static func maxThreads() -> Int? {
        guard let pointer = symbol("omp_get_max_threads") else { return nil }
        return Int(unsafeBitCast(pointer, to: GetThreads.self)())
    }
}
