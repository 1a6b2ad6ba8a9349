import ArgumentParser
import Foundation
import ModelZoo

struct List: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the architectures with their parameter totals.")

    @Option(help: "text or json.")
    var format: OutputFormat = .text

    func run() throws {
        try reportingErrors {
            var rows: [[String: Any]] = []
            var lines = [["id".padding(toLength: 16, withPad: " ", startingAt: 0), "params".leftPadded(12),
                          "input".padding(toLength: 11, withPad: " ", startingAt: 0), "what"].joined(separator: "  ")]
            for arch in ArchitectureRegistry.all {
                let net = try arch.resolve()
                rows.append(["id": arch.id, "title": arch.title, "variant": arch.variant,
                             "params": net.totalParameters, "buffers": net.totalBuffers, "input": net.input.array,
                             "classes": net.classes])
                lines.append([arch.id.padding(toLength: 16, withPad: " ", startingAt: 0),
                              grouped(net.totalParameters).leftPadded(12),
                              net.input.description.padding(toLength: 11, withPad: " ", startingAt: 0),
                              arch.title + ", " + arch.variant].joined(separator: "  "))
            }
            print(format == .json ? jsonString(rows) : lines.joined(separator: "\n") + "\n", terminator: "")
        }
    }
}

struct Summary: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print an architecture's layer table: output volumes, parameters, memory, MACs.")

    @Argument(help: "Architecture id (see `zoo list`).")
    var architecture: String

    @Option(help: "Classes of the final FC layer (default: the architecture's own).")
    var classes: Int?

    @Option(name: .customLong("input-size"), help: "Input height and width, e.g. 224 or 240x320.")
    var inputSize: String?

    @Option(help: "text, markdown or json.")
    var format: SummaryFormat = .text

    @Flag(help: "List the blocks `zoo finetune --train-last K` counts (ResNet blocks, Inception modules, VGG stages, layers otherwise).")
    var blocks = false

    func run() throws {
        try reportingErrors {
            let arch = try ArchitectureRegistry.find(architecture)
            let net = try arch.resolve(classes: classes, inputSize: try inputSize.map(parseSize))
            if blocks {
                print(TransferBlocks.render(net, json: format == .json), terminator: "")
                return
            }
            print(SummaryRenderer.render(net, as: format), terminator: "")
        }
    }
}
