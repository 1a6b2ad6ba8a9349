import Foundation
import XCTest
@testable import ModelZoo

/// Runs the built `zoo` binary, the way users do, and captures what it prints.
struct CLIResult {
    let status: Int32
    let stdout: String
    let stderr: String
}

enum CLI {
    /// `zoo` sits beside the test bundle in the build products folder.
    static var zooURL: URL {
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        if dir.lastPathComponent.hasSuffix(".xctest") { dir = dir.deletingLastPathComponent() }
        for candidate in [dir, Bundle.main.bundleURL, Bundle.main.bundleURL.deletingLastPathComponent()] {
            let url = candidate.appendingPathComponent("zoo")
            if FileManager.default.isExecutableFile(atPath: url.path) { return url }
        }
        return dir.appendingPathComponent("zoo")
    }

    static let packageRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func fixture(_ relative: String) -> String {
        packageRoot.appendingPathComponent("Fixtures").appendingPathComponent(relative).path
    }

    @discardableResult
    static func run(_ arguments: [String], environment: [String: String] = [:]) throws -> CLIResult {
        try Subprocess.run(zooURL, arguments, environment: environment)
    }

    static func json(_ result: CLIResult, file: StaticString = #filePath, line: UInt = #line) throws -> [String: Any] {
        let value = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8))
        guard let object = value as? [String: Any] else {
            XCTFail("not a JSON object: \(result.stdout.prefix(200))", file: file, line: line)
            return [:]
        }
        return object
    }
}

enum Subprocess {
    /// Runs `executable` to completion, capturing what it prints.
    static func run(_ executable: URL, _ arguments: [String], environment: [String: String] = [:]) throws -> CLIResult {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        env.merge(environment) { _, new in new }
        process.environment = env
        // stderr goes to a file, so a chatty child cannot fill a second pipe while this side
        // is blocked reading the first.
        let errURL = FileManager.default.temporaryDirectory.appendingPathComponent("zoo-test-stderr-\(UUID().uuidString)")
        FileManager.default.createFile(atPath: errURL.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: errURL) }
        let errHandle = try FileHandle(forWritingTo: errURL)
        let out = Pipe()
        process.standardOutput = out
        process.standardError = errHandle
        try process.run()
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        try errHandle.close()
        let errData = (try? Data(contentsOf: errURL)) ?? Data()
        return CLIResult(status: process.terminationStatus,
                         stdout: String(decoding: outData, as: UTF8.self),
                         stderr: String(decoding: errData, as: UTF8.self))
    }
}

/// Runs python3 with the test peers (numpy, onnx, onnxruntime).
enum Python {
    static func run(_ arguments: [String]) throws -> CLIResult {
        try Subprocess.run(URL(fileURLWithPath: "/usr/bin/env"), ["python3"] + arguments)
    }
}

/// The onnx wheel's bundled model-zoo graphs (Caffe2 exports with constant-filled weights),
/// found the way CI finds them; nil when python3 or onnx is missing.
enum ONNXLightModels {
    static let directory: String? = {
        guard let result = try? Python.run(["-c", "import onnx, os; print(os.path.dirname(onnx.__file__))"]),
              result.status == 0 else { return nil }
        let root = result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let dir = root + "/backend/test/data/light"
        return FileManager.default.fileExists(atPath: dir) ? dir : nil
    }()
}

/// A test case with a fresh scratch folder per test, removed afterwards: `path("out.onnx")`.
class ScratchDirectoryTestCase: XCTestCase {
    /// The folder name's prefix (a UUID follows), to tell leftovers apart.
    var scratchPrefix: String { "zoo-tests" }
    private(set) var work: URL!

    override func setUpWithError() throws {
        work = FileManager.default.temporaryDirectory.appendingPathComponent("\(scratchPrefix)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        if let work { try? FileManager.default.removeItem(at: work) }
    }

    func path(_ name: String) -> String { work.appendingPathComponent(name).path }

    /// Converts `input` twice, with tensors copied or streamed file to file where they can be
    /// and with everything through memory, and returns the two outputs' paths.
    func convertBothWays(_ input: String, to ext: String) throws -> (direct: String, ordinary: String) {
        let direct = path("direct-\(UUID().uuidString).\(ext)")
        let ordinary = path("ordinary-\(UUID().uuidString).\(ext)")
        var options = Converter.Options()
        _ = try Converter.convert(input: input, output: direct, options: options)
        options.copyStoredTensors = false
        _ = try Converter.convert(input: input, output: ordinary, options: options)
        return (direct, ordinary)
    }
}
