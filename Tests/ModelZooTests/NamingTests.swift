import Foundation
import XCTest
@testable import ModelZoo

/// Tensors are found by name or by graph, never by their place in the file: every
/// architecture in every order real writers use, and files from today's real writers.
final class NamingTests: XCTestCase {
    /// The orders a state_dict reaches a file in: the spec's (torch.save, h5py by hand),
    /// sorted by name (safetensors.torch), sorted by dtype then name (the safetensors data
    /// layout), and any order at all (the format allows it).
    enum FileOrder: CaseIterable {
        case spec, byName, byDtypeThenName, seededRandom

        func apply(_ records: [TensorRecord]) -> [TensorRecord] {
            switch self {
            case .spec: return records
            case .byName: return records.sorted { $0.name < $1.name }
            case .byDtypeThenName: return records.sorted { ($0.dtype.rawValue, $0.name) < ($1.dtype.rawValue, $1.name) }
            case .seededRandom:
                var generator = SplitMix64(seed: 7)
                var shuffled = records
                for i in stride(from: shuffled.count - 1, to: 0, by: -1) {
                    shuffled.swapAt(i, Int(generator.next() % UInt64(i + 1)))
                }
                return shuffled
            }
        }
    }

    /// A file that is only its records: the mapping and the verifier never read values here.
    final class RecordsOnly: WeightFile {
        let path = "records-only"
        let format: WeightFormat
        let producer: String? = nil
        let tensors: [TensorRecord]
        init(_ tensors: [TensorRecord], format: WeightFormat = .safetensors) { self.tensors = tensors; self.format = format }
        func load(_ name: String) throws -> Tensor { throw ZooError.badTensor(path: path, tensor: name, reason: "records only") }
    }

    /// A torchvision state_dict's records: parameters, buffers and the int64
    /// `num_batches_tracked` counters, in the spec's order.
    static func stateDictRecords(_ net: ResolvedNetwork, prefix: String = "") -> [TensorRecord] {
        var records: [TensorRecord] = []
        for layer in net.layers {
            for p in layer.parameters + layer.buffers {
                records.append(TensorRecord(name: prefix + p.name, shape: p.shape, dtype: .float32, byteCount: p.count * 4))
            }
            if case .batchNorm = layer.layer.op {
                records.append(TensorRecord(name: prefix + layer.layer.name + ".num_batches_tracked", shape: [],
                                            dtype: .int64, byteCount: 8))
            }
        }
        return records
    }

    /// Every architecture, every order: found as itself (or among the specs its tensors
    /// cannot tell apart), with every canonical tensor bound to the file tensor of that name.
    func testEveryArchitectureInEveryOrderIsPairedByName() throws {
        for arch in ArchitectureRegistry.all {
            let net = try arch.resolve()
            let records = Self.stateDictRecords(net)
            var verdicts: [String] = []
            for order in FileOrder.allCases {
                let file = RecordsOnly(order.apply(records))
                let (report, mapping) = try Verifier.verify(file, checkValues: false)
                XCTAssertTrue(report.ok, "\(arch.id) \(order): \(report.problems.prefix(3)) \(report.notes)")
                XCTAssertEqual(report.pairing, .byName, arch.id)
                XCTAssertTrue(([report.architecture ?? "-"] + report.alsoFits).contains(arch.id),
                              "\(arch.id) \(order): found \(report.architecture ?? "none"), also \(report.alsoFits)")
                let bindings = try XCTUnwrap(mapping).bindings
                XCTAssertEqual(bindings.count, net.parameters.count + net.buffers.count, "\(arch.id) \(order)")
                XCTAssertTrue(bindings.allSatisfy { $0.source?.name == $0.canonical.name }, "\(arch.id) \(order)")
                verdicts.append("\(report.architecture ?? "-") \(report.alsoFits) \(report.confidence)")
            }
            XCTAssertEqual(Set(verdicts).count, 1, "\(arch.id): the verdict depends on the order: \(verdicts)")
        }
    }

    /// DataParallel's `module.` (and a script's `model.`) are removed and said so; a file
    /// whose names are of another network is not paired by position.
    func testWrapperPrefixesAreStrippedAndReported() throws {
        let net = try ArchitectureRegistry.find("resnet18").resolve()
        let file = RecordsOnly(FileOrder.byName.apply(Self.stateDictRecords(net, prefix: "module.model.")))
        let (report, _) = try Verifier.verify(file, checkValues: false)
        XCTAssertTrue(report.ok, "\(report.problems.prefix(3))")
        XCTAssertEqual(report.architecture, "resnet18")
        XCTAssertTrue(report.notes.contains { $0.contains("'module.model.'") }, "\(report.notes)")
    }

    /// A name the spec lacks is `unexpected`, a name the spec wants and the file lacks is
    /// `missing`, each named; nothing shifts into the gap.
    func testMissingAndUnexpectedNamesAreReportedByName() throws {
        let arch = try ArchitectureRegistry.find("resnet101")
        var records = FileOrder.byName.apply(Self.stateDictRecords(try arch.resolve()))
        records.removeAll { $0.name == "layer3.2.conv2.weight" }
        records.append(TensorRecord(name: "layer3.23.conv1.weight", shape: [256, 1024, 1, 1], dtype: .float32, byteCount: 4 << 18))
        let (report, mapping) = try Verifier.verify(RecordsOnly(records), architecture: arch, checkValues: false)
        XCTAssertFalse(report.ok)
        XCTAssertEqual(report.problems.filter { $0.kind == .missing }.map { $0.canonical }, ["layer3.2.conv2.weight"])
        XCTAssertEqual(report.problems.filter { $0.kind == .unexpected }.map { $0.fileTensor }, ["layer3.23.conv1.weight"])
        // layer3.10 still takes layer3.10's tensors.
        XCTAssertEqual(try XCTUnwrap(mapping).bindings.first { $0.canonical.name == "layer3.10.conv1.weight" }?.source?.name,
                       "layer3.10.conv1.weight")
    }

    /// Whole files, in each order, through the reader, the loader and the engine: the logits
    /// are bit for bit the same, including ResNet101 and ResNet152 (more than ten blocks in a
    /// stage, so sorting by name moves `layer3.10` before `layer3.2`).
    func testSafetensorsInEveryOrderGiveBitIdenticalLogits() throws {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("naming-\(getpid())")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        // VGG's 100M-value classifier makes its files too slow to write four times here; the
        // records-only test above covers every VGG.
        for (id, size) in [("resnet101", 32), ("resnet152", 32), ("googlenet", 64), ("resnet50-keras", 32), ("lenet5", 32)] {
            let arch = try ArchitectureRegistry.find(id)
            let net = try arch.resolve(classes: 10, inputSize: Size2(size))
            let weights = RandomWeights.make(net, seed: 11)
            let input = RandomWeights.input(net, batch: 2, seed: 12)
            var reference: [Float]?
            for order in FileOrder.allCases {
                let path = scratch.appendingPathComponent("\(id)-\(order).safetensors").path
                try Self.writeSafetensors(order.apply(Self.stateDictRecords(net)), weights: weights, to: path)
                let file = try WeightFileOpener.open(path: path)
                let (report, mapping) = try Verifier.verify(file, checkValues: false)
                XCTAssertTrue(report.ok, "\(id) \(order): \(report.problems.prefix(3))")
                XCTAssertTrue(([report.architecture ?? "-"] + report.alsoFits).contains(id), "\(id) \(order): \(report.architecture ?? "none")")
                let loaded = try XCTUnwrap(mapping).loadWeights(from: file)
                let logits = try Network(net, weights: loaded, batch: 2).forward(input).data
                if let reference {
                    XCTAssertEqual(logits, reference, "\(id) \(order): logits differ from the spec-order file")
                } else {
                    reference = logits
                }
                try FileManager.default.removeItem(atPath: path)
            }
        }
    }

    /// safetensors as the format lays it out: a JSON header in the records' order, the data
    /// in the same order (int64 counters hold zeros).
    static func writeSafetensors(_ records: [TensorRecord], weights: [String: Tensor], to path: String) throws {
        var header: [String] = []
        var data = Data()
        for r in records {
            let start = data.count
            if r.dtype == .int64 {
                data.append(Data(count: 8))
            } else {
                let values = try XCTUnwrap(weights[r.name])
                values.data.withUnsafeBytes { data.append(contentsOf: $0) }
            }
            let shape = r.shape.map(String.init).joined(separator: ",")
            header.append("\"\(r.name)\":{\"dtype\":\"\(r.dtype == .int64 ? "I64" : "F32")\",\"shape\":[\(shape)],\"data_offsets\":[\(start),\(data.count)]}")
        }
        var json = Data(("{" + header.joined(separator: ",") + "}").utf8)
        while json.count % 8 != 0 { json.append(UInt8(ascii: " ")) }
        var file = Data()
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { file.append(contentsOf: $0) }
        file.append(json)
        file.append(data)
        try file.write(to: URL(fileURLWithPath: path))
    }

    // MARK: Files from today's real writers (Tools/make_naming_fixtures.py)

    static let deepResNet = Architecture.resnet(
        depth: 50, id: "resnet-1-1-12-1w4", variant: "torchvision bottlenecks, 12 blocks in stage 3, base width 4",
        stride: .on3x3, convBias: false, epsilon: 1e-5, published: nil, aliases: [], preprocessing: .torchvision,
        width: 4, blocks: [1, 1, 12, 1])
    static let narrowResNet18 = Architecture.resnet(
        depth: 18, id: "resnet18w16", variant: "torchvision at 1/16 width", stride: .on3x3, convBias: false,
        epsilon: 1e-5, published: nil, aliases: [], preprocessing: .torchvision, width: 4)
    static let narrowVGG11 = Architecture.vgg(depth: 11, batchNorm: false, widthDivisor: 16, hidden: 32, id: "vgg11w16")
    static let narrowVGG11BN = Architecture.vgg(depth: 11, batchNorm: true, widthDivisor: 16, hidden: 32, id: "vgg11w16_bn")

    /// Loads a fixture through verify and the loader, runs it, and compares with the
    /// exporter's own logits within 1e-5 of the largest.
    @discardableResult
    func runFixture(_ name: String, _ arch: Architecture, input: String, expected: String, size: Int,
                    file: StaticString = #filePath, line: UInt = #line) throws -> VerifyReport {
        let weightFile = try WeightFileOpener.open(path: CLI.fixture("naming/" + name))
        let (report, mapping) = try Verifier.verify(weightFile, architecture: arch)
        XCTAssertTrue(report.ok, "\(name): \(report.problems.prefix(5))", file: file, line: line)
        guard let mapping, report.ok else { return report }
        let x = try NPY.read(path: CLI.fixture("naming/" + input))
        let want = try NPY.read(path: CLI.fixture("naming/" + expected))
        let net = try arch.resolve(classes: mapping.network.classes, inputSize: Size2(size))
        let got = try Network(net, weights: try mapping.loadWeights(from: weightFile), batch: x.shape[0]).forward(x)
        XCTAssertEqual(got.shape, want.shape, name, file: file, line: line)
        let scale = want.data.map { abs($0) }.max() ?? 1
        let diff = zip(got.data, want.data).map { abs($0 - $1) }.max() ?? .infinity
        XCTAssertLessThanOrEqual(diff, 1e-5 * scale, "\(name): max |diff| \(diff), max |logit| \(scale)", file: file, line: line)
        return report
    }

    func testSafetensorsTorchSortedKeysWithTwelveBlocksInAStage() throws {
        let report = try runFixture("resnet_1_1_12_1.safetensors", Self.deepResNet, input: "input_2x3x64x64.npy",
                                    expected: "logits_resnet_1_1_12_1.npy", size: 64)
        XCTAssertEqual(report.pairing, .byName)
        // The file really is in the trap's order.
        let names = try WeightFileOpener.open(path: CLI.fixture("naming/resnet_1_1_12_1.safetensors")).tensors.map(\.name)
        XCTAssertLessThan(try XCTUnwrap(names.firstIndex(of: "layer3.10.conv1.weight")),
                          try XCTUnwrap(names.firstIndex(of: "layer3.2.conv1.weight")))
    }

    /// torch's default exporter (dynamo, opset 18+): module names on folded convs, biases
    /// named `<conv>.weight_bias`, all-zero biases dropped, ReduceMean and 1x1 AveragePool
    /// for the adaptive pools.
    func testDynamoExportsVerifyAndRun() throws {
        for name in ["resnet18w16_dynamo.onnx", "resnet18w16_dynamo_zero.onnx"] {
            let report = try runFixture(name, Self.narrowResNet18, input: "input_2x3x64x64.npy",
                                        expected: "logits_" + name.replacingOccurrences(of: ".onnx", with: ".npy"), size: 64)
            XCTAssertEqual(report.pairing, .byName, name)
            XCTAssertTrue(report.variant?.contains("BatchNorm folded") ?? false, name)
        }
        let zero = try runFixture("vgg11w16_dynamo_zero.onnx", Self.narrowVGG11, input: "input_2x3x32x32.npy",
                                  expected: "logits_vgg11w16_dynamo_zero.npy", size: 32)
        // torchvision zeroes VGG's conv biases; the exporter drops those inputs.
        XCTAssertTrue(zero.notes.contains { $0.contains("8 bias input(s) absent") }, "\(zero.notes)")
        try runFixture("vgg11w16_dynamo.onnx", Self.narrowVGG11, input: "input_2x3x32x32.npy",
                       expected: "logits_vgg11w16_dynamo.npy", size: 32)
    }

    /// By name, a VGG with BatchNorm cannot pass for one without: the indices differ.
    func testNamesTellVGGFromVGGBN() throws {
        let file = try WeightFileOpener.open(path: CLI.fixture("naming/vgg11w16_dynamo.onnx"))
        XCTAssertTrue(try Verifier.verify(file, architecture: Self.narrowVGG11).0.ok)
        let asBN = try Verifier.verify(file, architecture: Self.narrowVGG11BN).0
        XCTAssertFalse(asBN.ok)
        XCTAssertTrue(asBN.problems.contains { $0.kind == .unexpected && $0.fileTensor == "features.3.weight" }, "\(asBN.problems.prefix(4))")
    }

    /// float16 initializers, consumed directly or through Cast: read as the float32 engine
    /// needs them, giving onnxruntime's logits for the same weights widened.
    func testFloat16InitializersDirectAndThroughCast() throws {
        for name in ["resnet18w16_fp16", "resnet18w16_fp16_cast"] {
            let report = try runFixture(name + ".onnx", Self.narrowResNet18, input: "input_2x3x64x64.npy",
                                        expected: "logits_\(name)_widened.npy", size: 64)
            XCTAssertGreaterThan(report.parameters, 0, name)
            XCTAssertEqual(report.parameters, report.expectedParameters, name)
        }
    }

    /// A Keras file whose `weight_names` lists a dataset it lacks is a file with a missing
    /// tensor: `verify` exits 1 naming it, `inspect` shows what is there.
    func testListedButAbsentKerasWeightIsMissing() throws {
        let path = CLI.fixture("naming/lenet5_missing_bias.h5")
        let verify = try CLI.run(["verify", path, "--format", "json"])
        XCTAssertEqual(verify.status, 1, verify.stderr)
        let problems = try XCTUnwrap(try CLI.json(verify)["problems"] as? [[String: Any]])
        XCTAssertTrue(problems.contains { $0["kind"] as? String == "missing" && $0["file_tensor"] as? String == "dense_1/dense_1/bias" },
                      "\(problems)")
        XCTAssertTrue(problems.contains { $0["kind"] as? String == "missing" && $0["canonical"] as? String == "fc2.bias" },
                      "\(problems)")
        let inspect = try CLI.run(["inspect", path])
        XCTAssertEqual(inspect.status, 0, inspect.stderr)
        XCTAssertTrue(inspect.stdout.contains("listed but absent: dense_1/dense_1/bias"), inspect.stdout)
        XCTAssertTrue(inspect.stdout.contains("dense_1/dense_1/kernel"), inspect.stdout)
    }

    /// keras.applications files name every layer (`block5_conv3`, `conv4_block6_0_conv`,
    /// `predictions`): paired by those names through the spec's Keras naming, in any order.
    func testKerasApplicationsNamesArePairedByName() throws {
        for id in ["vgg16", "vgg19", "resnet50-keras"] {
            let net = try ArchitectureRegistry.find(id).resolve()
            let names = try XCTUnwrap(KerasLayout.applicationsNames(for: net), id)
            var records: [TensorRecord] = []
            func add(_ layer: String, _ leaf: String, _ shape: [Int]) {
                records.append(TensorRecord(name: "\(layer)/\(layer)/\(leaf):0", shape: shape, dtype: .float32,
                                            byteCount: shape.reduce(4, *)))
            }
            for layer in net.layers {
                guard let keras = names[layer.layer.name] else { continue }
                for p in layer.parameters + layer.buffers {
                    switch (layer.layer.op, p.role) {
                    case (.conv, .weight): add(keras, "kernel", [p.shape[2], p.shape[3], p.shape[1], p.shape[0]])
                    case (.linear, .weight): add(keras, "kernel", [p.shape[1], p.shape[0]])
                    case (.batchNorm, .weight): add(keras, "gamma", p.shape)
                    case (.batchNorm, .bias): add(keras, "beta", p.shape)
                    case (.batchNorm, .runningMean): add(keras, "moving_mean", p.shape)
                    case (.batchNorm, .runningVar): add(keras, "moving_variance", p.shape)
                    default: add(keras, "bias", p.shape)
                    }
                }
            }
            let (report, mapping) = try Verifier.verify(RecordsOnly(FileOrder.seededRandom.apply(records), format: .kerasH5),
                                                        checkValues: false)
            XCTAssertTrue(report.ok, "\(id): \(report.problems.prefix(3))")
            XCTAssertEqual(report.pairing, .byName, id)
            XCTAssertEqual(report.architecture, id)
            let bindings = try XCTUnwrap(mapping).bindings
            for layer in net.layers {
                guard let keras = names[layer.layer.name], let weight = layer.parameters.first(where: { $0.role == .weight }) else { continue }
                let source = bindings.first { $0.canonical.name == weight.name }?.source?.name
                XCTAssertTrue(source?.hasPrefix(keras + "/") ?? false, "\(id): \(weight.name) <- \(source ?? "nothing")")
            }
        }
    }

    /// The preprocessing weights were trained with is written with them and read back: a
    /// head fitted on a Caffe VGG's features (BGR minus the mean) stays Caffe-preprocessed
    /// in the safetensors file, although the vgg16 spec's default is torchvision's.
    func testPreprocessingTravelsWithTheWeights() throws {
        let loaded = try ModelLoader.load(path: CLI.fixture("lenet/lenet5_digits.safetensors"))
        XCTAssertEqual(loaded.preset.preprocessing, .grayscaleUnit)
        var preset = loaded.preset
        preset.preprocessing = .caffe
        preset.meanBGR = [1, 2, 3]
        let net = try loaded.architecture.resolve(classes: 10)
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("pre-\(getpid())")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        for ext in ["safetensors", "onnx", "weights.h5"] {
            let path = scratch.appendingPathComponent("lenet.\(ext)").path
            let format = try XCTUnwrap(ModelWriter.format(forPath: path))
            _ = try ModelWriter.write(net, weights: loaded.weights, classNames: nil, to: path, format: format, producer: "test",
                                   preset: preset)
            let back = try ModelLoader.load(path: path)
            XCTAssertEqual(back.preset.preprocessing, .caffe, ext)
            XCTAssertEqual(back.preset.meanBGR, [1, 2, 3], ext)
        }
    }
}
