import Foundation
import XCTest
import ModelZoo

/// The library as a Swift program uses it (no @testable): the five-line example runs, and
/// `Model` loads, reports, classifies, fine-tunes and saves.
final class LibraryTests: XCTestCase {
    /// Examples/FiveLines, the README's library section, built and run as a program.
    func testFiveLineExampleRuns() throws {
        let example = CLI.zooURL.deletingLastPathComponent().appendingPathComponent("zoo-example")
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("example-\(getpid()).safetensors").path
        defer { try? FileManager.default.removeItem(atPath: out) }
        let result = try Subprocess.run(example, [CLI.packageRoot.appendingPathComponent("Fixtures").path, out])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stdout.contains("lenet5: high, 0 problems"), result.stdout)
        XCTAssertTrue(result.stdout.contains("digit_3_0705.png: class 3"), result.stdout)
        XCTAssertTrue(result.stdout.contains(#"new head for ["5", "6", "7", "8", "9"]"#), result.stdout)
        let saved = try Model.load(out)
        XCTAssertEqual(saved.classNames, ["5", "6", "7", "8", "9"])
        XCTAssertEqual(saved.network.classes, 5)
    }

    func testModelCarriesTypedVerificationPresetAndProvenance() throws {
        let path = CLI.fixture("lenet/lenet5_digits.onnx")
        let model = try Model.load(path)
        XCTAssertEqual(model.architecture.id, "lenet5")
        XCTAssertEqual(model.verification.confidence, .high)
        XCTAssertTrue(model.verification.problems.isEmpty)
        XCTAssertEqual(model.preset.preprocessing, .grayscaleUnit)
        XCTAssertEqual(model.preset.inputSize, Size2(32))
        XCTAssertEqual(model.provenance.format, .onnx)
        let top = try model.classify(URL(fileURLWithPath: CLI.fixture("digits_samples/digit_7_1496.png")), top: 1)
        XCTAssertEqual(top.first?.index, 7)
        // Logits through the library equal onnxruntime's for the committed batch.
        let x = try NPY.read(path: CLI.fixture("lenet/input_batch8.npy"))
        let expected = try NPY.read(path: CLI.fixture("lenet/logits_batch8_onnxruntime.npy"))
        let logits = try model.logits(x)
        let scale = expected.data.map { abs($0) }.max() ?? 1
        XCTAssertLessThan(zip(logits.data, expected.data).map { abs($0 - $1) }.max() ?? 1, 1e-5 * scale)
    }

    func testFailedVerificationThrowsWithTheReport() throws {
        XCTAssertThrowsError(try Model.load(CLI.fixture("naming/lenet5_missing_bias.h5"))) { error in
            guard let failed = error as? ModelLoader.VerificationFailed else { return XCTFail("\(error)") }
            XCTAssertTrue(failed.report.problems.contains { $0.kind == .missing && $0.canonical == "fc2.bias" },
                          "\(failed.report.problems)")
        }
    }

    func testSaveRefusesToOverwriteItsSource() throws {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("save-\(getpid()).safetensors").path
        try? FileManager.default.removeItem(atPath: scratch)
        try FileManager.default.copyItem(atPath: CLI.fixture("lenet/lenet5_digits.safetensors"), toPath: scratch)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let model = try Model.load(scratch)
        XCTAssertThrowsError(try model.save(scratch))
        let copy = scratch + ".onnx"
        defer { try? FileManager.default.removeItem(atPath: copy) }
        try model.save(copy)
        XCTAssertEqual(try Model.load(copy).weights["fc3.bias"]?.data, model.weights["fc3.bias"]?.data)
    }

    /// Fine-tuning in memory: nothing appears beside the source file, the tuned model is
    /// verified like a loaded file, keeps the source's preset, and what it computes is what
    /// its saved file computes.
    func testFinetunedInMemoryMatchesItsSavedFile() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tune-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let source = dir.appendingPathComponent("lenet.onnx").path
        try FileManager.default.copyItem(atPath: CLI.fixture("lenet/lenet5_digits04.onnx"), toPath: source)
        let model = try Model.load(source)
        var lines: [String] = []
        let tuned = try model.finetuned(on: ImageFolderSource(CLI.fixture("digits59")), progress: { lines.append($0) })
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["lenet.onnx"])
        XCTAssertFalse(lines.isEmpty)
        XCTAssertEqual(tuned.classNames, ["5", "6", "7", "8", "9"])
        XCTAssertEqual(tuned.network.classes, 5)
        XCTAssertEqual(tuned.verification.confidence, .high)
        XCTAssertEqual(tuned.preset, model.preset)
        XCTAssertEqual(tuned.weights["conv1.weight"]?.data, model.weights["conv1.weight"]?.data, "the backbone is frozen")
        let saved = dir.appendingPathComponent("tuned.onnx").path
        try tuned.save(saved)
        let reloaded = try Model.load(saved)
        XCTAssertEqual(reloaded.classNames, tuned.classNames)
        let x = try NPY.read(path: CLI.fixture("lenet/input_batch8.npy"))
        XCTAssertEqual(try reloaded.logits(x).data, try tuned.logits(x).data)
    }

    /// One rule decides "this would overwrite the input" for convert, finetune and save: the
    /// same path spelt differently, a symbolic link and a hard link are all the input.
    func testOneOverwriteRuleCoversLinks() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("links-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let input = dir.appendingPathComponent("in.safetensors").path
        try FileManager.default.copyItem(atPath: CLI.fixture("lenet/lenet5_digits.safetensors"), toPath: input)
        let symlink = dir.appendingPathComponent("sym.safetensors").path
        let hardlink = dir.appendingPathComponent("hard.safetensors").path
        try FileManager.default.createSymbolicLink(atPath: symlink, withDestinationPath: input)
        XCTAssertEqual(link(input, hardlink), 0)
        for alias in [dir.path + "/./in.safetensors", symlink, hardlink] {
            XCTAssertTrue(OutputTarget.sameFile(input, alias), alias)
        }
        XCTAssertFalse(OutputTarget.sameFile(input, dir.appendingPathComponent("other.safetensors").path))
        let model = try Model.load(input)
        XCTAssertThrowsError(try model.save(hardlink)) { error in
            guard case ZooError.invalidParameter(let name, _)? = error as? ZooError else { return XCTFail("\(error)") }
            XCTAssertEqual(name, "path")
        }
    }

    /// The library names its own parameters; the command line renders them as flags.
    func testParameterErrorsNameLibraryParametersAndRenderAsFlags() {
        let error = ZooError.invalidParameter(name: "trainLast", message: "{trainLast} 2 needs {optimizer} sgd")
        XCTAssertEqual(error.description, "trainLast 2 needs optimizer sgd")
        XCTAssertEqual(error.rendered { "--" + $0.lowercased() }, "--trainlast 2 needs --optimizer sgd")
    }
}
