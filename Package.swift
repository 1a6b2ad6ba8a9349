// swift-tools-version:6.0
import PackageDescription

// System libraries come from Debian packages (see Tools/install-deps.sh); each is wrapped
// as a system-library target so the Swift code imports a module, never a raw header path.
let package = Package(
    name: "ModelZoo",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "ModelZoo", targets: ["ModelZoo"]),
        .executable(name: "zoo", targets: ["zoo"]),
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
        .target(name: "ModelZoo", dependencies: ["CHDF5", "CProtobufC", "CONNX", "CCaffe", "CDNNL", "CTurboJPEG", "CPNG", "CSandbox", "CZlibCRC"]),
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
