// swift-tools-version:6.0
import Foundation
import PackageDescription

// The small HDF5 worker links libhdf5 statically when the static library is installed
// (Debian's libhdf5-dev ships it): the shared libhdf5 drags in libcurl, GnuTLS and Kerberos
// for its S3 driver, about 8 ms of loading on every start; the static one brings only the
// objects the scanner calls. Elsewhere the worker links the shared library. The Swift
// runtime is linked statically too (its eight shared libraries cost about 7 ms per start).
let staticHDF5 = ["/usr/lib/x86_64-linux-gnu/hdf5/serial", "/usr/lib/aarch64-linux-gnu/hdf5/serial", "/usr/local/lib", "/opt/homebrew/lib"]
    .first { FileManager.default.fileExists(atPath: $0 + "/libhdf5.a") }
let workerHDF5: [LinkerSetting] = (staticHDF5.map {
    [.unsafeFlags(["-Xlinker", "\($0)/libhdf5.a"]), .linkedLibrary("sz"), .linkedLibrary("z"), .linkedLibrary("m"), .linkedLibrary("dl")]
} ?? [.unsafeFlags(["-L/usr/lib/x86_64-linux-gnu/hdf5/serial"]), .linkedLibrary("hdf5")])
    + [.unsafeFlags(["-static-stdlib"], .when(platforms: [.linux]))]

// System libraries come from Debian packages (see Tools/install-deps.sh); each is wrapped
// as a system-library target so the Swift code imports a module, never a raw header path.
let package = Package(
    name: "ModelZoo",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "ModelZoo", targets: ["ModelZoo"]),
        .executable(name: "zoo", targets: ["zoo"]),
        // The sandboxed HDF5 worker the library starts for every HDF5 file it reads (found
        // beside the running executable, or through ZOO_WORKER).
        .executable(name: "zoo-hdf5-worker", targets: ["zoo-hdf5-worker"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // Tests only: an independent zip reader that checks the archives PthWriter writes
        // (CRCs, sizes, names). The library reads zips itself: ZIPFoundation 0.9.20 keeps an
        // entry's data offset internal, and .pth tensors are read in place at that offset.
        .package(url: "https://github.com/weichsel/ZIPFoundation", from: "0.9.20"),
        // Documentation only: `swift package generate-documentation --target ModelZoo` builds the
        // DocC catalogue in Sources/ModelZoo/ModelZoo.docc. Nothing links against it.
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
    ],
    targets: [
        .systemLibrary(name: "CHDF5", pkgConfig: "hdf5",
                       providers: [.apt(["libhdf5-dev"])]),
        .systemLibrary(name: "CProtobufC", pkgConfig: "libprotobuf-c",
                       providers: [.apt(["libprotobuf-c-dev"])]),
        // oneDNN ships no pkg-config file: the module map links `dnnl` directly.
        .systemLibrary(name: "CDNNL", providers: [.apt(["libdnnl-dev"])]),
        .systemLibrary(name: "CTurboJPEG", pkgConfig: "libturbojpeg",
                       providers: [.apt(["libturbojpeg0-dev"])]),
        .systemLibrary(name: "CPNG", pkgConfig: "libpng",
                       providers: [.apt(["libpng-dev"])]),
        // zlib: crc32 for the zip entries of written .pth files (several GB/s) and inflate for
        // deflated pickles. Named apart from ZIPFoundation's own CZlib module.
        .systemLibrary(name: "CZlibCRC", pkgConfig: "zlib",
                       providers: [.apt(["zlib1g-dev"])]),
        // The ONNX messages, compiled by protoc-c from Proto/onnx.proto; regenerate with
        // Tools/gen-onnx-proto.sh and commit the result.
        .target(name: "CONNX", dependencies: ["CProtobufC"]),
        // The Caffe NetParameter messages, compiled by protoc-c from Proto/caffe.proto;
        // regenerate with Tools/gen-caffe-proto.sh and commit the result.
        .target(name: "CCaffe", dependencies: ["CProtobufC"]),
        // seccomp and resource limits for the child processes that parse untrusted files.
        .target(name: "CSandbox"),
        // libhdf5 wrappers for the scanner, compiled C with no link directive of their own.
        .target(name: "CHDF5Scan"),
        // The HDF5 scanner and the worker's side of the boundary, without Foundation: shared
        // by the library and the small worker executable.
        .target(name: "HDF5Scan", dependencies: ["CHDF5Scan", "CSandbox"]),
        .executableTarget(name: "zoo-hdf5-worker", dependencies: ["HDF5Scan"], linkerSettings: workerHDF5),
        .target(name: "ModelZoo", dependencies: ["CHDF5", "HDF5Scan", "CProtobufC", "CONNX", "CCaffe", "CDNNL", "CTurboJPEG", "CPNG", "CSandbox", "CZlibCRC"]),
        .executableTarget(
            name: "zoo",
            dependencies: [
                "ModelZoo",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        // The README's library example, run by the tests.
        .executableTarget(name: "zoo-example", dependencies: ["ModelZoo"], path: "Examples/FiveLines"),
        .testTarget(name: "ModelZooTests", dependencies: [
            "ModelZoo", "zoo", "zoo-example", .product(name: "ZIPFoundation", package: "ZIPFoundation"),
        ]),
    ]
)
