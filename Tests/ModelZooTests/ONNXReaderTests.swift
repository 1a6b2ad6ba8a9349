import Foundation
import XCTest
@testable import ModelZoo

/// The ONNX reader against the onnx wheel's model-zoo graphs (real Caffe2 exports) and
/// against the tiny fixtures Tools/make_onnx_fixtures.py writes, including broken files.
final class ONNXReaderTests: XCTestCase {

    // MARK: Locating files

    private static let packageRoot: URL = {
        var url = URL(fileURLWithPath: #filePath)
        while url.path != "/" {
            url.deleteLastPathComponent()
            if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { return url }
        }
        return URL(fileURLWithPath: #filePath)
    }()

    private static let fixtures = packageRoot.appendingPathComponent("Fixtures/onnx")

    private func fixture(_ name: String) -> String { Self.fixtures.appendingPathComponent(name).path }

    /// One of the onnx wheel's light models (see `ONNXLightModels`).
    private func lightModel(_ name: String) throws -> String {
        guard let directory = ONNXLightModels.directory else { throw XCTSkip("python3 with onnx is not available") }
        let path = directory + "/light_\(name).onnx"
        guard FileManager.default.fileExists(atPath: path) else { throw XCTSkip("\(path) missing") }
        return path
    }

    // MARK: The ONNX model zoo's light models

    private struct LightFacts {
        let name: String
        let tensorCount: Int
        let floatTensorCount: Int
        let floatParameters: Int
        /// Sum of every float value, computed with numpy (float64 accumulation).
        let floatSum: Double
        let operators: [String: Int]
        let lastTensor: (name: String, shape: [Int])
    }

    private static let lightFacts: [LightFacts] = [
        LightFacts(name: "bvlc_alexnet", tensorCount: 33, floatTensorCount: 16, floatParameters: 60_965_224,
                   floatSum: 1_219_304.452746,
                   operators: ["ConstantOfShape": 16, "Conv": 5, "Relu": 7, "LRN": 2, "MaxPool": 3, "Reshape": 1,
                               "Gemm": 3, "Dropout": 2, "Softmax": 1],
                   lastTensor: ("fc8_w_0", [1000, 4096])),
        // One float initializer is a 1x1 Caffe2 data-queue placeholder, not a parameter:
        // the network's own parameters are 87,250,536.
        LightFacts(name: "zfnet512", tensorCount: 34, floatTensorCount: 17, floatParameters: 87_250_537,
                   floatSum: 1_745_010.680996,
                   operators: ["ConstantOfShape": 16, "Conv": 5, "Relu": 7, "LRN": 2, "MaxPool": 3, "Reshape": 1,
                               "Gemm": 3, "Softmax": 1],
                   lastTensor: ("gpu_0/fc8_w_0", [1000, 1024])),
        LightFacts(name: "inception_v1", tensorCount: 211, floatTensorCount: 116, floatParameters: 6_998_552,
                   floatSum: 140_433.281933,
                   operators: ["ConstantOfShape": 93, "Conv": 57, "Relu": 57, "MaxPool": 13, "LRN": 2, "Concat": 9,
                               "AveragePool": 1, "Dropout": 1, "Reshape": 2, "Gemm": 1, "Softmax": 1],
                   lastTensor: ("loss3/classifier_w_0", [1, 1, 1000, 1024])),
        LightFacts(name: "vgg19", tensorCount: 75, floatTensorCount: 38, floatParameters: 143_667_240,
                   floatSum: 2_873_374.825911,
                   operators: ["ConstantOfShape": 36, "Conv": 16, "Relu": 18, "MaxPool": 5, "Reshape": 1, "Gemm": 3,
                               "Dropout": 2, "Softmax": 1],
                   lastTensor: ("fc8_w_0", [1000, 4096])),
        LightFacts(name: "resnet50", tensorCount: 508, floatTensorCount: 268, floatParameters: 25_610_153,
                   floatSum: 513_378.868716,
                   operators: ["ConstantOfShape": 239, "Conv": 53, "BatchNormalization": 53, "Relu": 49, "MaxPool": 1,
                               "Sum": 16, "AveragePool": 1, "Reshape": 1, "Gemm": 1, "Softmax": 1],
                   lastTensor: ("gpu_0/res5_2_branch2c_w_0", [2048, 512, 1, 1])),
    ]

    func testLightModelsMatchNumpy() throws {
        for facts in Self.lightFacts {
            let file = try ONNXFile(path: try lightModel(facts.name))
            XCTAssertEqual(file.format, .onnx)
            XCTAssertEqual(file.opsetVersion, 9, facts.name)
            XCTAssertEqual(file.onnxGraph.irVersion, 3, facts.name)
            XCTAssertEqual(file.producer, "onnx-caffe2", facts.name)
            XCTAssertEqual(file.onnxGraph.operatorCounts, facts.operators, facts.name)
            XCTAssertEqual(file.tensors.count, facts.tensorCount, facts.name)
            XCTAssertEqual(file.tensors.last?.name, facts.lastTensor.name, facts.name)
            XCTAssertEqual(file.tensors.last?.shape, facts.lastTensor.shape, facts.name)
            // Every non-float tensor is a ConstantOfShape/Reshape shape: int64, reported, not loaded.
            XCTAssertTrue(file.tensors.allSatisfy { $0.dtype == .float32 || $0.dtype == .int64 }, facts.name)

            let floats = file.tensors.filter { $0.dtype == .float32 }
            XCTAssertEqual(floats.count, facts.floatTensorCount, facts.name)
            XCTAssertEqual(floats.reduce(0) { $0 + $1.elementCount }, facts.floatParameters, facts.name)

            let loaded = try file.loadAll()
            XCTAssertEqual(loaded.count, facts.floatTensorCount, facts.name)
            var sum = 0.0
            for record in floats {
                guard let tensor = loaded[record.name] else { return XCTFail("\(facts.name): \(record.name) not loaded") }
                XCTAssertEqual(tensor.shape, record.shape, record.name)
                sum += tensor.data.withUnsafeBufferPointer { values in
                    var total = 0.0
                    for value in values { total += Double(value) }
                    return total
                }
            }
            XCTAssertEqual(sum, facts.floatSum, accuracy: facts.floatSum * 1e-9, facts.name)
        }
    }

    func testAlexNetDetails() throws {
        let file = try ONNXFile(path: try lightModel("bvlc_alexnet"))
        let conv1 = try file.load("conv1_w_0")
        XCTAssertEqual(conv1.shape, [96, 3, 11, 11])
        XCTAssertTrue(conv1.data.allSatisfy { $0 == Float(0.02) })
        XCTAssertEqual(try file.loadIntegers("conv1_w_0__SHAPE"), [96, 3, 11, 11])
        XCTAssertThrowsError(try file.load("conv1_w_0__SHAPE")) { error in
            guard case let ZooError.badTensor(_, tensor, reason) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(tensor, "conv1_w_0__SHAPE")
            XCTAssertTrue(reason.contains("INT64"), reason)
        }
        XCTAssertEqual(file.onnxGraph.dataInputs.map(\.name), ["data_0"])
        XCTAssertEqual(file.onnxGraph.dataInputs.first?.shape, [.fixed(1), .fixed(3), .fixed(224), .fixed(224)])
        XCTAssertEqual(file.onnxGraph.dataInputs.first?.elementType, .float32)
        XCTAssertEqual(file.onnxGraph.outputs.map(\.name), ["prob_1"])
        guard let conv = file.onnxGraph.nodes.first(where: { $0.opType == "Conv" }) else { return XCTFail("no Conv") }
        XCTAssertEqual(conv.inputs, ["data_0", "conv1_w_0", "conv1_b_0"])
        XCTAssertEqual(conv.attributes["kernel_shape"], .ints([11, 11]))
        XCTAssertEqual(conv.attributes["strides"], .ints([4, 4]))
        guard let lrn = file.onnxGraph.nodes.first(where: { $0.opType == "LRN" }) else { return XCTFail("no LRN") }
        XCTAssertEqual(lrn.attributes["size"], .int(5))
        XCTAssertEqual(lrn.attributes["alpha"]?.floatValue ?? 0, 1e-4, accuracy: 1e-10)
        XCTAssertEqual(file.onnxGraph.operatorCountsSorted.first?.op, "ConstantOfShape")
    }

    // MARK: Fixtures

    private struct Expected: Decodable {
        struct TensorFacts: Decodable {
            let name: String
            let shape: [Int]
            let dtype: String
            let values: [Double]
        }
        struct Valid: Decodable {
            let tensors: [TensorFacts]
            let ops: [String: Int]
            let opset: Int
            let producer: String
            let ir_version: Int
            let inputs: [String]
            let outputs: [String]
        }
        struct Failure: Decodable {
            let at: String
            let kind: String
            let tensor: String?
            let contains: String
        }
        let valid: [String: Valid]
        let errors: [String: Failure]
    }

    private func expected() throws -> Expected {
        let data = try Data(contentsOf: Self.fixtures.appendingPathComponent("expected.json"))
        return try JSONDecoder().decode(Expected.self, from: data)
    }

    func testValidFixturesMatchWhatTheScriptWrote() throws {
        let expectations = try expected()
        XCTAssertEqual(expectations.valid.count, 5)
        for (filename, facts) in expectations.valid.sorted(by: { $0.key < $1.key }) {
            let file = try ONNXFile(path: fixture(filename))
            XCTAssertEqual(file.tensors.map(\.name), facts.tensors.map(\.name), filename)
            XCTAssertEqual(file.opsetVersion, facts.opset, filename)
            XCTAssertEqual(file.producer, facts.producer, filename)
            XCTAssertEqual(file.onnxGraph.irVersion, facts.ir_version, filename)
            XCTAssertEqual(file.onnxGraph.operatorCounts, facts.ops, filename)
            XCTAssertEqual(file.onnxGraph.dataInputs.map(\.name), facts.inputs, filename)
            XCTAssertEqual(file.onnxGraph.outputs.map(\.name), facts.outputs, filename)
            for (record, tensorFacts) in zip(file.tensors, facts.tensors) {
                XCTAssertEqual(record.shape, tensorFacts.shape, "\(filename) \(record.name)")
                XCTAssertEqual(record.dtype.rawValue, tensorFacts.dtype, "\(filename) \(record.name)")
                if record.dtype.convertsToFloat32 {
                    let tensor = try file.load(record.name)
                    XCTAssertEqual(tensor.shape, tensorFacts.shape)
                    XCTAssertEqual(tensor.data.map { Double($0) }, tensorFacts.values, "\(filename) \(record.name)")
                    XCTAssertEqual(tensor.data.map { $0.sign }, tensorFacts.values.map { Float($0).sign },
                                   "\(filename) \(record.name): signs (negative zero)")
                } else {
                    XCTAssertEqual(try file.loadIntegers(record.name).map { Double($0) }, tensorFacts.values)
                    XCTAssertThrowsError(try file.load(record.name))
                }
            }
        }
    }

    func testTinyConvGraphView() throws {
        let file = try ONNXFile(path: fixture("tiny_conv_raw.onnx"))
        let nodes = Dictionary(uniqueKeysWithValues: file.onnxGraph.nodes.map { ($0.name, $0) })
        XCTAssertEqual(file.onnxGraph.nodes.map(\.name), ["conv", "relu", "flatten", "fc", "scale_const", "mul", "fill"])
        XCTAssertEqual(nodes["conv"]?.attributes["kernel_shape"], .ints([3, 3]))
        XCTAssertEqual(nodes["fc"]?.attributes["transB"], .int(1))
        XCTAssertEqual(nodes["fc"]?.attributes["alpha"], .float(1))
        XCTAssertEqual(nodes["flatten"]?.attributes["axis"], .int(1))
        guard case let .tensor(record)? = nodes["scale_const"]?.attributes["value"] else { return XCTFail("no value") }
        XCTAssertEqual(record.name, "scale")
        XCTAssertEqual(try file.load(record.name).data, [2, 0.5, -1])
        // The fill value is reachable through its attribute even though `tensors` omits it.
        guard case let .tensor(fill)? = nodes["fill"]?.attributes["value"] else { return XCTFail("no fill value") }
        XCTAssertFalse(file.tensors.contains { $0.name == fill.name })
        XCTAssertEqual(try file.load(fill.name).data, [1.5])
        XCTAssertEqual(file.onnxGraph.inputs.first?.shape, [.symbolic("N"), .fixed(1), .fixed(4), .fixed(4)])
        XCTAssertEqual(file.tensors.first { $0.name == "conv.weight" }?.byteCount, 72)
    }

    func testBrokenFixturesFailClearly() throws {
        let expectations = try expected()
        XCTAssertEqual(expectations.errors.count, 8)
        for (filename, failure) in expectations.errors.sorted(by: { $0.key < $1.key }) {
            let path = fixture(filename)
            var caught: Error?
            do {
                let file = try ONNXFile(path: path)
                XCTAssertEqual(failure.at, "load", "\(filename) opened but should not have")
                _ = try file.loadAll()
            } catch {
                caught = error
            }
            guard let error = caught as? ZooError else {
                XCTFail("\(filename): expected a ZooError, got \(String(describing: caught))")
                continue
            }
            switch error {
            case let .unreadableFile(errorPath, reason):
                XCTAssertEqual(failure.kind, "unreadableFile", "\(filename): \(error)")
                XCTAssertEqual(errorPath, path)
                XCTAssertTrue(failure.contains.isEmpty || reason.contains(failure.contains), "\(filename): \(reason)")
            case let .badTensor(errorPath, tensor, reason):
                XCTAssertEqual(failure.kind, "badTensor", "\(filename): \(error)")
                XCTAssertEqual(errorPath, path)
                XCTAssertEqual(tensor, failure.tensor, filename)
                XCTAssertTrue(reason.contains(failure.contains), "\(filename): \(reason)")
            default:
                XCTFail("\(filename): unexpected \(error)")
            }
        }
    }

    /// A sibling file that is really a symlink out of the model's folder must be refused,
    /// and an external range beyond the data file's end must be caught.
    func testExternalDataEscapesAndShortFiles() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("onnx-external-\(UUID().uuidString)")
        let inside = folder.appendingPathComponent("model")
        try FileManager.default.createDirectory(at: inside, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let model = inside.appendingPathComponent("external_ok.onnx").path
        try FileManager.default.copyItem(atPath: fixture("external_ok.onnx"), toPath: model)
        let outside = folder.appendingPathComponent("secret.bin")
        try Data(count: 4096).write(to: outside)
        try FileManager.default.createSymbolicLink(atPath: inside.appendingPathComponent("external_ok.bin").path,
                                                   withDestinationPath: outside.path)
        let escaping = try ONNXFile(path: model)
        XCTAssertThrowsError(try escaping.load("ext.first")) { error in
            guard case let ZooError.badTensor(_, tensor, reason) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(tensor, "ext.first")
            XCTAssertTrue(reason.contains("outside"), reason)
        }

        try FileManager.default.removeItem(atPath: inside.appendingPathComponent("external_ok.bin").path)
        try Data(count: 40).write(to: inside.appendingPathComponent("external_ok.bin"))
        let short = try ONNXFile(path: model)
        XCTAssertEqual(try short.load("ext.first").data, [Float](repeating: 0, count: 8))
        XCTAssertThrowsError(try short.load("ext.second")) { error in
            guard case let ZooError.badTensor(_, tensor, reason) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(tensor, "ext.second")
            XCTAssertTrue(reason.contains("beyond the end"), reason)
        }
    }

    /// Every prefix of a valid file and a batch of single-byte corruptions: each either opens
    /// and loads or fails with a ZooError; none may crash or hang.
    func testTruncationsAndCorruptionsNeverCrash() throws {
        let original = try Data(contentsOf: URL(fileURLWithPath: fixture("tiny_conv_raw.onnx")))
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("onnx-fuzz-\(UUID().uuidString).onnx")
        defer { try? FileManager.default.removeItem(at: scratch) }
        // Seeded, so a failure names corruptions that can be replayed.
        var generator = SplitMix64(seed: 20261123)
        var variants: [Data] = (0..<original.count).map { original.prefix($0) }
        for _ in 0..<400 {
            var corrupted = original
            let index = Int.random(in: 0..<corrupted.count, using: &generator)
            corrupted[index] = UInt8.random(in: 0...255, using: &generator)
            variants.append(corrupted)
        }
        let reference = try ONNXFile(path: fixture("tiny_conv_raw.onnx"))
        let referenceNames = Set(reference.tensors.map(\.name))
        var opened = 0, refused = 0, prefixesOpened = 0
        for (index, variant) in variants.enumerated() {
            try variant.write(to: scratch)
            let isPrefix = index < original.count
            do {
                let file = try ONNXFile(path: scratch.path)
                opened += 1
                if isPrefix {
                    prefixesOpened += 1
                    // A cut file can only lose tensors, never invent one.
                    XCTAssertTrue(Set(file.tensors.map(\.name)).isSubset(of: referenceNames), "prefix of \(index) bytes")
                }
                // Skip loading the odd multi-megabyte fill a corrupted shape can still declare.
                for record in file.tensors where record.byteCount < 1 << 20 {
                    do {
                        let tensor = try file.load(record.name)
                        // What loads is what the header declared.
                        XCTAssertEqual(tensor.shape, record.shape, "variant \(index): \(record.name)")
                        XCTAssertEqual(tensor.data.count, record.elementCount, "variant \(index): \(record.name)")
                    } catch is ZooError {
                        continue
                    }
                }
            } catch let error as ZooError {
                refused += 1
                // One line, naming the file: what the command line prints as it is.
                XCTAssertFalse(error.description.contains("\n"), "variant \(index): \(error)")
                XCTAssertTrue(error.description.contains(scratch.lastPathComponent), "variant \(index): \(error)")
            }
        }
        XCTAssertEqual(opened + refused, variants.count)
        // The empty file and the first bytes are no model; most single-byte corruptions of
        // a 1 KB model are still one (the weights are most of it); some are not.
        XCTAssertLessThan(prefixesOpened, original.count)
        XCTAssertGreaterThan(opened - prefixesOpened, 0)
        XCTAssertGreaterThan(refused, 0)
    }
}
