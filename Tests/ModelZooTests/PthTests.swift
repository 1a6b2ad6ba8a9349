import Foundation
import XCTest
import ZIPFoundation
@testable import ModelZoo

/// PyTorch `.pth` files as torch.save writes them (Tools/make_pth_fixtures.py), and as
/// `zoo convert` writes them.
final class PthTests: XCTestCase {
    /// torchvision's ResNet18 at base width 2, as the fixture script builds it.
    static let resnet18w2 = Architecture.resnet(
        depth: 18, id: "resnet18w2", variant: "torchvision at 1/32 width", stride: .on3x3, convBias: false,
        epsilon: 1e-5, published: nil, aliases: [], preprocessing: .torchvision, width: 2)

    private func fixture(_ name: String) -> String { CLI.fixture("pth/" + name) }

    private var scratch: URL!

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("zoo-pth-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDown() {
        try? FileManager.default.removeItem(at: scratch)
    }

    /// Every tensor of `file` has the twin's name, shape, dtype and, for floats, values.
    private func assertSameTensors(_ file: WeightFile, _ twin: WeightFile, rename: (String) -> String = { $0 },
                                   line: UInt = #line) throws {
        XCTAssertEqual(file.tensors.count, twin.tensors.count, line: line)
        let twinRecords = Dictionary(uniqueKeysWithValues: twin.tensors.map { ($0.name, $0) })
        for record in file.tensors {
            let other = try XCTUnwrap(twinRecords[rename(record.name)], "\(record.name) not in the twin", line: line)
            XCTAssertEqual(record.shape, other.shape, record.name, line: line)
            XCTAssertEqual(record.dtype, other.dtype, record.name, line: line)
            if record.dtype.convertsToFloat32 {
                XCTAssertEqual(try file.load(record.name), try twin.load(other.name), record.name, line: line)
            }
        }
    }

    func testZipAndLegacyLayoutsEqualTheSafetensorsTwin() throws {
        let twin = try SafetensorsFile(path: fixture("resnet18w2.safetensors"))
        for name in ["resnet18w2.pth", "resnet18w2_legacy.pth"] {
            let file = try WeightFileOpener.open(path: fixture(name))
            XCTAssertEqual(file.format, .pth, name)
            let pth = try XCTUnwrap(file as? PthFile)
            XCTAssertEqual(pth.layout, name.contains("legacy") ? .legacy : .zip)
            XCTAssertNil(pth.weightsKey)
            // The state_dict's own order, not sorted: features/layer order as torch keeps it.
            XCTAssertEqual(file.tensors.first?.name, "conv1.weight")
            XCTAssertEqual(file.tensors.first { $0.name == "bn1.num_batches_tracked" }?.dtype, .int64)
            FormatFixtures.assertThrows(try file.load("bn1.num_batches_tracked"), containing: ["bn1.num_batches_tracked", "int64"])
            try assertSameTensors(file, twin)
        }
        try assertSameTensors(try WeightFileOpener.open(path: fixture("lenet5_digits.pth")),
                              try SafetensorsFile(path: CLI.fixture("lenet/lenet5_digits.safetensors")))
    }

    func testCheckpointIsFoundUnderStateDictWithItsPrefixAndEntries() throws {
        let file = try XCTUnwrap(try WeightFileOpener.open(path: fixture("resnet18w2_checkpoint.pth")) as? PthFile)
        XCTAssertEqual(file.weightsKey, "state_dict")
        XCTAssertTrue(file.tensors.allSatisfy { $0.name.hasPrefix("module.") })
        XCTAssertEqual(file.tensors.count, 122)
        let entries = Dictionary(uniqueKeysWithValues: file.otherEntries)
        XCTAssertEqual(entries, ["epoch": "7", "arch": "resnet18w2", "best_acc1": "71.5"])
        // float16 in the file, widened exactly.
        let twin = try SafetensorsFile(path: fixture("resnet18w2.safetensors"))
        XCTAssertEqual(file.tensors.first { $0.name == "module.fc.weight" }?.dtype, .float16)
        let widened = try file.load("module.fc.weight").data
        let expected = try twin.load("fc.weight").data.map { Float(Float16($0)) }
        XCTAssertEqual(widened, expected)

        let inspect = try CLI.run(["inspect", fixture("resnet18w2_checkpoint.pth")])
        XCTAssertEqual(inspect.status, 0, inspect.stderr)
        for line in ["format: pth", "weights: under 'state_dict', 122 tensors, keys prefixed 'module.'",
                     "entry epoch: 7", "entry arch: resnet18w2", "entry best_acc1: 71.5", "module.layer4.1.bn2.running_var"] {
            XCTAssertTrue(inspect.stdout.contains(line), "no '\(line)' in\n\(inspect.stdout)")
        }
        // The mapping layer strips the DataParallel prefix: it verifies as the network.
        let report = try Verifier.verify(file, architecture: Self.resnet18w2).0
        XCTAssertTrue(report.ok, "\(report.problems.prefix(3))")
    }

    func testResNetRunsWithinTorchLogits() throws {
        let input = try NPY.read(path: CLI.fixture("torch/input_2x3x64x64.npy"))
        let expected = try NPY.read(path: fixture("logits_resnet18w2_torch.npy"))
        let net = try Self.resnet18w2.resolve(classes: 10, inputSize: Size2(64))
        for name in ["resnet18w2.pth", "resnet18w2_legacy.pth"] {
            let file = try WeightFileOpener.open(path: fixture(name))
            let (report, mapping) = try Verifier.verify(file, architecture: Self.resnet18w2)
            XCTAssertTrue(report.ok, "\(name): \(report.problems.prefix(3))")
            let weights = try XCTUnwrap(mapping).loadWeights(from: file)
            let logits = try Network(net, weights: weights, batch: 2).forward(input)
            XCTAssertEqual(logits.shape, [2, 10])
            let difference = zip(logits.data, expected.data).map { abs($0 - $1) }.max() ?? .infinity
            XCTAssertLessThanOrEqual(difference, 1e-5, name)
        }
    }

    func testLeNetVerifiesAndRunsThroughTheCommandLine() throws {
        let verify = try CLI.run(["verify", fixture("lenet5_digits.pth")])
        XCTAssertEqual(verify.status, 0, verify.stdout + verify.stderr)
        XCTAssertTrue(verify.stdout.contains("format: pth"))
        XCTAssertTrue(verify.stdout.contains("verdict: OK"))
        let out = scratch.appendingPathComponent("logits.npy").path
        let run = try CLI.run(["run", "--weights", fixture("lenet5_digits.pth"),
                               "--input", CLI.fixture("lenet/input_batch8.npy"), "--output", out])
        XCTAssertEqual(run.status, 0, run.stderr)
        let logits = try NPY.read(path: out)
        let expected = try NPY.read(path: CLI.fixture("lenet/logits_batch8_onnxruntime.npy"))
        XCTAssertEqual(logits.shape, expected.shape)
        XCTAssertLessThanOrEqual(zip(logits.data, expected.data).map { abs($0 - $1) }.max() ?? .infinity, 1e-5)
    }

    func testUnsafePicklesAreRefusedWithExitStatus2() throws {
        let cases = [
            ("malicious_system.pth", ["refused global 'posix.system'"]),
            ("resnet18w1_module.pth", ["'torchvision.models.resnet.ResNet'", "model.state_dict()"]),
            ("truncated.pth", ["truncated"]),
        ]
        for (name, fragments) in cases {
            FormatFixtures.assertThrows(try WeightFileOpener.open(path: fixture(name)), containing: fragments)
            for command in [["inspect", fixture(name)], ["verify", fixture(name)],
                            ["run", "--weights", fixture(name), "--input", CLI.fixture("lenet/input_batch8.npy"),
                             "--output", scratch.appendingPathComponent("x.npy").path]] {
                let result = try CLI.run(command)
                XCTAssertEqual(result.status, 2, "\(command): \(result.stderr)")
                for fragment in fragments + [name] {
                    XCTAssertTrue(result.stderr.contains(fragment), "\(command): '\(fragment)' not in \(result.stderr)")
                }
                XCTAssertFalse(result.stdout.contains("pwned"))
            }
        }
    }

    /// Hand-made pickles: each malformed one stops with a message, none crashes or allocates
    /// what its lengths claim.
    func testUnpicklerRefusesMalformedPickles() {
        func unpickle(_ bytes: [UInt8]) throws -> PickleValue {
            var unpickler = Unpickler(path: "x.pth", bytes: bytes)
            return try unpickler.load()
        }
        let proto: [UInt8] = [0x80, 0x02]
        FormatFixtures.assertThrows(try unpickle(proto + [0x7D, 0xFF, 0x2E]), containing: ["opcode 0xff", "offset 3"])
        FormatFixtures.assertThrows(try unpickle(proto + [0x7D]), containing: ["truncated"])
        // BINUNICODE claiming 4 GB.
        FormatFixtures.assertThrows(try unpickle(proto + [0x58, 0xFF, 0xFF, 0xFF, 0xFF, 0x61]),
                                    containing: ["length of 4294967295", "runs past the end"])
        FormatFixtures.assertThrows(try unpickle(proto + [0x68, 0x07, 0x2E]), containing: ["memo 7"])
        FormatFixtures.assertThrows(try unpickle(proto + [0x29] + [UInt8](repeating: 0x85, count: 500) + [0x2E]),
                                    containing: ["nested more than"])
        // The global is refused when it is read, before the REDUCE that would call it.
        FormatFixtures.assertThrows(try unpickle(proto + Array("cbuiltins\neval\n".utf8) + [0x58, 1, 0, 0, 0, 0x31, 0x85, 0x52, 0x2E]),
                                    containing: ["refused global 'builtins.eval'"])
        FormatFixtures.assertThrows(try unpickle(proto + [0x7D, 0x4B, 0x01, 0x52, 0x2E]), containing: ["REDUCE of dict"])
        XCTAssertNoThrow(try unpickle(proto + [0x7D, 0x58, 1, 0, 0, 0, 0x61, 0x4B, 0x05, 0x73, 0x2E]))
    }

    /// Writes a one-tensor `.pth` through our own writers, with its pickle and data patched.
    private func writeBroken(_ name: String, pickle patch: ([UInt8]) -> [UInt8], dataBytes: Int) throws -> String {
        var pickle = PickleWriter()
        pickle.beginStateDict()
        pickle.tensor(name: "w", storageType: "FloatStorage", key: "0", shape: [2, 3])
        pickle.endStateDict()
        let path = scratch.appendingPathComponent(name).path
        try AtomicFileWriter.write(to: path) { file in
            var zip = AlignedZipWriter(file)
            try zip.add("archive/data.pkl", bytes: patch(pickle.bytes))
            try zip.add("archive/data/0", bytes: [UInt8](repeating: 0, count: dataBytes))
            try zip.add("archive/version", bytes: Array("3\n".utf8))
            try zip.finish()
        }
        return path
    }

    private func replacing(_ bytes: [UInt8], _ old: [UInt8], _ new: [UInt8]) -> [UInt8] {
        for i in 0...(bytes.count - old.count) where Array(bytes[i..<(i + old.count)]) == old {
            return Array(bytes[..<i]) + new + Array(bytes[(i + old.count)...])
        }
        XCTFail("pattern \(old) not found")
        return bytes
    }

    func testStoragesShorterThanTensorsAndStridedViewsAreRefused() throws {
        let fine = try writeBroken("fine.pth", pickle: { $0 }, dataBytes: 24)
        XCTAssertEqual(try PthFile(path: fine).load("w"), Tensor(shape: [2, 3], data: [0, 0, 0, 0, 0, 0]))
        let short = try writeBroken("short.pth", pickle: { $0 }, dataBytes: 20)
        FormatFixtures.assertThrows(try PthFile(path: short), containing: ["'w'", "run past its storage '0'"])
        // Storage offset 1: six elements from the second run past the six there are.
        let offset = try writeBroken("offset.pth", pickle: { self.replacing($0, [0x51, 0x4B, 0x00], [0x51, 0x4B, 0x01]) },
                                     dataBytes: 24)
        FormatFixtures.assertThrows(try PthFile(path: offset), containing: ["'w'", "offset 1"])
        // Strides (1, 2): the transpose of a 3x2 tensor.
        let strided = try writeBroken("strided.pth", pickle: { self.replacing($0, [0x4B, 3, 0x4B, 1, 0x86], [0x4B, 1, 0x4B, 2, 0x86]) },
                                      dataBytes: 24)
        FormatFixtures.assertThrows(try PthFile(path: strided), containing: ["'w'", "not row-major contiguous"])
        let result = try CLI.run(["inspect", strided])
        XCTAssertEqual(result.status, 2, result.stderr)
    }

    /// Zips torch did not write: a deflated pickle is read, deflated tensor data is refused
    /// (it cannot be read in place), a legacy file cut short says so.
    func testRezippedAndTruncatedFiles() throws {
        let deflatedPickle = scratch.appendingPathComponent("pickle_deflated.pth").path
        let allDeflated = scratch.appendingPathComponent("all_deflated.pth").path
        let script = """
        import sys, zipfile
        source = zipfile.ZipFile(sys.argv[1])
        for out, everything in ((sys.argv[2], False), (sys.argv[3], True)):
            with zipfile.ZipFile(out, "w") as z:
                for info in source.infolist():
                    deflate = everything or info.filename.endswith("data.pkl")
                    z.writestr(info.filename, source.read(info), zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED)
        """
        let made = try Python.run(["-c", script, fixture("resnet18w2.pth"), deflatedPickle, allDeflated])
        if made.status == 0 {
            try assertSameTensors(try WeightFileOpener.open(path: deflatedPickle),
                                  try SafetensorsFile(path: fixture("resnet18w2.safetensors")))
            FormatFixtures.assertThrows(try WeightFileOpener.open(path: allDeflated), containing: ["is compressed (method 8)"])
        }
        let legacy = try Data(contentsOf: URL(fileURLWithPath: fixture("resnet18w2_legacy.pth")))
        for cut in [100, legacy.count / 2, legacy.count - 1] {
            let path = scratch.appendingPathComponent("legacy_\(cut).pth").path
            try legacy.prefix(cut).write(to: URL(fileURLWithPath: path))
            FormatFixtures.assertThrows(try WeightFileOpener.open(path: path), containing: ["truncated"])
        }
    }

    func testConvertWritesAZipThatReadsBackEqual() throws {
        let out = scratch.appendingPathComponent("lenet.pth").path
        let result = try CLI.run(["convert", CLI.fixture("lenet/lenet5_digits.onnx"), out, "--check"])
        XCTAssertEqual(result.status, 0, result.stdout + result.stderr)
        XCTAssertTrue(result.stdout.contains("(pth)"), result.stdout)
        let file = try XCTUnwrap(try WeightFileOpener.open(path: out) as? PthFile)
        XCTAssertEqual(file.layout, .zip)
        XCTAssertEqual(file.tensors.map(\.name).prefix(2), ["conv1.weight", "conv1.bias"])
        try assertSameTensors(file, try SafetensorsFile(path: CLI.fixture("lenet/lenet5_digits.safetensors")))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: scratch.path), ["lenet.pth"])

        // Another reader of the same archive: every entry stored, every CRC right, every
        // tensor's data 64-byte aligned.
        let archive = try Archive(url: URL(fileURLWithPath: out), accessMode: .read)
        var names: [String] = []
        for entry in archive {
            names.append(entry.path)
            XCTAssertFalse(entry.isCompressed)
            _ = try archive.extract(entry, skipCRC32: false) { _ in }
        }
        XCTAssertEqual(names.first, "archive/data.pkl")
        XCTAssertEqual(names.filter { $0.hasPrefix("archive/data/") }.count, 10)
        let directory = try ZipDirectory(file: try ReadOnlyFile(path: out))
        for entry in directory.entries where entry.name.hasPrefix("archive/data/") {
            XCTAssertEqual(try directory.dataOffset(of: entry) % 64, 0, entry.name)
        }
    }

    /// torch itself reads what we write: `torch.load(weights_only=True)` and a torchvision
    /// ResNet's `load_state_dict(strict=True)`, BatchNorm counters included.
    func testTorchLoadsWhatWeWrite() throws {
        guard let probe = try? Python.run(["-c", "import torch, torchvision, safetensors"]), probe.status == 0 else {
            throw XCTSkip("python3 with torch, torchvision and safetensors is not available")
        }
        let lenet = scratch.appendingPathComponent("lenet.pth").path
        XCTAssertEqual(try CLI.run(["convert", CLI.fixture("lenet/lenet5_digits.onnx"), lenet]).status, 0)
        let twin = try WeightFileOpener.open(path: fixture("resnet18w2.safetensors"))
        let (_, mapping) = try Verifier.verify(twin, architecture: Self.resnet18w2)
        let net = try Self.resnet18w2.resolve(classes: 10, inputSize: Size2(64))
        let resnet = scratch.appendingPathComponent("resnet.pth").path
        _ = try ModelWriter.write(net, weights: try XCTUnwrap(mapping).loadWeights(from: twin), classNames: nil,
                                  to: resnet, format: .pth, producer: "test")
        let script = """
        import sys, torch, numpy as np
        from safetensors.torch import load_file
        sys.path.insert(0, sys.argv[5])
        lenet = torch.load(sys.argv[1], weights_only=True)
        want = load_file(sys.argv[2])
        assert list(lenet) == [k for k in lenet], "keys"
        assert set(lenet) == set(want), sorted(set(lenet) ^ set(want))
        print("lenet", max(float((lenet[k] - want[k]).abs().max()) for k in want))
        from torchvision.models.resnet import BasicBlock, ResNet
        m = ResNet(BasicBlock, [2, 2, 2, 2], num_classes=10)
        w = 2
        m.inplanes = w
        m.conv1 = torch.nn.Conv2d(3, w, 7, 2, 3, bias=False); m.bn1 = torch.nn.BatchNorm2d(w)
        m.layer1 = m._make_layer(BasicBlock, w, 2); m.layer2 = m._make_layer(BasicBlock, 2 * w, 2, stride=2)
        m.layer3 = m._make_layer(BasicBlock, 4 * w, 2, stride=2); m.layer4 = m._make_layer(BasicBlock, 8 * w, 2, stride=2)
        m.fc = torch.nn.Linear(8 * w, 10)
        m.load_state_dict(torch.load(sys.argv[3], weights_only=True), strict=True)
        x = torch.from_numpy(np.load(sys.argv[4]))
        with torch.no_grad():
            print("resnet", float((m.eval()(x) - torch.from_numpy(np.load(sys.argv[6]))).abs().max()))
        """
        let run = try Python.run(["-c", script, lenet, CLI.fixture("lenet/lenet5_digits.safetensors"), resnet,
                                  CLI.fixture("torch/input_2x3x64x64.npy"), CLI.packageRoot.path,
                                  fixture("logits_resnet18w2_torch.npy")])
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertTrue(run.stdout.contains("lenet 0.0\n"), run.stdout)
        let resnetLine = try XCTUnwrap(run.stdout.split(separator: "\n").first { $0.hasPrefix("resnet ") })
        XCTAssertLessThanOrEqual(Double(resnetLine.dropFirst("resnet ".count)) ?? 1, 1e-6, run.stdout)
    }
}
