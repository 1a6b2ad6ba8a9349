import ArgumentParser
import Foundation
import ModelZoo

@main
struct Zoo: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "zoo",
        abstract: "Load, verify, convert, run and fine-tune the classic CNNs.",
        subcommands: [List.self, Summary.self])
}

/// Prints a library error the way users read it and exits with `code`.
func fail(_ error: Error, code: Int32 = 1) -> ExitCode {
    FileHandle.standardError.write(Data(("zoo: error: \(error)\n").utf8))
    return ExitCode(code)
}

extension SummaryFormat: ExpressibleByArgument {}

struct List: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the architectures with their parameter totals.")

    @Option(help: "Output format: text or json.")
    var format: String = "text"

    func run() throws {
        var rows: [[String: Any]] = []
        var lines: [String] = []
        for arch in ArchitectureRegistry.all {
            let net = try arch.resolve()
            let input = "\(net.input.c)x\(net.input.h)x\(net.input.w)"
            rows.append(["id": arch.id, "title": arch.title, "variant": arch.variant,
                         "params": net.totalParameters, "buffers": net.totalBuffers, "input": net.input.array,
                         "classes": net.classes])
            lines.append([arch.id.padding(toLength: 16, withPad: " ", startingAt: 0),
                          grouped(net.totalParameters).leftPadded(12),
                          input.padding(toLength: 11, withPad: " ", startingAt: 0),
                          arch.title + ", " + arch.variant].joined(separator: "  "))
        }
        switch format {
        case "json": print(jsonString(rows), terminator: "")
        case "text":
            print(["id".padding(toLength: 16, withPad: " ", startingAt: 0), "params".leftPadded(12),
                   "input".padding(toLength: 11, withPad: " ", startingAt: 0), "what"].joined(separator: "  "))
            lines.forEach { print($0) }
        default: throw fail(ZooError.invalidArgument("unknown format '\(format)'; use text or json"))
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

    func run() throws {
        do {
            let arch = try ArchitectureRegistry.find(architecture)
            let size = try inputSize.map(parseSize)
            let net = try arch.resolve(classes: classes, inputSize: size)
            print(SummaryRenderer.render(net, as: format), terminator: "")
        } catch let error as ZooError {
            throw fail(error)
        }
    }
}

/// "224" or "240x320" into a size; anything else is a usage error.
func parseSize(_ text: String) throws -> Size2 {
    let parts = text.lowercased().split(separator: "x").map { Int($0) }
    switch parts.count {
    case 1: if let n = parts[0] { return Size2(n) }
    case 2: if let h = parts[0], let w = parts[1] { return Size2(h, w) }
    default: break
    }
    throw ZooError.invalidArgument("input size '\(text)' is not N or HxW")
}

extension String {
    func leftPadded(_ width: Int) -> String {
        count >= width ? self : String(repeating: " ", count: width - count) + self
    }
}
