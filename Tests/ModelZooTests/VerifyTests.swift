import XCTest
@testable import ModelZoo

/// `zoo verify` on files real exporters wrote: verdict, architecture, problems by name.
final class VerifyTests: XCTestCase {
    /// torchvision's ResNet18 structure at 1/8 width, as Tools/make_torch_fixtures.py exports it.
    static let narrowResNet18 = Architecture.resnet(
        depth: 18, id: "resnet18w8", variant: "torchvision at 1/8 width", stride: .on3x3, convBias: false,
        epsilon: 1e-5, published: nil, aliases: [], preprocessing: .torchvision, width: 8)

    func verify(_ relative: String, arch: Architecture? = nil) throws -> VerifyReport {
        try Verifier.verify(try WeightFileOpener.open(path: CLI.fixture(relative)), architecture: arch).0
    }

    func testLeNetInEveryFormatIsRecognised() throws {
        for name in ["lenet5_digits.onnx", "lenet5_digits.h5", "lenet5_digits.weights.h5", "lenet5_digits.safetensors"] {
            let report = try verify("lenet/" + name)
            XCTAssertTrue(report.ok, "\(name): \(report.problems)")
            XCTAssertEqual(report.architecture, "lenet5", name)
            XCTAssertEqual(report.parameters, 61_706, name)
            XCTAssertEqual(report.classes, 10, name)
        }
        // Only the graph (or Keras's model_config) tells ReLU/max from tanh/average pooling.
        XCTAssertEqual(try verify("lenet/lenet5_digits.onnx").confidence, .high)
        XCTAssertEqual(try verify("lenet/lenet5_digits.h5").confidence, .high)
        let weightsOnly = try verify("lenet/lenet5_digits.safetensors")
        XCTAssertEqual(weightsOnly.confidence, .medium)
        XCTAssertEqual(weightsOnly.alsoFits, ["lenet5-classic"])
        XCTAssertEqual(try verify("lenet/lenet5_classic_digits.onnx").architecture, "lenet5-classic")
    }

    func testReplacedHeadIsOK() throws {
        let report = try verify("lenet/lenet5_digits04.onnx")
        XCTAssertTrue(report.ok)
        XCTAssertEqual(report.architecture, "lenet5")
        XCTAssertEqual(report.classes, 5)
        XCTAssertEqual(report.expectedParameters, 61_706 - 5 * 85)
    }

    /// torch.onnx.export in eval mode folds BatchNorm into the convs (`onnx::Conv_NNN`).
    func testTorchEvalExportWithFoldedBatchNorm() throws {
        let report = try verify("torch/resnet18w8_eval.onnx", arch: Self.narrowResNet18)
        XCTAssertTrue(report.ok, "\(report.problems)")
        XCTAssertTrue(report.variant?.contains("BatchNorm folded") ?? false)
        XCTAssertEqual(report.convention, "torch.onnx.export")
        let training = try verify("torch/resnet18w8_train.onnx", arch: Self.narrowResNet18)
        XCTAssertTrue(training.ok, "\(training.problems)")
        XCTAssertFalse(training.variant?.contains("folded") ?? true)
        XCTAssertEqual(training.parameters, 177_362)
    }

    /// Against the full-width spec, every problem names the file's tensor and the canonical one.
    func testWrongArchitectureNamesTensors() throws {
        let report = try verify("torch/resnet18w8_train.onnx", arch: try ArchitectureRegistry.find("resnet18"))
        XCTAssertFalse(report.ok)
        let first = try XCTUnwrap(report.problems.first)
        XCTAssertEqual(first.kind, .wrongShape)
        XCTAssertEqual(first.canonical, "conv1.weight")
        XCTAssertEqual(first.expected, "[64, 3, 7, 7]")
        XCTAssertEqual(first.actual, "[8, 3, 7, 7]")
        let folded = try verify("torch/resnet18w8_eval.onnx", arch: try ArchitectureRegistry.find("resnet18"))
        XCTAssertTrue(folded.problems.contains { ($0.fileTensor ?? "").hasPrefix("onnx::Conv_") && $0.canonical == "layer1.0.conv1.weight" },
                      "\(folded.problems.prefix(3))")
    }

    func testUnknownNetworkMatchesNone() throws {
        let report = try verify("torch/resnet18w8.safetensors")
        XCTAssertFalse(report.ok)
        XCTAssertNil(report.architecture)
    }

    func testModelZooGraphs() throws {
        guard let light = ONNXLightModels.directory else { throw XCTSkip("python3 with onnx is not available") }
        // The Caffe2 ResNet50 is torchvision's network trained with Caffe's preprocessing:
        // architecture resnet50, preset resnet50-caffe2 (found from the producer).
        let expected = ["bvlc_alexnet": ("alexnet-caffe", "alexnet-caffe", 60_965_224),
                        "zfnet512": ("zfnet512", "zfnet512", 87_250_536),
                        "inception_v1": ("googlenet-caffe", "googlenet-caffe", 6_998_552),
                        "vgg19": ("vgg19", "vgg19", 143_667_240),
                        "resnet50": ("resnet50", "resnet50-caffe2", 25_557_032)]
        for (model, (arch, preset, params)) in expected {
            let file = try WeightFileOpener.open(path: light + "/light_\(model).onnx")
            let report = try Verifier.verify(file, checkValues: false).0
            XCTAssertTrue(report.ok, "\(model): \(report.problems.prefix(3))")
            XCTAssertEqual(report.architecture, arch, model)
            XCTAssertEqual(report.preset, preset, model)
            XCTAssertEqual(report.expectedParameters, params, model)
            XCTAssertEqual(report.confidence, .high, model)
        }
    }

    /// The preset decides what a loaded model does with images and how it names its outputs:
    /// the Caffe2 ResNet50 takes Caffe's BGR minus the means and names ImageNet's classes;
    /// the same network from a torchvision export takes torchvision's preprocessing.
    func testCaffe2ResNet50LoadsAsAPresetOfResNet50() throws {
        guard let light = ONNXLightModels.directory else { throw XCTSkip("python3 with onnx is not available") }
        let model = try Model.load(light + "/light_resnet50.onnx")
        XCTAssertEqual(model.architecture.id, "resnet50")
        XCTAssertEqual(model.preset.id, "resnet50-caffe2")
        XCTAssertEqual(model.preset.preprocessing, .caffe)
        XCTAssertEqual(model.classNames?.count, 1000)
        XCTAssertEqual(model.classNames?.first, ImageNetClasses.names.first)
        XCTAssertEqual(try ArchitectureRegistry.find("resnet50-caffe2").id, "resnet50")
        XCTAssertEqual(WeightsPreset.find("resnet50-onnxzoo")?.id, "resnet50-caffe2")
        XCTAssertEqual(WeightsPreset.standard(for: try ArchitectureRegistry.find("resnet50")).preprocessing, .torchvision)
    }

    /// A preset the caller names wins over the file's own, for its architecture only.
    func testRequestedPresetIsUsedForItsArchitecture() throws {
        let path = CLI.fixture("lenet/lenet5_digits.safetensors")
        let bgr = WeightsPreset(id: "lenet5-bgr", architecture: "lenet5", source: "a test", preprocessing: .caffe,
                                meanBGR: [1, 2, 3], classNames: (0..<10).map { "digit \($0)" })
        let report = try Verifier.verify(try WeightFileOpener.open(path: path), preset: bgr).0
        XCTAssertEqual(report.architecture, "lenet5")
        XCTAssertEqual(report.preset, "lenet5-bgr")
        let loaded = try ModelLoader.load(path: path, spec: nil, preset: bgr)
        XCTAssertEqual(loaded.preset.preprocessing, .caffe)
        XCTAssertEqual(loaded.preset.meanBGR, [1, 2, 3])
        XCTAssertEqual(loaded.classNames?.last, "digit 9")
        var other = bgr
        other.architecture = "vgg16"
        XCTAssertEqual(try ModelLoader.load(path: path, spec: nil, preset: other).preset.id, "lenet5",
                       "a preset of another architecture does not apply")
    }

    /// Class names come from the preset, not from the head's size: LeNet's digits preset
    /// names nothing, so a 10-class LeNet prints "class N"; a 1000-class LeNet head would
    /// still not be ImageNet.
    func testClassNamesComeFromThePresetNotTheHeadSize() throws {
        let lenet = try ArchitectureRegistry.find("lenet5")
        XCTAssertNil(WeightsPreset.standard(for: lenet).classNames(forHead: 1000))
        let vgg = WeightsPreset.standard(for: try ArchitectureRegistry.find("vgg16"))
        XCTAssertEqual(vgg.classNames(forHead: 1000)?.count, 1000)
        XCTAssertNil(vgg.classNames(forHead: 10), "a new head's names are not ImageNet's")
    }

    func testNonFiniteValuesAreProblems() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("zoo-verify-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let source = try SafetensorsFile(path: CLI.fixture("lenet/lenet5_digits.safetensors"))
        var tensors = try source.tensors.map { ($0.name, try source.load($0.name)) }
        let i = try XCTUnwrap(tensors.firstIndex { $0.0 == "fc2.weight" })
        tensors[i].1.data[7] = .nan
        tensors[i].1.data[9] = .infinity
        let path = dir.appendingPathComponent("bad.safetensors").path
        try SafetensorsWriter.write(tensors.map { (name: $0.0, tensor: $0.1) }, to: path)
        let report = try Verifier.verify(try WeightFileOpener.open(path: path)).0
        XCTAssertFalse(report.ok)
        XCTAssertEqual(report.problems, [MappingProblem(fileTensor: "fc2.weight", canonical: "fc2.weight", kind: .nonFinite,
                                                        expected: "finite values", actual: "1 NaN, 1 Inf of 10080")])
    }
}
