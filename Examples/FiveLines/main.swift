// The library's five lines, on the committed LeNet fixture: load and verify a file, classify
// an image, put a new head on it for a folder of new classes, save the result.
//
//   swift run zoo-example [FIXTURES_DIR] [OUT.safetensors]
import Foundation
import ModelZoo

let fixtures = CommandLine.arguments.count > 1 ? CommandLine.arguments[1] : "Fixtures"
let out = CommandLine.arguments.count > 2 ? CommandLine.arguments[2]
    : FileManager.default.temporaryDirectory.appendingPathComponent("digits59.safetensors").path

do {
    let model = try Model.load(fixtures + "/lenet/lenet5_digits04.onnx")
    print("\(model.architecture.id): \(model.verification.confidence), \(model.verification.problems.count) problems")
    let top = try model.classify(URL(fileURLWithPath: fixtures + "/digits_samples/digit_3_0705.png"), top: 2)
    print("digit_3_0705.png: " + top.map { "\($0.label) \(String(format: "%.1f%%", $0.probability * 100))" }.joined(separator: ", "))
    let tuned = try model.finetuned(on: ImageFolderSource(fixtures + "/digits59"))
    try tuned.save(out)
    print("new head for \(tuned.classNames ?? []), saved to \(out)")
} catch {
    FileHandle.standardError.write(Data("zoo-example: \(error)\n".utf8))
    exit(1)
}
