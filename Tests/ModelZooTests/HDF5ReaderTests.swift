import XCTest
@testable import ModelZoo
import HDF5Scan

final class HDF5ReaderTests: XCTestCase {
    /// The HDF5 scanner asks for zoo's root attributes by name and links no ModelZoo: its
    /// list must be the writers' list, or a key written to .h5 would not come back.
    func testScannerAsksForEveryZooMetadataKey() {
        XCTAssertEqual(Set(Scanner.rootMetadataKeys), Set(ZooMetadata.allKeys))
    }

    private func fixture(_ name: String) -> String { FormatFixtures.path("hdf5", name) }

    private func open(_ name: String) throws -> HDF5File { try HDF5File(path: fixture(name)) }

    // MARK: Keras 2 legacy layouts

    func testKeras2WeightsOnlyWithFixedLengthStrings() throws {
        let file = try open("keras2_weights_fixed.h5")
        XCTAssertEqual(file.format, .kerasH5)
        XCTAssertEqual(file.kerasLayerNames, ["conv2d", "conv2d_1", "flatten", "dense"])
        XCTAssertEqual(file.kerasWeightNames(layer: "conv2d"), ["conv2d/kernel:0", "conv2d/bias:0"])
        XCTAssertEqual(file.kerasTensorNames(layer: "dense"), ["dense/dense/kernel:0", "dense/dense/bias:0"])
        XCTAssertEqual(file.kerasWeightNames(layer: "flatten"), [])
        XCTAssertEqual(file.kerasVersion, "2.4.0")
        XCTAssertEqual(file.backend, "tensorflow")
        XCTAssertEqual(file.producer, "keras 2.4.0 (tensorflow backend)")
        XCTAssertNil(file.modelConfigJSON)
        XCTAssertEqual(file.tensors.map(\.name), [
            "conv2d/conv2d/kernel:0", "conv2d/conv2d/bias:0", "conv2d_1/conv2d_1/kernel:0",
            "conv2d_1/conv2d_1/bias:0", "dense/dense/kernel:0", "dense/dense/bias:0",
        ])
        XCTAssertEqual(file.tensors.first?.shape, [3, 3, 1, 2])
        XCTAssertEqual(file.tensors.first?.byteCount, 72)
        try FormatFixtures.assertMatches(file, try FormatFixtures.expected("hdf5", "keras2_weights_fixed.h5"))
    }

    func testKeras2WeightsOnlyWithVariableLengthStrings() throws {
        let file = try open("keras2_weights_vlen.h5")
        XCTAssertEqual(file.format, .kerasH5)
        XCTAssertEqual(file.kerasLayerNames, ["conv2d", "conv2d_1", "flatten", "dense"])
        XCTAssertEqual(file.kerasVersion, "2.4.0")
        try FormatFixtures.assertMatches(file, try FormatFixtures.expected("hdf5", "keras2_weights_vlen.h5"))
    }

    func testKeras2AttributesSplitIntoNumberedChunksAreJoined() throws {
        let file = try open("keras2_weights_chunked_attrs.h5")
        XCTAssertEqual(file.kerasLayerNames, ["conv2d", "conv2d_1", "flatten", "dense"])
        try FormatFixtures.assertMatches(file, try FormatFixtures.expected("hdf5", "keras2_weights_chunked_attrs.h5"))
    }

    func testKeras2FullModelKeepsConfigAndLeavesOptimizerOut() throws {
        let file = try open("keras2_full.h5")
        XCTAssertEqual(file.format, .kerasH5)
        XCTAssertEqual(file.kerasLayerNames, ["conv2d", "conv2d_1", "flatten", "dense"])
        XCTAssertTrue(file.modelConfigJSON?.contains("\"small_cnn\"") ?? false)
        XCTAssertEqual(file.tensors.count, 6)
        XCTAssertEqual(file.optimizerTensors.map(\.name), ["optimizer_weights/Adam/iter:0"])
        XCTAssertEqual(file.optimizerTensors.first?.dtype, .int64)
        try FormatFixtures.assertMatches(file, try FormatFixtures.expected("hdf5", "keras2_full.h5"))
    }

    func testKeras3LegacyModelSaveWithVariableLengthAttributes() throws {
        let file = try open("keras3_legacy_full.h5")
        XCTAssertEqual(file.format, .kerasH5)
        XCTAssertEqual(file.kerasLayerNames, ["conv2d", "conv2d_1", "flatten", "dense"])
        XCTAssertEqual(file.kerasWeightNames(layer: "conv2d"), ["sequential/conv2d/kernel", "sequential/conv2d/bias"])
        XCTAssertEqual(file.tensors.first?.name, "conv2d/sequential/conv2d/kernel")
        XCTAssertEqual(file.kerasVersion?.hasPrefix("3."), true)
        XCTAssertNotNil(file.backend)
        let config = try XCTUnwrap(file.modelConfigJSON)
        XCTAssertNotNil(try JSONSerialization.jsonObject(with: Data(config.utf8)) as? [String: Any])
        XCTAssertFalse(file.optimizerTensors.isEmpty)
        XCTAssertFalse(file.tensors.contains { $0.name.contains("adam") })
        try FormatFixtures.assertMatches(file, try FormatFixtures.expected("hdf5", "keras3_legacy_full.h5"))
    }

    // MARK: Keras 3 .weights.h5

    func testKeras3WeightsFile() throws {
        let file = try open("small_cnn.weights.h5")
        XCTAssertEqual(file.format, .kerasWeightsH5)
        XCTAssertEqual(file.kerasLayerNames, ["conv2d", "conv2d_1", "dense", "flatten"])
        XCTAssertEqual(file.kerasTensorNames(layer: "conv2d"), ["layers/conv2d/vars/0", "layers/conv2d/vars/1"])
        XCTAssertEqual(file.kerasWeightNames(layer: "dense"), ["0", "1"])
        XCTAssertEqual(file.kerasTensorNames(layer: "flatten"), [])
        XCTAssertEqual(file.tensors.map(\.name), [
            "layers/conv2d/vars/0", "layers/conv2d/vars/1", "layers/conv2d_1/vars/0", "layers/conv2d_1/vars/1",
            "layers/dense/vars/0", "layers/dense/vars/1",
        ])
        XCTAssertNil(file.producer)
        // Adam's state for 6 variables, plus iteration count and learning rate.
        XCTAssertEqual(file.optimizerTensors.count, 14)
        XCTAssertTrue(file.optimizerTensors.allSatisfy { $0.name.hasPrefix("optimizer/vars/") })
        XCTAssertEqual(file.optimizerTensors.prefix(3).map(\.name), ["optimizer/vars/0", "optimizer/vars/1", "optimizer/vars/2"])
        XCTAssertNoThrow(try file.load("optimizer/vars/13"))
        try FormatFixtures.assertMatches(file, try FormatFixtures.expected("hdf5", "small_cnn.weights.h5"))
    }

    func testKeras3AutoNamesSortByCreationOrder() throws {
        let file = try open("deep12.weights.h5")
        XCTAssertEqual(file.kerasLayerNames.prefix(4), ["conv2d", "conv2d_1", "conv2d_10", "conv2d_11"])
        let created = KerasGrouping.sortedByCreationOrder(file.kerasLayerNames)
        XCTAssertEqual(created, ["conv2d"] + (1...11).map { "conv2d_\($0)" })
        // The script set conv2d_k's kernel to k + 1: creation order is what ties names to values.
        for (k, layer) in created.enumerated() {
            let kernel = try file.load(try XCTUnwrap(file.kerasTensorNames(layer: layer).first))
            XCTAssertEqual(kernel.data, [Float(k + 1)], layer)
        }
        try FormatFixtures.assertMatches(file, try FormatFixtures.expected("hdf5", "deep12.weights.h5"))
    }

    func testCreationOrderSortsNumberSuffixesAsNumbers() {
        XCTAssertEqual(KerasGrouping.sortedByCreationOrder(
            ["batch_normalization", "batch_normalization_10", "batch_normalization_2", "block1_conv1", "dense_1", "dense"]),
            ["batch_normalization", "batch_normalization_2", "batch_normalization_10", "block1_conv1", "dense", "dense_1"])
    }

    // MARK: Plain HDF5

    func testPlainFileListsEveryDatasetAndConvertsFloatTypes() throws {
        let file = try open("plain.h5")
        XCTAssertEqual(file.format, .hdf5)
        XCTAssertEqual(Set(file.tensors.map(\.name)),
                       ["conv1.weight", "conv1.bias", "fc/weight", "fc/bias", "big_endian", "scalar", "steps"])
        XCTAssertEqual(file.kerasLayerNames, [])
        let dtypes = Dictionary(uniqueKeysWithValues: file.tensors.map { ($0.name, $0.dtype) })
        XCTAssertEqual(dtypes["fc/weight"], .float64)
        XCTAssertEqual(dtypes["fc/bias"], .float16)
        XCTAssertEqual(dtypes["steps"], .int32)
        XCTAssertEqual(file.tensors.first { $0.name == "scalar" }?.shape, [])
        var expected = try FormatFixtures.expected("hdf5", "plain.h5")
        expected["steps"] = nil
        try FormatFixtures.assertMatches(file, expected)
        FormatFixtures.assertThrows(try file.load("steps"), containing: ["steps", "int32"])
        FormatFixtures.assertThrows(try file.load("nope"), containing: ["nope", "no such tensor"])
    }

    // MARK: Broken files

    func testMissingEmptyRandomAndTruncatedFilesAreRefusedWithReasons() {
        FormatFixtures.assertThrows(try HDF5File(path: fixture("does-not-exist.h5")), containing: ["no such file"])
        FormatFixtures.assertThrows(try open("empty.h5"), containing: ["empty.h5", "empty file"])
        FormatFixtures.assertThrows(try open("random.h5"), containing: ["random.h5", "not an HDF5 file"])
        FormatFixtures.assertThrows(try open("truncated.h5"), containing: ["truncated.h5", "truncated"])
    }

    func testIntegerAndStringDatasetsAreListedButNotLoaded() throws {
        let file = try open("mixed_types.h5")
        let dtypes = Dictionary(uniqueKeysWithValues: file.tensors.map { ($0.name, $0.dtype) })
        XCTAssertEqual(dtypes, ["counts": .int32, "labels": .string, "ok": .float32])
        XCTAssertEqual(try file.load("ok").data, [0.5, 1.5])
        FormatFixtures.assertThrows(try file.load("counts"), containing: ["counts", "int32"])
        FormatFixtures.assertThrows(try file.load("labels"), containing: ["labels", "string"])
    }

    func testHugeDeclaredDatasetsAreRefusedBeforeAllocating() throws {
        let file = try open("huge_dims.h5")
        let huge = try XCTUnwrap(file.tensors.first { $0.name == "huge" })
        XCTAssertEqual(huge.shape, [1 << 20, 1 << 20])
        XCTAssertEqual(huge.byteCount, 1 << 42)
        FormatFixtures.assertThrows(try file.load("huge"), containing: ["huge", "limit"])
        FormatFixtures.assertThrows(try file.load("contiguous_unwritten"), containing: ["contiguous_unwritten", "the file is only"])
        XCTAssertEqual(try file.load("small").data, [7])
    }

    // MARK: Opening by content

    func testOpenerPicksTheReaderByContent() throws {
        XCTAssertEqual(try WeightFileOpener.open(path: fixture("small_cnn.weights.h5")).format, .kerasWeightsH5)
        XCTAssertEqual(try WeightFileOpener.open(path: fixture("plain.h5")).format, .hdf5)
        XCTAssertEqual(try WeightFileOpener.open(path: FormatFixtures.path("safetensors", "model.safetensors")).format, .safetensors)
        XCTAssertEqual(try WeightFileOpener.open(path: FormatFixtures.path("npy", "vec3.npy")).format, .npy)
        FormatFixtures.assertThrows(try WeightFileOpener.open(path: fixture("random.h5")),
                                    containing: ["not an HDF5, ONNX, safetensors, npy, PyTorch .pth or Caffe file (first bytes: "])
        FormatFixtures.assertThrows(try WeightFileOpener.open(path: fixture("empty.h5")), containing: ["empty file"])
        FormatFixtures.assertThrows(try WeightFileOpener.open(path: fixture("nothing-here")), containing: ["no such file"])
    }

    func testOpenerFindsHDF5AfterAUserBlock() throws {
        let source = try Data(contentsOf: URL(fileURLWithPath: fixture("plain.h5")))
        XCTAssertEqual(Array(source.prefix(8)), WeightFileOpener.hdf5Signature)
        // h5py writes user blocks by reserving space; here a copy with a 512-byte block is made
        // by hand only when libhdf5 accepts it, so the opener's scan is what is tested.
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("zoo-hdf5-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let shifted = directory.appendingPathComponent("shifted.bin")
        try (Data(count: 512) + source).write(to: shifted)
        let reader = try ReadOnlyFile(path: shifted.path)
        XCTAssertTrue(try WeightFileOpener.hasHDF5Signature(reader))
    }
}
