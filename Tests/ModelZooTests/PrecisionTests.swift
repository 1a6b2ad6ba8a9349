import Foundation
import XCTest
@testable import ModelZoo

/// `--precision bf16`: the same network in bfloat16 stays close to float32, keeps its
/// classifier in float32, and runs oneDNN's bfloat16 kernels where the processor has them.
final class PrecisionTests: XCTestCase {
    func testBF16StaysCloseToFP32OnEveryFamily() throws {
        // Residual adds, concats, BatchNorm, LRN (googlenet-caffe), tanh and average pools (lenet5-classic).
        for (id, size) in [("resnet18", 64), ("googlenet", 64), ("googlenet-caffe", 224), ("lenet5-classic", 32)] {
            let net = try ArchitectureRegistry.find(id).resolve(classes: 10, inputSize: Size2(size))
            let weights = RandomWeights.make(net, seed: 3)
            let inputs = (0..<2).map { RandomWeights.input(net, batch: 2, seed: 40 + UInt64($0)) }
            let check = try PrecisionCheck.compare(net, weights: weights, precision: .bf16, inputs: inputs, source: "test")
            XCTAssertEqual(check.inputs, 4, id)
            // bfloat16 keeps 8 bits of mantissa: about 0.4% per rounding, accumulated over depth.
            XCTAssertLessThan(check.maxRelativeError, 0.05, "\(id): \(check)")
            XCTAssertGreaterThan(check.maxRelativeError, 0, "\(id): bf16 gave exactly the fp32 logits: not bf16")
        }
    }

    func testBF16UsesBFloat16KernelsAndAFloat32Classifier() throws {
        let cpu = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        guard cpu.contains("avx512_bf16") else { throw XCTSkip("this processor has no AVX512-BF16") }
        let net = try ArchitectureRegistry.find("resnet18").resolve(classes: 10, inputSize: Size2(64))
        let network = try Network(net, weights: RandomWeights.make(net, seed: 1), batch: 1, precision: .bf16)
        let convs = network.kernels.filter { $0.layer != "fc" }
        XCTAssertFalse(convs.isEmpty)
        XCTAssertTrue(convs.allSatisfy { $0.implementation.contains("bf16") }, "\(convs)")
        let head = try XCTUnwrap(network.kernels.first { $0.layer == "fc" })
        XCTAssertFalse(head.implementation.contains("bf16"), "\(head)")
    }

    /// The command line: run and bench take --precision; bench reports the comparison.
    func testCommandLinePrecision() throws {
        let weights = CLI.fixture("lenet/lenet5_digits.onnx")
        let bench = try CLI.run(["bench", "--weights", weights, "--precision", "bf16", "--iterations", "2", "--format", "json"])
        XCTAssertEqual(bench.status, 0, bench.stderr)
        let json = try CLI.json(bench)
        XCTAssertEqual(json["precision"] as? String, "bf16")
        XCTAssertEqual(json["top1_agreement"] as? Double, 1.0)
        XCTAssertLessThan(try XCTUnwrap(json["max_relative_logit_error"] as? Double), 0.05)
        let bad = try CLI.run(["run", "--weights", weights, "--precision", "fp8", "--input", "x", "--output", "y"])
        XCTAssertNotEqual(bad.status, 0)
    }
}

/// `--precision int8`: post-training quantization with calibrated activation scales.
final class Int8Tests: XCTestCase {
    /// Calibrated on seeded inputs, compared with fp32 on other inputs drawn the same way.
    func compare(_ id: String, size: Int, batch: Int = 4) throws -> PrecisionCheck {
        let net = try ArchitectureRegistry.find(id).resolve(classes: 10, inputSize: Size2(size))
        let weights = RandomWeights.make(net, seed: 5)
        let calibrationInputs = [RandomWeights.input(net, batch: batch, seed: 100)]
        let calibration = try Int8Calibration.calibrate(net, weights: weights, batches: calibrationInputs, source: "test")
        XCTAssertEqual(calibration.images, batch)
        XCTAssertNotNil(calibration.thresholds[Layer.networkInput], id)
        let inputs = [RandomWeights.input(net, batch: batch, seed: 200)]
        return try PrecisionCheck.compare(net, weights: weights, precision: .int8, inputs: inputs, source: "test",
                                          calibration: calibration)
    }

    func testInt8StaysCloseToFP32OnEveryFamily() throws {
        // Residual sums written into the shortcut (resnet18), concats sharing one scale and
        // BatchNorm (googlenet), LRN in float32 between reorders (googlenet-caffe), int8
        // hidden inner products and the float32 classifier (lenet5).
        for (id, size) in [("resnet18", 64), ("googlenet", 64), ("googlenet-caffe", 224), ("lenet5", 32)] {
            let check = try compare(id, size: size)
            XCTAssertEqual(check.inputs, 4, id)
            // 8 bits: about 0.4% of the range per rounding; a few percent after a whole network.
            XCTAssertLessThan(check.maxRelativeError, 0.1, "\(id): \(check)")
            XCTAssertGreaterThan(check.maxRelativeError, 0, "\(id): int8 gave exactly the fp32 logits: not int8")
            XCTAssertEqual(check.top1Agreement, 1, "\(id): \(check)")
        }
    }

    /// oneDNN's int8 kernels by name: VNNI ones (`jit_int8:avx512_core_vnni`,
    /// `brgconv:avx512_core_vnni`), on processors with AMX its tile kernels
    /// (`brgconv_1x1:avx512_core_amx_int8`), and its int8 GEMM (`gemm_x8s8s32x`).
    static func isInt8Kernel(_ implementation: String) -> Bool {
        ["vnni", "int8", "x8s8"].contains { implementation.contains($0) }
    }

    func testInt8UsesVNNIKernelsAndFloat32Islands() throws {
        let cpu = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        guard cpu.contains("avx512_vnni") else { throw XCTSkip("this processor has no AVX512-VNNI") }
        let net = try ArchitectureRegistry.find("googlenet-caffe").resolve(classes: 10, inputSize: Size2(224))
        let weights = RandomWeights.make(net, seed: 1)
        let calibration = try Int8Calibration.calibrate(net, weights: weights, batches: [RandomWeights.input(net, batch: 1, seed: 1)],
                                                        source: "test")
        let network = try Network(net, weights: weights, batch: 1, precision: .int8, calibration: calibration)
        let head = net.architecture.headLayer
        let hidden = network.kernels.filter { $0.layer != head }
        XCTAssertFalse(hidden.isEmpty)
        XCTAssertTrue(hidden.allSatisfy { Self.isInt8Kernel($0.implementation) }, "\(hidden)")
        let classifier = try XCTUnwrap(network.kernels.first { $0.layer == head })
        XCTAssertFalse(Self.isInt8Kernel(classifier.implementation), "\(classifier)")
        // LRN has no int8 kernel: float32 in, float32 out, a reorder on each side.
        let plan = network.executionPlan
        let lrn = try XCTUnwrap(plan.firstIndex { $0.hasSuffix(": lrn") })
        XCTAssertTrue(plan[lrn - 1].hasSuffix(": reorder"), "\(plan[(lrn - 2)...(lrn + 1)])")
        // Each inception branch writes the concat's scale: the concats copy, no reorders before them.
        for (i, step) in plan.enumerated() where step.hasSuffix(": concat") {
            XCTAssertFalse(plan[i - 1].hasSuffix(": reorder"), "\(plan[(i - 3)...i])")
        }
    }

    func testCalibrationFileRoundTripsAndRefusesOtherWeights() throws {
        let net = try ArchitectureRegistry.find("lenet5").resolve(classes: 10, inputSize: Size2(32))
        let weights = RandomWeights.make(net, seed: 2)
        let calibration = try Int8Calibration.calibrate(net, weights: weights, batches: [RandomWeights.input(net, batch: 4, seed: 3)],
                                                        source: "test")
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("int8-\(UUID().uuidString).json").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try calibration.write(to: path)
        let read = try Int8Calibration.read(path: path)
        XCTAssertEqual(read, calibration)
        XCTAssertNoThrow(try read.check(against: net, weights: weights, path: path))
        XCTAssertThrowsError(try read.check(against: net, weights: RandomWeights.make(net, seed: 9), path: path))
        let other = try ArchitectureRegistry.find("lenet5-classic").resolve(classes: 10, inputSize: Size2(32))
        XCTAssertThrowsError(try read.check(against: other, weights: weights, path: path))
        try Data("{\"format\": \"something else\"}".utf8).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try Int8Calibration.read(path: path))
        XCTAssertThrowsError(try Network(net, weights: weights, batch: 1, precision: .int8)) { error in
            XCTAssertTrue("\(error)".contains("--calibrate"), "\(error)")
        }
    }

    /// Layers kept out of int8 (`floatLayers`) dequantize what they read, compute in the
    /// fallback precision and write it; a residual convolution among them adds into a
    /// float copy of an int8 shortcut, and the int8 block after them quantizes again.
    func testFloatLayersBetweenInt8Blocks() throws {
        let net = try ArchitectureRegistry.find("resnet18").resolve(classes: 10, inputSize: Size2(64))
        let weights = RandomWeights.make(net, seed: 5)
        var calibration = try Int8Calibration.calibrate(net, weights: weights,
                                                        batches: [RandomWeights.input(net, batch: 4, seed: 100)], source: "test")
        let inputs = [RandomWeights.input(net, batch: 4, seed: 200)]
        let allInt8 = try PrecisionCheck.compare(net, weights: weights, precision: .int8, inputs: inputs, source: "test",
                                                 calibration: calibration)
        let convs = net.layers.compactMap { resolved -> String? in
            if case .conv = resolved.layer.op { return resolved.layer.name }
            return nil
        }
        // layer2.0: a strided block with a downsample, between int8 layer1 and int8 layer3.
        let middle = convs.filter { $0.hasPrefix("layer2.0.") }
        XCTAssertEqual(middle.count, 3)
        calibration.floatLayers = middle
        let network = try Network(net, weights: weights, batch: 4, precision: .int8, calibration: calibration)
        for (layer, implementation) in network.kernels where layer != net.architecture.headLayer {
            XCTAssertEqual(Self.isInt8Kernel(implementation), !middle.contains(layer), "\(layer): \(implementation)")
            if middle.contains(layer) && Precision.int8Fallback == .bf16 {
                XCTAssertTrue(implementation.contains("bf16"), "\(layer): \(implementation)")
            }
        }
        let mixed = try PrecisionCheck.compare(net, weights: weights, precision: .int8, inputs: inputs, source: "test",
                                               calibration: calibration)
        XCTAssertLessThan(mixed.maxRelativeError, 0.1, "\(mixed)")
        XCTAssertGreaterThan(mixed.maxRelativeError, 0, "\(mixed)")
        // Every convolution out of int8: the fallback precision's own error (bf16: under 1%,
        // PrecisionTests), well under int8's.
        calibration.floatLayers = convs
        let none = try PrecisionCheck.compare(net, weights: weights, precision: .int8, inputs: inputs, source: "test",
                                              calibration: calibration)
        XCTAssertLessThan(none.maxRelativeError, Precision.int8Fallback == .bf16 ? 0.02 : 1e-4, "\(none)")
        XCTAssertLessThan(none.maxRelativeError, allInt8.maxRelativeError / 2, "\(none) vs \(allInt8)")
        XCTAssertEqual(none.top1Agreement, 1, "\(none)")
    }

    /// A random 1000-class ResNet18 whose int8 answers drift from fp32 on some inputs: the
    /// tuning keeps blocks out of int8 until the target holds, and what it records is what
    /// the engine then gives on the same inputs.
    func testAgreementTuningKeepsBlocksOutOfInt8UntilTheTargetHolds() throws {
        let net = try ArchitectureRegistry.find("resnet18").resolve(classes: 1000, inputSize: Size2(32))
        let weights = RandomWeights.make(net, seed: 7)
        let batches = (0..<6).map { RandomWeights.input(net, batch: 8, seed: 300 + UInt64($0)) }
        var lines: [String] = []
        let tuned = try Int8Calibration.calibrate(net, weights: weights, batches: batches, source: "test",
                                                  agreementTarget: 1, images: 44) { lines.append($0) }
        let tuning = try XCTUnwrap(tuned.tuning)
        // What `bench` puts in its label: how many blocks, in what, and their share of the work.
        let summary = try XCTUnwrap(tuned.fallbackSummary)
        XCTAssertTrue(summary.hasPrefix("\(tuning.floatBlocks.count) block"), summary)
        XCTAssertTrue(summary.contains(" in \(tuning.fallback), "), summary)
        XCTAssertTrue(summary.hasSuffix(String(format: "%.0f%% of the work", tuning.floatMACs * 100)), summary)
        XCTAssertEqual(tuning.images, 44)
        XCTAssertEqual(tuned.images, 44)
        XCTAssertLessThan(tuning.allInt8Agreement, 1, "this net and these inputs were picked for int8 to drift")
        XCTAssertFalse(tuning.floatBlocks.isEmpty)
        XCTAssertEqual(tuning.agreement, 1, "\(lines)")
        XCTAssertEqual(tuning.fallback, Precision.int8Fallback.rawValue)
        XCTAssertGreaterThan(tuning.floatMACs, 0)
        XCTAssertLessThanOrEqual(tuning.floatMACs, 1)
        let floatLayers = try XCTUnwrap(tuned.floatLayers)
        let blocks = Int8Calibration.quantizableBlocks(net)
        XCTAssertEqual(Set(floatLayers), Set(blocks.filter { tuning.floatBlocks.contains($0.name) }.flatMap(\.layers)))
        XCTAssertFalse(floatLayers.contains(net.architecture.headLayer))
        XCTAssertTrue(lines[0].contains("ranking \(blocks.count) blocks"), lines[0])
        // Blocks join one per line; those that went back to int8 say so.
        let joined = lines.filter { $0.hasPrefix("int8: + ") }.count
        let returned = lines.filter { $0.hasPrefix("int8: - ") }.count
        XCTAssertEqual(lines.count, 1 + joined + returned, "\(lines)")
        XCTAssertEqual(tuning.floatBlocks.count, joined - returned, "\(lines)")
        let check = try PrecisionCheck.compare(net, weights: weights, precision: .int8, inputs: batches, source: "test",
                                               calibration: tuned, limit: 44)
        XCTAssertEqual(check.top1Agreement, tuning.agreement)
        // A lower target stops earlier, and 0 keeps every block int8 without measuring.
        let untuned = try Int8Calibration.calibrate(net, weights: weights, batches: batches, source: "test", images: 44)
        XCTAssertNil(untuned.tuning)
        XCTAssertNil(untuned.floatLayers)
        XCTAssertNil(untuned.fallbackSummary)
        let reached = try Int8Calibration.calibrate(net, weights: weights, batches: batches, source: "test",
                                                    agreementTarget: tuning.allInt8Agreement, images: 44)
        XCTAssertEqual(reached.tuning?.floatBlocks, [])
        XCTAssertEqual(reached.floatLayers, [])
        XCTAssertNil(reached.fallbackSummary)

        // The record survives the file; a file from before the tuning reads as all int8.
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("int8-\(UUID().uuidString).json").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try tuned.write(to: path)
        XCTAssertEqual(try Int8Calibration.read(path: path), tuned)
        let text = try String(contentsOfFile: path, encoding: .utf8)
        XCTAssertTrue(text.contains("\"float_layers\"") && text.contains("\"all_int8_agreement\""), text)
        try untuned.write(to: path)
        XCTAssertNil(try Int8Calibration.read(path: path).floatLayers)
    }

    func testPercentileHistogram() {
        var histogram = AbsHistogram(bins: 2048)
        // 9,999 values in [0, 1) and one outlier at 1000: the 99.99th percentile ignores it.
        var values = (0..<9999).map { Float($0) / 9999 }
        values.append(-1000)
        values.withUnsafeBufferPointer { histogram.add($0) }
        let t = histogram.percentile(0.9999)
        XCTAssertGreaterThan(t, 0.9)
        XCTAssertLessThan(t, 1.5)
        // A later, larger batch doubles the range and keeps the counts.
        [Float](repeating: 5000, count: 10).withUnsafeBufferPointer { histogram.add($0) }
        XCTAssertEqual(histogram.total, 10010)
        XCTAssertGreaterThanOrEqual(histogram.range, 5000)
        XCTAssertGreaterThan(histogram.percentile(0.9995), 1000)
    }

    /// The trained LeNet on real digits: calibrate once on the training images (saved beside
    /// the weights), reuse the scales, and keep the fp32 answers on the validation images.
    func testCommandLineCalibratesOnceAndKeepsTheAnswers() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("zoo-int8-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let weights = dir.appendingPathComponent("lenet5.onnx").path
        try FileManager.default.copyItem(atPath: CLI.fixture("lenet/lenet5_digits.onnx"), toPath: weights)
        let input = CLI.fixture("lenet/input_batch8.npy")
        let output = dir.appendingPathComponent("logits.npy").path

        let missing = try CLI.run(["run", "--weights", weights, "--precision", "int8", "--input", input, "--output", output])
        XCTAssertEqual(missing.status, 1, missing.stderr)
        XCTAssertTrue(missing.stderr.contains("--calibrate"), missing.stderr)
        XCTAssertEqual(missing.stderr.split(separator: "\n").count, 1, missing.stderr)

        let first = try CLI.run(["run", "--weights", weights, "--precision", "int8", "--calibrate",
                                 CLI.fixture("digits59/train"), "--input", input, "--output", output])
        XCTAssertEqual(first.status, 0, first.stderr)
        XCTAssertTrue(first.stderr.contains("calibrated on 150 images"), first.stderr)
        let saved = try Int8Calibration.read(path: weights + ".int8.json")
        XCTAssertEqual(saved.images, 150)
        XCTAssertTrue(saved.method.contains("percentile"))
        // The trained LeNet keeps every answer all in int8: the tuning measures and stops.
        XCTAssertEqual(saved.tuning?.images, 150)
        XCTAssertEqual(saved.tuning?.target, 0.99)
        XCTAssertEqual(saved.tuning?.floatBlocks, [])
        XCTAssertGreaterThanOrEqual(try XCTUnwrap(saved.tuning?.allInt8Agreement), 0.99)
        XCTAssertTrue(first.stderr.contains("all in int8"), first.stderr)
        for (flags, message) in [(["--int8-agreement", "99"], "only with --calibrate"),
                                 (["--calibrate", CLI.fixture("digits59/train"), "--int8-agreement", "120"], "from 0 to 100")] {
            let refused = try CLI.run(["run", "--weights", weights, "--precision", "int8", "--input", input,
                                       "--output", output] + flags)
            XCTAssertNotEqual(refused.status, 0, refused.stderr)
            XCTAssertTrue(refused.stderr.contains(message), refused.stderr)
        }

        let bench = try CLI.run(["bench", "--weights", weights, "--precision", "int8", "--iterations", "2",
                                 "--compare-images", CLI.fixture("digits59/val"), "--format", "json"])
        XCTAssertEqual(bench.status, 0, bench.stderr)
        XCTAssertFalse(bench.stderr.contains("calibrated"), "the saved scales are reused: \(bench.stderr)")
        let json = try CLI.json(bench)
        XCTAssertEqual(json["precision"] as? String, "int8")
        let tuning = try XCTUnwrap(json["int8_tuning"] as? [String: Any], "\(json)")
        XCTAssertEqual(tuning["float_blocks"] as? [String], [])
        XCTAssertGreaterThanOrEqual(try XCTUnwrap(json["top1_agreement"] as? Double), 0.98)
        XCTAssertLessThan(try XCTUnwrap(json["max_relative_logit_error"] as? Double), 0.1)

        let predict = try CLI.run(["predict", "--weights", weights, "--precision", "int8", "--top", "1",
                                   CLI.fixture("digits_samples/digit_7_1496.png")])
        XCTAssertEqual(predict.status, 0, predict.stderr)
        XCTAssertTrue(predict.stdout.contains("7"), predict.stdout)

        let empty = dir.appendingPathComponent("empty").path
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        let noImages = try CLI.run(["run", "--weights", weights, "--precision", "int8", "--calibrate", empty,
                                    "--input", input, "--output", output])
        XCTAssertNotEqual(noImages.status, 0)
        XCTAssertTrue(noImages.stderr.contains("no JPEG or PNG images"), noImages.stderr)
        let wrongPrecision = try CLI.run(["run", "--weights", weights, "--calibrate", empty, "--input", input, "--output", output])
        XCTAssertNotEqual(wrongPrecision.status, 0)
    }
}
