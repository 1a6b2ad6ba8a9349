import ArgumentParser
import Foundation
import ModelZoo

struct List: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the architectures with their parameter totals, and the weights presets that are another training of one.")

    @Option(help: "text or json.")
    var format: OutputFormat = .text

    func run() throws {
        try reportingErrors {
            var rows: [ArchitectureRow] = []
            var lines = [["id".padding(toLength: 16, withPad: " ", startingAt: 0), "params".leftPadded(12),
                          "input".padding(toLength: 11, withPad: " ", startingAt: 0), "what"].joined(separator: "  ")]
            for arch in ArchitectureRegistry.all {
                let net = try arch.resolve()
                let presets = WeightsPreset.presets(of: arch.id).filter(\.isNamedVariant)
                rows.append(ArchitectureRow(id: arch.id, title: arch.title, variant: arch.variant,
                                            params: net.totalParameters, buffers: net.totalBuffers, input: net.input.array,
                                            classes: net.classes, presets: presets.map(\.id)))
                lines.append([arch.id.padding(toLength: 16, withPad: " ", startingAt: 0),
                              grouped(net.totalParameters).leftPadded(12),
                              net.input.description.padding(toLength: 11, withPad: " ", startingAt: 0),
                              arch.title + ", " + arch.variant].joined(separator: "  "))
            }
            let presets = WeightsPreset.all.filter(\.isNamedVariant)
            if !presets.isEmpty {
                lines += ["", "presets: other trainings of an architecture above (`--arch` takes them too)"]
                for preset in presets {
                    lines.append([preset.id.padding(toLength: 16, withPad: " ", startingAt: 0),
                                  ("= " + preset.architecture).padding(toLength: 12, withPad: " ", startingAt: 0),
                                  "\(preset.preprocessing.rawValue) preprocessing".padding(toLength: 24, withPad: " ", startingAt: 0),
                                  preset.source].joined(separator: "  "))
                }
            }
            print(format == .json ? encodeJSON(rows) : lines.joined(separator: "\n") + "\n", terminator: "")
        }
    }
}

/// One architecture in `zoo list --format json`.
struct ArchitectureRow: Encodable {
    let id, title, variant: String
    let params, buffers: Int
    let input: [Int]
    let classes: Int
    let presets: [String]
}

struct Summary: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print an architecture's layer table: output volumes, parameters, memory, MACs.")

    @Argument(help: "Architecture id (see `zoo list`).")
    var architecture: String

    @Option(help: "Classes of the final FC layer (default: the architecture's own).")
    var classes: Int?

    @Option(name: .customLong("input-size"), help: "Input height and width, e.g. 224 or 240x320.")
    var inputSize: Size2?

    @Option(help: "text, markdown or json.")
    var format: SummaryFormat = .text

    @Flag(help: "List the blocks `zoo finetune --train-last K` counts (ResNet blocks, Inception modules, VGG stages, layers otherwise).")
    var blocks = false

    func run() throws {
        try reportingErrors {
            let arch = try ArchitectureRegistry.find(architecture)
            let net = try arch.resolve(classes: classes, inputSize: inputSize)
            if blocks {
                print(TransferBlocks.render(net, json: format == .json), terminator: "")
                return
            }
            print(SummaryRenderer.render(net, as: format), terminator: "")
        }
    }
}
