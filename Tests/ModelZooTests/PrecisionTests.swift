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
    /// Calibrated on seeded inputs, compared with fp32 on other inputs of the same kind.
    func check(_ id: String, size: Int, classes: Int = 10, batch: Int = 4) throws -> PrecisionCheck {
        let net = try ArchitectureRegistry.find(id).resolve(classes: classes, inputSize: Size2(size))
        let weights = RandomWeights.make(net, seed: 5)
        let calibrationInputs = (0..<4).map { RandomWeights.input(net, batch: batch, seed: 100 + UInt64($0)) }
        let calibration = try Int8Calibration.calibrate(net, weights: weights, batches: calibrationInputs, source: "test")
        let inputs = (0..<2).map { RandomWeights.input(net, batch: batch, seed: 200 + UInt64($0)) }
        return try PrecisionCheck.compare(net, weights: weights, precision: .int8, inputs: inputs, source: "test",
                                          calibration: calibration)
    }

    func testInt8StaysCloseToFP32() throws {
        for (id, size) in [("resnet18", 64), ("googlenet", 64), ("googlenet-caffe", 224), ("lenet5", 32)] {
            let start = Date()
            let result = try check(id, size: size)
            print(id, result, Date().timeIntervalSince(start))
        }
        let net = try ArchitectureRegistry.find("resnet18").resolve(classes: 10, inputSize: Size2(64))
        let weights = RandomWeights.make(net, seed: 5)
        let calibration = try Int8Calibration.calibrate(net, weights: weights, batches: [RandomWeights.input(net, batch: 2, seed: 1)], source: "test")
        let network = try Network(net, weights: weights, batch: 2, precision: .int8, calibration: calibration)
        print(network.kernels)
        print(network.executionPlan)
    }
}
