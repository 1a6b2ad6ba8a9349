import XCTest

final class SummaryCLITests: XCTestCase {
    func testListShowsEveryArchitectureWithTotals() throws {
        let result = try CLI.run(["list"])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stdout.contains("vgg16"))
        XCTAssertTrue(result.stdout.contains("138,357,544"))
        XCTAssertTrue(result.stdout.contains("1x32x32"))
        let json = try JSONSerialization.jsonObject(with: Data(try CLI.run(["list", "--format", "json"]).stdout.utf8))
        // 25 architectures; the Caffe2 ResNet50 is a preset of resnet50, listed under it.
        let rows = try XCTUnwrap(json as? [[String: Any]])
        XCTAssertEqual(rows.count, 25)
        XCTAssertFalse(rows.contains { $0["id"] as? String == "resnet50-caffe2" })
        XCTAssertEqual(rows.first { $0["id"] as? String == "resnet50" }?["presets"] as? [String], ["resnet50-caffe2"])
        XCTAssertTrue(result.stdout.contains("resnet50-caffe2   = resnet50"), result.stdout)
    }

    func testSummaryJSONKeys() throws {
        let result = try CLI.run(["summary", "vgg16", "--format", "json"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let json = try CLI.json(result)
        for key in ["architecture", "input", "layers", "total_params", "total_buffers", "activation_elements", "macs"] {
            XCTAssertNotNil(json[key], key)
        }
        XCTAssertEqual(json["architecture"] as? String, "vgg16")
        XCTAssertEqual(json["input"] as? [Int], [3, 224, 224])
        XCTAssertEqual(json["total_params"] as? Int, 138_357_544)
        XCTAssertEqual(json["activation_elements"] as? Int, 15_237_608)
        let layers = try XCTUnwrap(json["layers"] as? [[String: Any]])
        for key in ["name", "type", "output", "params"] { XCTAssertNotNil(layers[0][key], key) }
        XCTAssertEqual(layers[0]["output"] as? [Int], [64, 224, 224])
        XCTAssertEqual(layers[0]["params"] as? Int, 1_792)
    }

    func testSummaryWithNewHeadAndInputSize() throws {
        let json = try CLI.json(try CLI.run(["summary", "resnet18", "--classes", "10", "--input-size", "160",
                                             "--format", "json"]))
        XCTAssertEqual(json["input"] as? [Int], [3, 160, 160])
        XCTAssertEqual(json["total_params"] as? Int, 11_689_512 - 990 * 513)
    }

    func testTextAndMarkdownForms() throws {
        let text = try CLI.run(["summary", "alexnet-caffe"])
        XCTAssertEqual(text.status, 0)
        XCTAssertTrue(text.stdout.contains("TOTAL params: 60,965,224"))
        XCTAssertTrue(text.stdout.contains("groups 2"))
        let vgg = try CLI.run(["summary", "vgg16"])
        XCTAssertTrue(vgg.stdout.contains("TOTAL memory: 15,237,608 values"), vgg.stdout)
        let md = try CLI.run(["summary", "googlenet", "--format", "markdown"])
        XCTAssertTrue(md.stdout.contains("| inception3a |"))
    }

    func testErrorsExitNonZeroAndSayWhy() throws {
        let unknown = try CLI.run(["summary", "vgg17"])
        XCTAssertNotEqual(unknown.status, 0)
        XCTAssertTrue(unknown.stderr.contains("unknown architecture 'vgg17'"), unknown.stderr)
        let tiny = try CLI.run(["summary", "vgg16", "--input-size", "16"])
        XCTAssertNotEqual(tiny.status, 0)
        XCTAssertTrue(tiny.stderr.contains("features.30"), tiny.stderr)
        let bad = try CLI.run(["summary", "vgg16", "--input-size", "abc"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("abc"), bad.stderr)
        let fixed = try CLI.run(["summary", "lenet5", "--input-size", "28"])
        XCTAssertNotEqual(fixed.status, 0)
        XCTAssertTrue(fixed.stderr.contains("fc1"), fixed.stderr)
    }
}
