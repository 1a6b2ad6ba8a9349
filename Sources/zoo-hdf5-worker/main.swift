import HDF5Scan
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// The sandboxed HDF5 worker on its own: libhdf5 (linked statically where the static
// library exists), the scanner and the sandbox, no Foundation, no oneDNN. It starts in
// about 5 ms where `zoo` takes about 20, and that start is most of what the process
// boundary costs per file. Started by the library with the same arguments as
// `zoo --zoo-hdf5-worker ...`; modes it does not serve exit 64 before touching the file.
let arguments = CommandLine.arguments
guard arguments.count > 1, arguments[1] == HDF5WorkerModes.commandLineFlag,
      let request = HDF5WorkerModes.enterSandbox(Array(arguments.dropFirst(2))),
      let mode = request.first, HDF5WorkerModes.modes.contains(mode) else {
    let usage = "zoo-hdf5-worker: started by zoo's library, not by hand "
        + "(\(HDF5WorkerModes.commandLineFlag) CPU_SECONDS ADDRESS_SPACE scan|read|probe PATH ...)\n"
    _ = usage.utf8CString.withUnsafeBufferPointer { write(2, $0.baseAddress, $0.count - 1) }
    exit(64)
}
exit(HDF5WorkerModes.serve(request))
