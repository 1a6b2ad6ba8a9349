import XCTest
@testable import ModelZoo

/// Caffe `.caffemodel` files in both layouts (Tools/make_caffe_fixtures.py): reading,
/// mapping onto the specs, forward passes against the script's Caffe-semantics reference,
/// conversion to ONNX run by onnxruntime, and broken files.
final class CaffeTests: XCTestCase {
    /// The fixtures' reduced widths, as specs: the released geometry, narrower.
    static let alexnet = Architecture.alexnetCaffe(grouped: true, widthDivisor: 8, hidden: 16, id: "alexnet-caffe-w8")
    static let vgg16 = Architecture.vgg(depth: 16, batchNorm: false, widthDivisor: 16, hidden: 16, id: "vgg16w16")
    static let googlenet = Architecture.googlenetCaffe(widthDivisor: 16, id: "googlenet-caffe-w16")
    static let resnet50 = Architecture.resnetCaffe(50, width: 2, id: "resnet50-caffe-w2")

    static let cases: [(file: String, spec: Architecture, size: Int, layout: CaffeNet.Layout)] = [
        ("alexnet_w8_v1", alexnet, 227, .v1),
        ("vgg16_w16_v1", vgg16, 224, .v1),
        ("googlenet_w16_v2", googlenet, 224, .v2),
        ("resnet50_w2_v2", resnet50, 224, .v2),
    ]

    var scratch: URL!

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("zoo-caffe-\(getpid())-\(name.hashValue)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: scratch)
    }

    /// The script's input: x[i] = ((i * 7919) % 1009 - 504) / 64, exact in float32.
    static func formulaInput(size: Int, batch: Int = 2) -> Tensor {
        let count = batch * 3 * size * size
        let data = (0..<count).map { Float(($0 * 7919) % 1009 - 504) / 64 }
        return Tensor(shape: [batch, 3, size, size], data: data)
    }

    func assertClose(_ actual: Tensor, _ expected: Tensor, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(actual.shape, expected.shape, what, file: file, line: line)
        let scale = expected.data.map { abs($0) }.max() ?? 1
        let diff = zip(actual.data, expected.data).map { abs($0 - $1) }.max() ?? .infinity
        XCTAssertLessThanOrEqual(diff, 1e-5 * scale, "\(what): max |diff| \(diff) against max |logit| \(scale)", file: file, line: line)
    }

    func testReadsBothLayouts() throws {
        for c in Self.cases {
            let file = try XCTUnwrap(try WeightFileOpener.open(path: CLI.fixture("caffe/\(c.file).caffemodel")) as? CaffeModelFile)
            XCTAssertEqual(file.format, .caffemodel)
            XCTAssertEqual(file.layout, c.layout, c.file)
            XCTAssertEqual(file.net.inputSize?.size, Size2(c.size), c.file)
            XCTAssertFalse(file.tensors.isEmpty)
            for record in file.tensors { XCTAssertEqual(try file.load(record.name).count, record.elementCount) }
        }
        // V1 releases keep the legacy 4-D blob shape; V2 files carry BlobShape.
        let alex = try XCTUnwrap(try WeightFileOpener.open(path: CLI.fixture("caffe/alexnet_w8_v1.caffemodel")) as? CaffeModelFile)
        XCTAssertEqual(alex.tensors.first { $0.name == "fc6[0]" }?.shape, [1, 1, 16, 1152])
        XCTAssertEqual(alex.net.transform?.meanValues, [104, 117, 123])
        XCTAssertEqual(alex.net.transform?.cropSize, 227)
        XCTAssertEqual(alex.net.inputSize?.source, "crop_size")
        let resnet = try XCTUnwrap(try WeightFileOpener.open(path: CLI.fixture("caffe/resnet50_w2_v2.caffemodel")) as? CaffeModelFile)
        XCTAssertEqual(resnet.tensors.first { $0.name == "bn_conv1[2]" }?.shape, [1])
        XCTAssertEqual(resnet.net.inputSize?.source, "Input layer 'input'")
        let pool1 = try XCTUnwrap(resnet.net.layers.first { $0.name == "pool1" }?.pooling)
        XCTAssertEqual(pool1.kernel, Size2(3)); XCTAssertEqual(pool1.pad, Size2(0)); XCTAssertTrue(pool1.ceil)
    }

    /// Every fixture verifies against its spec, paired by name, with what was set aside said.
    func testVerifiesAgainstSpecs() throws {
        for c in Self.cases {
            let file = try WeightFileOpener.open(path: CLI.fixture("caffe/\(c.file).caffemodel"))
            let (report, _) = try Verifier.verify(file, architecture: c.spec)
            XCTAssertTrue(report.ok, "\(c.file): \(report.problems.map { "\($0.kind.rawValue) \($0.tensor) \($0.expected) \($0.actual)" })")
            XCTAssertEqual(report.pairing, .byName)
            XCTAssertEqual(report.classes, 10)
        }
        let google = try WeightFileOpener.open(path: CLI.fixture("caffe/googlenet_w16_v2.caffemodel"))
        let (report, _) = try Verifier.verify(google, architecture: Self.googlenet)
        XCTAssertTrue(report.notes.contains { $0.hasPrefix("auxiliary classifiers set aside") && $0.contains("loss1/conv") && $0.contains("loss2/classifier") },
                      "\(report.notes)")
        XCTAssertTrue(report.notes.contains { $0.hasPrefix("training-time layers left out") && $0.contains("SoftmaxWithLoss") })
        // Each narrow file picks its own family among narrow specs of every family.
        let all = Self.cases.map(\.spec)
        for c in Self.cases {
            let file = try WeightFileOpener.open(path: CLI.fixture("caffe/\(c.file).caffemodel"))
            let scored = try all.map { spec in (spec.id, try Verifier.verify(file, architecture: spec, checkValues: false).0.problems.count) }
            XCTAssertEqual(scored.min { $0.1 < $1.1 }?.0, c.spec.id, "\(c.file): \(scored)")
        }
    }

    /// zoo's engine on the file's own geometry against the reference's logits, batch 2.
    func testForwardMatchesCaffeReference() throws {
        for c in Self.cases {
            let model = try ModelLoader.load(path: CLI.fixture("caffe/\(c.file).caffemodel"), spec: c.spec)
            XCTAssertEqual(model.network.input.h, c.size)
            // Caffe preprocessing whatever the spec's (VGG's is torchvision's), with the
            // file's mean values when its data layer has them.
            XCTAssertEqual(model.preset.preprocessing, .caffe, c.file)
            XCTAssertEqual(model.preset.meanBGR, c.file.hasPrefix("alexnet") || c.file.hasPrefix("googlenet") ? [104, 117, 123] : nil)
            let network = try Network(model.network, weights: model.weights, batch: 2)
            let logits = try network.forward(Self.formulaInput(size: c.size))
            assertClose(logits, try NPY.read(path: CLI.fixture("caffe/\(c.file)_logits.npy")), c.file)
        }
    }

    /// Written as ONNX (ceil_mode on the pools), run by onnxruntime: the same logits.
    func testConvertedONNXRunsInOnnxruntime() throws {
        let probe = try Python.run(["-c", "import onnxruntime, numpy"])
        guard probe.status == 0 else { throw XCTSkip("python3 with onnxruntime is not available") }
        for c in Self.cases {
            let model = try ModelLoader.load(path: CLI.fixture("caffe/\(c.file).caffemodel"), spec: c.spec)
            let onnx = scratch.appendingPathComponent(c.file + ".onnx").path
            _ = try ModelWriter.write(model.network, weights: model.weights, classNames: nil, to: onnx, format: .onnx,
                                      producer: "test")
            let x = scratch.appendingPathComponent(c.file + ".x.npy").path
            let y = scratch.appendingPathComponent(c.file + ".y.npy").path
            try NPY.write(Self.formulaInput(size: c.size), to: x)
            let run = try Python.run(["-c", """
                import sys, numpy as np, onnxruntime as ort
                s = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
                x = np.load(sys.argv[2])
                np.save(sys.argv[3], s.run(None, {s.get_inputs()[0].name: x})[0])
                """, onnx, x, y])
            XCTAssertEqual(run.status, 0, "\(c.file): \(run.stderr)")
            assertClose(try NPY.read(path: y), try NPY.read(path: CLI.fixture("caffe/\(c.file)_logits.npy")), c.file + " onnxruntime")
            if c.file.hasPrefix("googlenet") || c.file.hasPrefix("resnet") {
                let text = try String(contentsOfFile: onnx, encoding: .isoLatin1)
                XCTAssertTrue(text.contains("ceil_mode"), c.file)
            }
        }
    }

    func testCaffeNames() {
        XCTAssertEqual(CaffeGrouping.parseResNetName("res4b22_branch2a")?.block, 22)
        XCTAssertEqual(CaffeGrouping.parseResNetName("bn3a_branch1")?.stage, 3)
        XCTAssertEqual(CaffeGrouping.parseResNetName("scale5c_branch2c")?.block, 2)
        XCTAssertNil(CaffeGrouping.parseResNetName("res4b22"))
        XCTAssertNil(CaffeGrouping.parseResNetName("conv1"))
        XCTAssertTrue(CaffeGrouping.isVGGConvName("conv5_3"))
        XCTAssertFalse(CaffeGrouping.isVGGConvName("conv1"))
    }

    func testResNetCaffeSpec() throws {
        let net = try Architecture.resnetCaffe(50).resolve()
        let conv1 = try XCTUnwrap(net.layer(named: "conv1"))
        XCTAssertTrue(conv1.parameters.contains { $0.role == .bias })
        XCTAssertFalse(try XCTUnwrap(net.layer(named: "layer1.0.conv1")).parameters.contains { $0.role == .bias })
        guard case .conv(let c) = try XCTUnwrap(net.layer(named: "layer2.0.conv1")).layer.op,
              case .conv(let c3) = try XCTUnwrap(net.layer(named: "layer2.0.conv2")).layer.op else { return XCTFail() }
        XCTAssertEqual(c.stride, Size2(2)); XCTAssertEqual(c3.stride, Size2(1))
        XCTAssertEqual(try XCTUnwrap(net.layer(named: "maxpool")).output.h, 56)
        XCTAssertEqual(net.totalParameters, 25_557_032 + 64)
        XCTAssertNoThrow(try ArchitectureRegistry.find("resnet152-caffe"))
    }

    /// Broken files exit 2 naming the layer, and never crash.
    func testBrokenFilesExit2NamingTheLayer() throws {
        let expectations = [
            ("truncated.caffemodel", "truncated or corrupt after"),
            ("blob_count_mismatch.caffemodel", "layer 'conv1': blob conv1[0]: holds 100 values but its shape [4, 3, 3, 3] needs 108"),
            ("unknown_v1_type.caffemodel", "layer 'relu1' has V1 type number 77"),
            ("cycle.caffemodel", "layer 'conv1' reads blob 'fc', which only the later layer 'fc' writes"),
        ]
        let input = scratch.appendingPathComponent("x.npy").path
        try NPY.write(Tensor(zeros: [1, 3, 8, 8]), to: input)
        for (name, phrase) in expectations {
            for command in [["inspect"], ["verify"], ["run", "--input", input, "--output",
                                                       scratch.appendingPathComponent("out.npy").path, "--weights"]] {
                let result = try CLI.run(command + [CLI.fixture("caffe/" + name)])
                XCTAssertEqual(result.status, 2, "\(command) \(name): \(result.stderr)")
                XCTAssertTrue(result.stderr.contains(phrase), "\(name): \(result.stderr)")
            }
        }
    }

    func testInspectCLI() throws {
        let result = try CLI.run(["inspect", CLI.fixture("caffe/googlenet_w16_v2.caffemodel")])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stdout.contains("format: caffemodel"))
        XCTAssertTrue(result.stdout.contains("layout: V2"))
        XCTAssertTrue(result.stdout.contains("layer loss1/conv: Convolution, blobs 8x32x1x1 + 8"), result.stdout)
        let v1 = try CLI.run(["inspect", CLI.fixture("caffe/vgg16_w16_v1.caffemodel")])
        XCTAssertTrue(v1.stdout.contains("layout: V1"))
        XCTAssertTrue(v1.stdout.contains("input: 3x224x224 (from input_dim)"), v1.stdout)
    }
}
