import XCTest
@testable import ModelZoo

/// Forward passes through files real exporters wrote, against their peers' logits.
final class InferenceTests: XCTestCase {
    var scratch: URL!

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("zoo-inference-\(getpid())-\(name.hashValue)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: scratch)
    }

    func assertClose(_ actual: Tensor, _ expected: Tensor, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(actual.shape, expected.shape, what, file: file, line: line)
        let scale = expected.data.map { abs($0) }.max() ?? 1
        let diff = zip(actual.data, expected.data).map { abs($0 - $1) }.max() ?? .infinity
        XCTAssertLessThanOrEqual(diff, 1e-4 * scale, "\(what): max |diff| \(diff) against max |logit| \(scale)", file: file, line: line)
    }

    /// The trained LeNet in all four formats, batch 8, through `zoo run` as users call it.
    func testLeNetEveryFormatMatchesOnnxruntime() throws {
        let expected = try NPY.read(path: CLI.fixture("lenet/logits_batch8_onnxruntime.npy"))
        for name in ["lenet5_digits.onnx", "lenet5_digits.h5", "lenet5_digits.weights.h5", "lenet5_digits.safetensors"] {
            let out = scratch.appendingPathComponent(name + ".npy").path
            let result = try CLI.run(["run", "--weights", CLI.fixture("lenet/" + name),
                                      "--input", CLI.fixture("lenet/input_batch8.npy"), "--output", out])
            XCTAssertEqual(result.status, 0, "\(name): \(result.stderr)")
            assertClose(try NPY.read(path: out), expected, name)
        }
        let classic = scratch.appendingPathComponent("classic.npy").path
        XCTAssertEqual(try CLI.run(["run", "--weights", CLI.fixture("lenet/lenet5_classic_digits.onnx"),
                                    "--input", CLI.fixture("lenet/input_batch8.npy"), "--output", classic]).status, 0)
        assertClose(try NPY.read(path: classic), try NPY.read(path: CLI.fixture("lenet/logits_batch8_classic_onnxruntime.npy")), "classic")
    }

    /// torch.onnx.export with BatchNorm folded, without, and the state_dict: all three give
    /// torch's logits, batch 1 and 2.
    func testTorchExportsMatchTorch() throws {
        let input = try NPY.read(path: CLI.fixture("torch/input_2x3x64x64.npy"))
        let expected = try NPY.read(path: CLI.fixture("torch/logits_torch.npy"))
        for name in ["resnet18w8_eval.onnx", "resnet18w8_train.onnx", "resnet18w8.safetensors"] {
            let file = try WeightFileOpener.open(path: CLI.fixture("torch/" + name))
            let (report, mapping) = try Verifier.verify(file, architecture: VerifyTests.narrowResNet18)
            XCTAssertTrue(report.ok, name)
            let net = try VerifyTests.narrowResNet18.resolve(classes: 10, inputSize: Size2(64))
            let weights = try XCTUnwrap(mapping).loadWeights(from: file)
            let two = try Network(net, weights: weights, batch: 2).forward(input)
            assertClose(two, expected, name)
            let one = try Network(net, weights: weights, batch: 1)
                .forward(Tensor(shape: [1, 3, 64, 64], data: Array(input.data.prefix(3 * 64 * 64))))
            assertClose(one, Tensor(shape: [1, 10], data: Array(expected.data.prefix(10))), name + " batch 1")
        }
    }

    /// The ONNX model zoo's Caffe2 graphs, with random weights in place of their constant
    /// fill (Tools/randomize_onnx.py), against onnxruntime on the same graph.
    func testModelZooGraphsMatchOnnxruntime() throws {
        guard let light = ONNXLightModels.directory else { throw XCTSkip("python3 with onnx is not available") }
        let batches = ["bvlc_alexnet": 8, "zfnet512": 2, "inception_v1": 2, "resnet50": 2, "vgg19": 1]
        for (model, batch) in batches.sorted(by: { $0.key < $1.key }) {
            let onnx = scratch.appendingPathComponent(model + ".onnx").path
            let x = scratch.appendingPathComponent(model + ".x.npy").path
            let y = scratch.appendingPathComponent(model + ".y.npy").path
            let out = scratch.appendingPathComponent(model + ".out.npy").path
            let script = CLI.packageRoot.appendingPathComponent("Tools/randomize_onnx.py").path
            let made = try Python.run([script, light + "/light_\(model).onnx", onnx, x, y, "--batch", String(batch)])
            XCTAssertEqual(made.status, 0, made.stderr)
            let result = try CLI.run(["run", "--weights", onnx, "--input", x, "--output", out])
            XCTAssertEqual(result.status, 0, "\(model): \(result.stderr)")
            assertClose(try NPY.read(path: out), try NPY.read(path: y), model)
            try? FileManager.default.removeItem(atPath: onnx)
        }
    }

    /// Real digit images through `zoo predict`: PNGs and an RGB JPEG at twice the size.
    func testPredictReadsDigits() throws {
        let dir = CLI.fixture("digits_samples")
        let images = try FileManager.default.contentsOfDirectory(atPath: dir)
            .filter { $0.hasSuffix(".png") || $0.hasSuffix(".jpg") }.sorted()
        XCTAssertEqual(images.count, 11)
        let result = try CLI.run(["predict", "--weights", CLI.fixture("lenet/lenet5_digits.onnx"), "--top", "1",
                                  "--format", "json"] + images.map { dir + "/" + $0 })
        XCTAssertEqual(result.status, 0, result.stderr)
        let rows = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [[String: Any]])
        for (row, image) in zip(rows, images) {
            let label = String(image.dropFirst("digit_".count).prefix(1))
            let top = try XCTUnwrap((row["top"] as? [[String: Any]])?.first)
            XCTAssertEqual(top["label"] as? String, "class \(label)", image)
            XCTAssertGreaterThan(top["probability"] as? Double ?? 0, 0.9, image)
        }
        let text = try CLI.run(["predict", "--weights", CLI.fixture("lenet/lenet5_digits.h5"), dir + "/digit_7_1496.png"])
        XCTAssertTrue(text.stdout.contains("class 7"), text.stdout)
    }

    func testBadInputsAreClearErrors() throws {
        let wrongShape = scratch.appendingPathComponent("wrong.npy").path
        try NPY.write(Tensor(zeros: [2, 3, 32, 32]), to: wrongShape)
        let run = try CLI.run(["run", "--weights", CLI.fixture("lenet/lenet5_digits.onnx"), "--input", wrongShape,
                               "--output", scratch.appendingPathComponent("o.npy").path])
        XCTAssertNotEqual(run.status, 0)
        XCTAssertTrue(run.stderr.contains("wrong.npy") && run.stderr.contains("[2, 3, 32, 32]"), run.stderr)

        let notImage = scratch.appendingPathComponent("photo.jpg").path
        try Data("not a jpeg".utf8).write(to: URL(fileURLWithPath: notImage))
        let predict = try CLI.run(["predict", "--weights", CLI.fixture("lenet/lenet5_digits.onnx"), notImage])
        XCTAssertNotEqual(predict.status, 0)
        XCTAssertTrue(predict.stderr.contains("photo.jpg") && predict.stderr.contains("not a JPEG or PNG"), predict.stderr)

        let mismatch = try CLI.run(["run", "--weights", CLI.fixture("lenet/lenet5_digits.onnx"), "--arch", "alexnet",
                                    "--input", CLI.fixture("lenet/input_batch8.npy"), "--output", scratch.appendingPathComponent("x.npy").path])
        XCTAssertEqual(mismatch.status, 1)
        XCTAssertTrue(mismatch.stderr.contains("verdict: NOT OK"), mismatch.stderr)
    }

    /// A batch that cannot fit is refused before anything is allocated.
    func testHugeBatchIsRefusedUpFront() throws {
        let vgg = try ArchitectureRegistry.find("vgg16").resolve()
        XCTAssertNoThrow(try Network.checkMemory(vgg, batch: 8, available: 24 << 30))
        XCTAssertThrowsError(try Network.checkMemory(vgg, batch: 4096, available: 24 << 30)) { error in
            // The library names its parameter; `zoo` shows it as --batch.
            guard case ZooError.invalidParameter(let name, _)? = error as? ZooError else { return XCTFail("\(error)") }
            XCTAssertEqual(name, "batch")
            XCTAssertTrue("\(error)".contains("use a smaller batch"), "\(error)")
        }
    }

    func testBenchJSON() throws {
        let result = try CLI.run(["bench", "--weights", CLI.fixture("lenet/lenet5_digits.onnx"), "--batch", "8",
                                  "--iterations", "3", "--format", "json"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let json = try CLI.json(result)
        XCTAssertEqual(json["batch"] as? Int, 8)
        XCTAssertGreaterThan(json["ms_per_batch"] as? Double ?? 0, 0)
        XCTAssertGreaterThan(json["images_per_second"] as? Double ?? 0, 0)
        XCTAssertEqual(json["convolutions"] as? String, "winograd")
        let direct = try CLI.run(["bench", "--weights", CLI.fixture("lenet/lenet5_digits.onnx"), "--iterations", "2",
                                  "--convolutions", "direct", "--format", "json"])
        XCTAssertEqual(try CLI.json(direct)["convolutions"] as? String, "direct", direct.stderr)
        let bad = try CLI.run(["bench", "--weights", CLI.fixture("lenet/lenet5_digits.onnx"), "--convolutions", "fft"])
        XCTAssertEqual(bad.status, 64, bad.stderr)
    }
}
