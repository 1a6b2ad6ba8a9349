import Foundation
import XCTest
@testable import ModelZoo

/// Fixtures written by Tools/make_hdf5_fixtures.py and the values it recorded for them.
enum FormatFixtures {
    static let root: URL = {
        var url = URL(fileURLWithPath: #filePath)
        while url.path != "/" {
            url.deleteLastPathComponent()
            if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { break }
        }
        return url.appendingPathComponent("Fixtures")
    }()

    static func path(_ directory: String, _ name: String) -> String {
        root.appendingPathComponent(directory).appendingPathComponent(name).path
    }

    struct Expected: Decodable {
        let shape: [Int]
        let dtype: String
        let values: [Double]
    }

    /// expected.json of `directory`: fixture name -> tensor name -> expected tensor.
    static func expected(_ directory: String, _ fixture: String) throws -> [String: Expected] {
        let data = try Data(contentsOf: root.appendingPathComponent(directory).appendingPathComponent("expected.json"))
        let all = try JSONDecoder().decode([String: [String: Expected]].self, from: data)
        return try XCTUnwrap(all[fixture], "expected.json of \(directory) has no entry for \(fixture)")
    }

    /// Loads every expected tensor from `file` and compares shape, dtype and values exactly
    /// (float16/float64 sources are compared after the same conversion to float32).
    static func assertMatches(_ file: WeightFile, _ expected: [String: Expected],
                              file sourceFile: StaticString = #filePath, line: UInt = #line) throws {
        for (name, want) in expected {
            let record = try XCTUnwrap(file.tensors.first { $0.name == name }, "no tensor '\(name)' in \(file.path); have \(file.tensors.map(\.name))",
                                       file: sourceFile, line: line)
            XCTAssertEqual(record.shape, want.shape, name, file: sourceFile, line: line)
            XCTAssertEqual(record.dtype.rawValue, want.dtype, name, file: sourceFile, line: line)
            let tensor = try file.load(name)
            XCTAssertEqual(tensor.shape, want.shape, name, file: sourceFile, line: line)
            XCTAssertEqual(tensor.data, want.values.map { Float($0) }, name, file: sourceFile, line: line)
        }
    }

    static func assertThrows(_ expression: @autoclosure () throws -> Any, containing fragments: [String],
                             file sourceFile: StaticString = #filePath, line: UInt = #line) {
        do {
            _ = try expression()
            XCTFail("expected an error mentioning \(fragments)", file: sourceFile, line: line)
        } catch {
            let text = String(describing: error)
            for fragment in fragments {
                XCTAssertTrue(text.contains(fragment), "error '\(text)' does not mention '\(fragment)'", file: sourceFile, line: line)
            }
        }
    }
}
