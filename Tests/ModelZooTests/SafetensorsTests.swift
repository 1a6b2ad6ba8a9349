import XCTest
@testable import ModelZoo

final class SafetensorsTests: XCTestCase {
    private func fixture(_ name: String) -> String { FormatFixtures.path("safetensors", name) }

    private var scratch: URL!

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("zoo-st-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDown() {
        try? FileManager.default.removeItem(at: scratch)
    }

    func testReadsFileWrittenBySafetensorsNumpy() throws {
        let file = try SafetensorsFile(path: fixture("model.safetensors"))
        XCTAssertEqual(file.format, .safetensors)
        XCTAssertEqual(file.metadata, ["format": "np", "source": "fixture"])
        XCTAssertEqual(file.producer, "numpy")
        XCTAssertEqual(Set(file.tensors.map(\.name)), ["conv.weight", "conv.bias", "fc.weight", "scalar", "steps"])
        var expected = try FormatFixtures.expected("safetensors", "model.safetensors")
        XCTAssertEqual(file.tensors.first { $0.name == "steps" }?.dtype, .int64)
        expected["steps"] = nil
        try FormatFixtures.assertMatches(file, expected)
        FormatFixtures.assertThrows(try file.load("steps"), containing: ["steps", "int64"])
    }

    func testBFloat16Widens() throws {
        let file = try SafetensorsFile(path: fixture("bf16.safetensors"))
        try FormatFixtures.assertMatches(file, try FormatFixtures.expected("safetensors", "bf16.safetensors"))
    }

    func testMalformedHeadersAreRefusedWithTheTensorNamed() {
        FormatFixtures.assertThrows(try SafetensorsFile(path: fixture("header_past_eof.safetensors")),
                                    containing: ["header length 1000000", "past the end"])
        FormatFixtures.assertThrows(try SafetensorsFile(path: fixture("offsets_outside.safetensors")),
                                    containing: ["'b'", "outside the 24 bytes of data"])
        FormatFixtures.assertThrows(try SafetensorsFile(path: fixture("wrong_dtype_size.safetensors")),
                                    containing: ["'a'", "needs 12 bytes", "hold 24"])
        FormatFixtures.assertThrows(try SafetensorsFile(path: fixture("overlapping.safetensors")),
                                    containing: ["'a'", "'b'", "overlap"])
        FormatFixtures.assertThrows(try SafetensorsFile(path: FormatFixtures.path("hdf5", "empty.h5")),
                                    containing: ["too short"])
    }

    func testWriterRoundTripsThroughOurReaderAndThePythonPackage() throws {
        let path = scratch.appendingPathComponent("out.safetensors").path
        let tensors: [(name: String, tensor: Tensor)] = [
            ("fc.weight", Tensor(shape: [2, 3], data: [1, -2, 3.5, 0, 1e-8, -7])),
            ("fc.bias", Tensor(shape: [2], data: [0.25, -0.5])),
            ("odd \"name\"", Tensor(shape: [], data: [42])),
        ]
        try SafetensorsWriter.write(tensors, metadata: ["format": "pt", "note": "line\nbreak"], to: path)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        let headerLength = bytes.prefix(8).reversed().reduce(0) { $0 << 8 | Int($1) }
        XCTAssertEqual(headerLength % 8, 0, "header is padded to 8 bytes")
        XCTAssertEqual(bytes.count, 8 + headerLength + 9 * 4)

        let file = try SafetensorsFile(path: path)
        XCTAssertEqual(file.tensors.map(\.name), tensors.map(\.name))
        XCTAssertEqual(file.metadata["note"], "line\nbreak")
        for (name, tensor) in tensors { XCTAssertEqual(try file.load(name), tensor) }

        // The temporary file is gone and nothing else was left beside the target.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: scratch.path), ["out.safetensors"])

        let script = """
        import sys
        from safetensors.numpy import load_file
        from safetensors import safe_open
        t = load_file(sys.argv[1])
        print(t["fc.weight"].dtype, t["fc.weight"].shape, t["fc.weight"].ravel().tolist(), t['odd "name"'].tolist())
        print(safe_open(sys.argv[1], "np").metadata()["format"])
        """
        guard let output = try runPython(script, arguments: [path]) else {
            throw XCTSkip("python3 with safetensors is not available")
        }
        XCTAssertEqual(output, "float32 (2, 3) [1.0, -2.0, 3.5, 0.0, 9.99999993922529e-09, -7.0] 42.0\npt\n")
    }

    func testWriterRefusesDuplicateNamesAndLeavesTargetUntouched() throws {
        let path = scratch.appendingPathComponent("keep.safetensors").path
        try Data("original".utf8).write(to: URL(fileURLWithPath: path))
        let tensor = Tensor(shape: [1], data: [1])
        FormatFixtures.assertThrows(try SafetensorsWriter.write([("a", tensor), ("a", tensor)], to: path),
                                    containing: ["'a'", "used twice"])
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "original")
    }
}

/// Runs `python3 -c script args`; nil when python3 or a module it imports is missing.
func runPython(_ script: String, arguments: [String]) throws -> String? {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["python3", "-c", script] + arguments
    let output = Pipe()
    process.standardOutput = output
    process.standardError = Pipe()
    do { try process.run() } catch { return nil }
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else { return nil }
    return String(decoding: data, as: UTF8.self)
}
