import XCTest

/// `zoo inspect` and `zoo verify` as users run them: output, JSON keys, exit codes.
final class InspectVerifyCLITests: XCTestCase {
    func testInspectONNX() throws {
        let result = try CLI.run(["inspect", CLI.fixture("lenet/lenet5_digits.onnx"), "--format", "json"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let json = try CLI.json(result)
        XCTAssertEqual(json["format"] as? String, "onnx")
        XCTAssertEqual(json["opset"] as? Int, 17)
        XCTAssertEqual((json["operators"] as? [String: Int])?["Conv"], 2)
        XCTAssertEqual(json["total_values"] as? Int, 61_706)
        let tensors = try XCTUnwrap(json["tensors"] as? [[String: Any]])
        XCTAssertEqual(tensors.first?["name"] as? String, "conv1.weight")
        XCTAssertEqual(tensors.first?["shape"] as? [Int], [6, 1, 5, 5])
        let text = try CLI.run(["inspect", CLI.fixture("lenet/lenet5_digits.h5")])
        XCTAssertTrue(text.stdout.contains("format: keras-h5"), text.stdout)
        XCTAssertTrue(text.stdout.contains("61,706 values"), text.stdout)
    }

    func testVerifyJSONAndExitCodes() throws {
        let ok = try CLI.run(["verify", CLI.fixture("lenet/lenet5_digits.weights.h5"), "--format", "json"])
        XCTAssertEqual(ok.status, 0, ok.stderr)
        let json = try CLI.json(ok)
        for key in ["file", "format", "architecture", "variant", "ok", "parameters", "expected_parameters", "problems"] {
            XCTAssertNotNil(json[key], key)
        }
        XCTAssertEqual(json["architecture"] as? String, "lenet5")
        XCTAssertEqual(json["ok"] as? Bool, true)
        XCTAssertEqual(json["parameters"] as? Int, 61_706)

        let wrong = try CLI.run(["verify", CLI.fixture("lenet/lenet5_digits.onnx"), "--arch", "alexnet", "--format", "json"])
        XCTAssertEqual(wrong.status, 1)
        let problems = try XCTUnwrap(try CLI.json(wrong)["problems"] as? [[String: Any]])
        XCTAssertFalse(problems.isEmpty)
        for key in ["tensor", "kind", "expected", "actual"] { XCTAssertNotNil(problems[0][key], key) }

        let text = try CLI.run(["verify", CLI.fixture("lenet/lenet5_digits.onnx"), "--arch", "lenet5-classic"])
        XCTAssertEqual(text.status, 1)
        XCTAssertTrue(text.stdout.contains("graph_mismatch"), text.stdout)
        XCTAssertTrue(text.stdout.contains("Tanh"), text.stdout)
    }

    /// Files that cannot be read at all: exit 2, a reason, never a crash.
    func testUnreadableFilesExitTwo() throws {
        let cases: [(String, String)] = [
            ("onnx/empty.onnx", "empty"), ("onnx/random.onnx", "not a valid onnx"), ("onnx/truncated.onnx", "truncated"),
            ("onnx/overflow_dims.onnx", "'huge'"), ("onnx/negative_dim.onnx", "negative dimension"),
            ("hdf5/empty.h5", "empty"), ("hdf5/random.h5", "not an hdf5"), ("hdf5/truncated.h5", "truncated"),
            ("safetensors/header_past_eof.safetensors", "header"), ("npy/truncated.npy", "truncated"),
        ]
        for (relative, phrase) in cases {
            let start = Date()
            let result = try CLI.run(["verify", CLI.fixture(relative)])
            XCTAssertEqual(result.status, 2, "\(relative): \(result.stderr)")
            XCTAssertTrue(result.stderr.contains("zoo: error: "), relative)
            if !phrase.isEmpty {
                XCTAssertTrue(result.stderr.lowercased().contains(phrase), "\(relative): \(result.stderr)")
            }
            XCTAssertLessThan(Date().timeIntervalSince(start), 5, relative)
        }
        let missing = try CLI.run(["inspect", "/nonexistent/model.onnx"])
        XCTAssertEqual(missing.status, 2)
        XCTAssertTrue(missing.stderr.contains("/nonexistent/model.onnx"), missing.stderr)
    }

    func testUnsafeExternalDataIsRefused() throws {
        let result = try CLI.run(["verify", CLI.fixture("onnx/external_parent.onnx")])
        XCTAssertEqual(result.status, 2)
        XCTAssertTrue(result.stderr.contains("'ext.first'") && result.stderr.contains(".."), result.stderr)
    }
}
