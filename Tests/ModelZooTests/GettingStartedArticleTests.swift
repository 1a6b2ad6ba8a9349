import Foundation
import XCTest
import ModelZoo

/// The DocC getting-started article's code is this file's code: the first test runs it, the
/// second checks that the article's first Swift block is, line for line, the marked region
/// below. Edit one and the other must follow, or the tests fail.
final class GettingStartedArticleTests: XCTestCase {
    func testGettingStartedCodeRuns() throws {
        let fixtures = CLI.packageRoot.appendingPathComponent("Fixtures").path
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("article-\(getpid()).safetensors").path
        defer { try? FileManager.default.removeItem(atPath: output) }
        // BEGIN getting-started
        let model = try Model.load(fixtures + "/lenet/lenet5_digits04.onnx")
        print(model.verification.confidence, model.verification.problems)
        let top = try model.classify(URL(fileURLWithPath: fixtures + "/digits_samples/digit_3_0705.png"), top: 2)
        let tuned = try model.finetuned(on: ImageFolderSource(fixtures + "/digits59"), progress: { print($0) })
        try tuned.save(output)
        // END getting-started
        XCTAssertEqual(model.verification.confidence, .high)
        XCTAssertEqual(top.first?.index, 3)
        XCTAssertEqual(try Model.load(output).classNames, ["5", "6", "7", "8", "9"])
    }

    func testArticleShowsTheCodeTheTestRuns() throws {
        let article = try String(contentsOf: CLI.packageRoot.appendingPathComponent(
            "Sources/ModelZoo/ModelZoo.docc/GettingStarted.md"), encoding: .utf8)
        let shown = try XCTUnwrap(Self.firstSwiftBlock(article), "the article has no ```swift block")
        let source = try String(contentsOf: URL(fileURLWithPath: #filePath), encoding: .utf8)
        let run = try XCTUnwrap(Self.markedRegion(source, "getting-started"))
        XCTAssertEqual(shown, run, "GettingStarted.md's first swift block differs from the code this file runs")
    }

    static func firstSwiftBlock(_ markdown: String) -> [String]? {
        let lines = markdown.components(separatedBy: "\n")
        guard let start = lines.firstIndex(of: "```swift"),
              let end = lines[(start + 1)...].firstIndex(of: "```") else { return nil }
        return Array(lines[(start + 1)..<end])
    }

    /// The lines between `// BEGIN name` and `// END name`, their common indentation removed.
    static func markedRegion(_ source: String, _ name: String) -> [String]? {
        let lines = source.components(separatedBy: "\n")
        let trimmed = lines.map { $0.trimmingCharacters(in: .whitespaces) }
        guard let start = trimmed.firstIndex(of: "// BEGIN " + name),
              let end = trimmed[(start + 1)...].firstIndex(of: "// END " + name) else { return nil }
        let region = lines[(start + 1)..<end]
        let indent = region.filter { !$0.isEmpty }.map { $0.prefix { $0 == " " }.count }.min() ?? 0
        return region.map { String($0.dropFirst(min(indent, $0.count))) }
    }
}
