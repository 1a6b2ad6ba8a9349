import Foundation
import XCTest
import ZIPFoundation
@testable import ModelZoo

/// Keras files beyond `.h5`/`.weights.h5` (Tools/make_keras_fixtures.py): Keras 3 `.keras`
/// archives, Keras 1's `_W_1:0`/`_b_1:0` layout that keras.applications' VGG downloads still
/// use, and include_top=False files. Expected outputs were computed by Keras itself.
final class KerasFormatsTests: XCTestCase {
    private func fixture(_ name: String) -> String { CLI.fixture("keras/" + name) }
    private var scratch: URL!

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("zoo-keras-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDown() {
        try? FileManager.default.removeItem(at: scratch)
    }

    private func maxDifference(_ a: Tensor, _ b: Tensor) -> Float {
        zip(a.data, b.data).map { abs($0 - $1) }.max() ?? .infinity
    }

    /// `zoo run` on `weights` with the LeNet input batch.
    private func run(_ weights: String, line: UInt = #line) throws -> (Tensor, String) {
        let out = scratch.appendingPathComponent(UUID().uuidString + ".npy").path
        let result = try CLI.run(["run", "--weights", weights, "--input", CLI.fixture("lenet/input_batch8.npy"), "--output", out])
        XCTAssertEqual(result.status, 0, result.stderr, line: line)
        return (try NPY.read(path: out), result.stdout)
    }

    // MARK: .keras

    func testKerasArchiveInspectsVerifiesAndRunsLikeKeras() throws {
        let path = fixture("lenet5_digits.keras")
        let inspect = try CLI.run(["inspect", path])
        XCTAssertEqual(inspect.status, 0, inspect.stderr)
        XCTAssertTrue(inspect.stdout.contains("format: keras\n"), inspect.stdout)
        XCTAssertTrue(inspect.stdout.contains("producer: keras 3.15.1"), inspect.stdout)
        XCTAssertTrue(inspect.stdout.contains("layers/conv2d_1/vars/0  5x5x6x16"), inspect.stdout)
        XCTAssertTrue(inspect.stdout.contains("10 tensors, 61,706 values"), inspect.stdout)

        let verify = try CLI.run(["verify", path])
        XCTAssertEqual(verify.status, 0, verify.stdout + verify.stderr)
        XCTAssertTrue(verify.stdout.contains("format: keras (Keras 3 .keras archive (channels-last))"), verify.stdout)
        // config.json is the graph: ReLU and max pooling settle LeNet's form.
        XCTAssertTrue(verify.stdout.contains("architecture: LeNet-5 [lenet5]"), verify.stdout)
        XCTAssertTrue(verify.stdout.contains("confidence: high"), verify.stdout)
        XCTAssertTrue(verify.stdout.contains("verdict: OK"), verify.stdout)

        let (logits, _) = try run(path)
        let keras = try NPY.read(path: fixture("logits_batch8_keras.npy"))
        XCTAssertEqual(logits.shape, [8, 10])
        XCTAssertLessThanOrEqual(maxDifference(logits, keras), 1e-5)
    }

    func testDeflatedArchiveHoldsTheSameTensorsInAndOutOfTheWorker() throws {
        let stored = try WeightFileOpener.open(path: fixture("lenet5_digits.keras"))
        let deflated = try WeightFileOpener.open(path: fixture("lenet5_digits_deflated.keras"))
        XCTAssertEqual(stored.format, .keras)
        XCTAssertEqual(deflated.format, .keras)
        XCTAssertEqual(stored.tensors, deflated.tensors)
        let saved = ReaderIsolation.hdf5InChildProcess
        ReaderIsolation.hdf5InChildProcess = false
        defer { ReaderIsolation.hdf5InChildProcess = saved }
        let storedHere = try WeightFileOpener.open(path: fixture("lenet5_digits.keras"))
        let deflatedHere = try WeightFileOpener.open(path: fixture("lenet5_digits_deflated.keras"))
        for record in stored.tensors {
            let reference = try stored.load(record.name)
            XCTAssertEqual(try deflated.load(record.name), reference, record.name)
            XCTAssertEqual(try storedHere.load(record.name), reference, record.name)
            XCTAssertEqual(try deflatedHere.load(record.name), reference, record.name)
        }
        // A second read of a prefetched tensor asks the worker again.
        XCTAssertEqual(try deflated.load("layers/dense/vars/0"), try stored.load("layers/dense/vars/0"))
        let (logits, _) = try run(fixture("lenet5_digits_deflated.keras"))
        XCTAssertLessThanOrEqual(maxDifference(logits, try NPY.read(path: fixture("logits_batch8_keras.npy"))), 1e-5)
    }

    func testConvertWritesAKerasArchiveThatReadsBack() throws {
        let out = scratch.appendingPathComponent("lenet.keras").path
        let convert = try CLI.run(["convert", CLI.fixture("lenet/lenet5_digits.onnx"), out, "--check"])
        XCTAssertEqual(convert.status, 0, convert.stdout + convert.stderr)
        XCTAssertTrue(convert.stdout.contains("(keras)"), convert.stdout)
        XCTAssertTrue(convert.stdout.contains("check: batch 2"), convert.stdout)

        let archive = try Archive(url: URL(fileURLWithPath: out), accessMode: .read)
        let entries = Array(archive)
        XCTAssertEqual(entries.map(\.path), ["metadata.json", "config.json", "model.weights.h5"])
        XCTAssertTrue(entries.allSatisfy { $0.compressedSize == $0.uncompressedSize })
        let configEntry = try XCTUnwrap(archive["config.json"])
        var configData = Data()
        _ = try archive.extract(configEntry) { configData.append($0) }
        let config = try XCTUnwrap(try JSONSerialization.jsonObject(with: configData) as? [String: Any])
        XCTAssertEqual(config["class_name"] as? String, "Functional")
        let layers = try XCTUnwrap((config["config"] as? [String: Any])?["layers"] as? [[String: Any]])
        XCTAssertEqual(layers.map { $0["class_name"] as? String ?? "" },
                       ["InputLayer", "Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Flatten", "Dense", "Dense", "Dense"])
        XCTAssertEqual(layers.map { $0["name"] as? String ?? "" },
                       ["input_layer", "conv2d", "max_pooling2d", "conv2d_1", "max_pooling2d_1", "flatten",
                        "dense", "dense_1", "dense_2"])

        let verify = try CLI.run(["verify", out])
        XCTAssertEqual(verify.status, 0, verify.stdout + verify.stderr)
        XCTAssertTrue(verify.stdout.contains("confidence: high"), verify.stdout)
        let (logits, _) = try run(out)
        let expected = try NPY.read(path: CLI.fixture("lenet/logits_batch8_onnxruntime.npy"))
        XCTAssertLessThanOrEqual(maxDifference(logits, expected), 1e-5)
    }

    /// The archive zoo writes, loaded by Keras itself with no custom code. Skipped where
    /// Keras is not installed (CI has no Keras).
    func testKerasLoadsTheWrittenArchive() throws {
        let probe = try Python.run(["-c", "import os; os.environ.setdefault('KERAS_BACKEND', 'jax'); import keras"])
        guard probe.status == 0 else { throw XCTSkip("python3 with keras is not available") }
        let out = scratch.appendingPathComponent("lenet.keras").path
        let convert = try CLI.run(["convert", CLI.fixture("lenet/lenet5_digits.onnx"), out])
        XCTAssertEqual(convert.status, 0, convert.stderr)
        let logits = scratch.appendingPathComponent("keras_logits.npy").path
        let script = """
            import os, sys, numpy as np
            os.environ.setdefault("KERAS_BACKEND", "jax")
            import keras
            model = keras.models.load_model(sys.argv[1])
            x = np.load(sys.argv[2]).transpose(0, 2, 3, 1)
            np.save(sys.argv[3], np.asarray(model.predict(x, verbose=0), np.float32))
            """
        let result = try Python.run(["-c", script, out, CLI.fixture("lenet/input_batch8.npy"), logits])
        XCTAssertEqual(result.status, 0, result.stderr)
        let expected = try NPY.read(path: CLI.fixture("lenet/logits_batch8_onnxruntime.npy"))
        XCTAssertLessThanOrEqual(maxDifference(try NPY.read(path: logits), expected), 1e-5)
    }

    func testResidualNetworksRoundTripThroughKerasArchives() throws {
        for (arch, classes) in [("resnet18", "10"), ("resnet50-keras", "7")] {
            let source = scratch.appendingPathComponent(arch + ".safetensors").path
            let archive = scratch.appendingPathComponent(arch + ".keras").path
            XCTAssertEqual(try CLI.run(["init", arch, source, "--classes", classes]).status, 0)
            let convert = try CLI.run(["convert", source, archive, "--check"])
            XCTAssertEqual(convert.status, 0, convert.stdout + convert.stderr)
            XCTAssertTrue(convert.stdout.contains("check: batch 2"), convert.stdout)
            let verify = try CLI.run(["verify", archive])
            XCTAssertEqual(verify.status, 0, verify.stdout + verify.stderr)
            XCTAssertTrue(verify.stdout.contains("[\(arch)]"), verify.stdout)
        }
    }

    func testKerasArchiveTargetRefusesNetworksKerasCannotHold() throws {
        let out = scratch.appendingPathComponent("r.keras").path
        let result = try CLI.run(["init", "resnet50", out, "--classes", "10"])
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(result.stderr.contains("cannot write resnet50"), result.stderr)
        XCTAssertTrue(result.stderr.contains("v1.5"), result.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    }

    func testBadArchivesExitWithStatus2AndAReason() throws {
        // An archive whose weights entry is not HDF5, and one whose deflated entry claims
        // far more than deflate can produce.
        let garbage = scratch.appendingPathComponent("garbage.keras").path
        try AtomicFileWriter.write(to: garbage) { writer in
            var zip = AlignedZipWriter(writer)
            try zip.add("metadata.json", bytes: Array("{}".utf8))
            try zip.add("config.json", bytes: Array("{}".utf8))
            try zip.add("model.weights.h5", bytes: Array(repeating: 0x41, count: 4096))
            try zip.finish()
        }
        let cases: [(String, String)] = [
            (fixture("truncated.keras"), "end-of-central-directory"),
            (fixture("lenet5_no_weights.keras"), "without 'model.weights.h5'"),
            (garbage, "not an HDF5 file"),
        ]
        for (path, reason) in cases {
            for command in ["inspect", "verify"] {
                let result = try CLI.run([command, path])
                XCTAssertEqual(result.status, 2, "\(command) \(path): \(result.stdout) \(result.stderr)")
                XCTAssertTrue(result.stderr.contains(reason), "\(command) \(path): \(result.stderr)")
                XCTAssertTrue(result.stderr.contains(path), result.stderr)
            }
        }
    }

    func testDeflatedEntryDeclaringMoreThanDeflateCanProduceIsRefused() throws {
        let stored = try ReadOnlyFile(path: fixture("lenet5_digits_deflated.keras"))
        var bytes = try stored.bytes(at: 0, count: stored.size)
        let zip = try ZipDirectory(file: stored)
        let entry = try XCTUnwrap(zip.entries.first { $0.name == "model.weights.h5" })
        // Find the central directory record of the weights entry and raise its declared size.
        let name = Array("model.weights.h5".utf8)
        var patched = false
        var i = 0
        while i + 46 + name.count <= bytes.count {
            if bytes[i] == 0x50, bytes[i + 1] == 0x4b, bytes[i + 2] == 0x01, bytes[i + 3] == 0x02,
               Array(bytes[(i + 46)..<(i + 46 + name.count)]) == name {
                let claimed = UInt32(entry.compressedSize * 2000)
                for k in 0..<4 { bytes[i + 24 + k] = UInt8((claimed >> (8 * k)) & 0xff) }
                patched = true
                break
            }
            i += 1
        }
        XCTAssertTrue(patched)
        let path = scratch.appendingPathComponent("liar.keras").path
        FileManager.default.createFile(atPath: path, contents: Data(bytes))
        let result = try CLI.run(["verify", path])
        XCTAssertEqual(result.status, 2, result.stdout + result.stderr)
        XCTAssertTrue(result.stderr.contains("more than deflate can expand to"), result.stderr)
    }

    // MARK: Keras 1 layout and no-top files

    func testKeras1LayoutMapsWAndBByTheirPlaceInTheLayer() throws {
        let path = fixture("lenet5_keras1.h5")
        let verify = try CLI.run(["verify", path])
        XCTAssertEqual(verify.status, 0, verify.stdout + verify.stderr)
        XCTAssertTrue(verify.stdout.contains("parameters: 61,706 (expected 61,706)"), verify.stdout)
        XCTAssertTrue(verify.stdout.contains("verdict: OK"), verify.stdout)
        let (logits, _) = try run(path)
        XCTAssertLessThanOrEqual(maxDifference(logits, try NPY.read(path: fixture("logits_batch8_keras.npy"))), 1e-5)

        XCTAssertEqual(KerasGrouping.keras1Roles(["block1_conv1_W_1", "block1_conv1_b_1"]), [.weight, .bias])
        XCTAssertEqual(KerasGrouping.keras1Roles(["fc1_W", "fc1_b"]), [.weight, .bias])
        XCTAssertEqual(KerasGrouping.keras1Roles(["bn_conv1_gamma_1", "bn_conv1_beta_1", "bn_conv1_running_mean_1",
                                                  "bn_conv1_running_std_1"]), [.weight, .bias, .runningMean, .runningVar])
        XCTAssertNil(KerasGrouping.keras1Roles(["kernel", "bias"]))
        XCTAssertNil(KerasGrouping.keras1Roles(["conv_W_1", "conv_W_2"]))
    }

    func testNoTopFileVerifiesAndRunsToItsLastFeatureMap() throws {
        let path = fixture("lenet5_keras1_notop.h5")
        let verify = try CLI.run(["verify", path])
        XCTAssertEqual(verify.status, 0, verify.stdout + verify.stderr)
        XCTAssertTrue(verify.stdout.contains("no top: the classifier is absent (include_top=False)"), verify.stdout)
        XCTAssertTrue(verify.stdout.contains("classes: none (no top)"), verify.stdout)
        XCTAssertTrue(verify.stdout.contains("parameters: 2,572 (expected 2,572)"), verify.stdout)
        XCTAssertTrue(verify.stdout.contains("verdict: OK"), verify.stdout)
        let json = try CLI.json(try CLI.run(["verify", path, "--format", "json"]))
        XCTAssertEqual(json["no_top"] as? Bool, true)
        XCTAssertTrue(json["classes"] is NSNull)

        let (features, stdout) = try run(path)
        XCTAssertTrue(stdout.contains("no top"), stdout)
        XCTAssertEqual(features.shape, [8, 16, 5, 5])
        let keras = try NPY.read(path: fixture("features_batch8_notop_keras.npy"))
        XCTAssertLessThanOrEqual(maxDifference(features, keras), 1e-5)
    }

    /// A new head on a no-top file, as keras.applications examples put one: global average
    /// pooling, then one dense layer. The result verifies as that network, predicts and
    /// evaluates like any fine-tuned model.
    func testFinetunePutsAPooledHeadOnANoTopFile() throws {
        let out = scratch.appendingPathComponent("digits.safetensors").path
        let result = try CLI.run(["finetune", "--weights", fixture("lenet5_keras1_notop.h5"), "--data",
                                  CLI.fixture("digits59"), "--out", out])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stdout.contains("new 5-class head 'head'"), result.stdout)
        let verify = try CLI.json(try CLI.run(["verify", out, "--format", "json"]))
        XCTAssertEqual(verify["ok"] as? Bool, true)
        XCTAssertEqual(verify["architecture"] as? String, "lenet5")
        XCTAssertEqual(verify["classes"] as? Int, 5)
        XCTAssertTrue((verify["variant"] as? String ?? "").contains("global average pooling + dense"), "\(verify)")
        let evaluation = try CLI.json(try CLI.run(["evaluate", "--weights", out, "--data", CLI.fixture("digits59"), "--format", "json"]))
        // 16 pooled features of the 0-4 backbone separate the new digits far above chance (20%).
        XCTAssertGreaterThan(evaluation["accuracy"] as? Double ?? 0, 0.7, "\(evaluation)")
        let predict = try CLI.run(["predict", "--weights", out, "--top", "1", CLI.fixture("digits_samples/digit_7_1496.png")])
        XCTAssertEqual(predict.status, 0, predict.stderr)
    }

    /// A full network whose classifier is one dense layer after global pooling (ResNet) is
    /// still itself, not a pooled-head variant.
    func testPooledHeadDoesNotShadowTheSpecsOwnClassifier() throws {
        let report = try Verifier.verify(try WeightFileOpener.open(path: CLI.fixture("torch/resnet18w8.safetensors")),
                                         architecture: nil).0
        XCTAssertFalse(report.pooledHead)
    }

    func testNoTopShapesOfTheImageNetNetworks() throws {
        let vgg = try ArchitectureRegistry.find("vgg16").withoutTop().resolve()
        XCTAssertEqual(vgg.layers.last?.output, Shape3(512, 7, 7))
        XCTAssertEqual(vgg.totalParameters, 14_714_688)  // keras.applications VGG16(include_top=False)
        let resnet = try ArchitectureRegistry.find("resnet50-keras").withoutTop().resolve()
        XCTAssertEqual(resnet.layers.last?.output, Shape3(2048, 7, 7))
        XCTAssertEqual(resnet.totalParameters, 23_534_592)  // ResNet50(include_top=False), trainable
    }
}
