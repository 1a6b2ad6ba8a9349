import ArgumentParser
import Foundation
import ModelZoo

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show what a weight file holds: format, producer, every tensor; for ONNX the opset and operators.")

    @Argument(help: "An ONNX, Keras HDF5, HDF5, safetensors, .npy or PyTorch .pth file.")
    var file: String

    @Option(help: "text or json.")
    var format: OutputFormat = .text

    @Flag(help: "Also read every float tensor's data, and say how long that took.")
    var load = false

    func run() throws {
        try reportingErrors {
            let opened = try unreadableOnFailure { try WeightFileOpener.open(path: file) }
            var report = InspectReport.make(opened)
            if load {
                let timing = try unreadableOnFailure { try LoadTiming.measure(opened) }
                report.details.append(("loaded", "\(timing.tensors) tensors, \(grouped(timing.bytes)) bytes as float32 in "
                    + String(format: "%.1f ms", timing.milliseconds)))
            }
            print(format == .json ? ReportRenderer.inspectJSON(report) : ReportRenderer.inspectText(report), terminator: "")
        }
    }
}

struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check a weight file against an architecture's parameter table, tensor by tensor.",
        discussion: "Exit status: 0 when the file is a complete, finite instance of the architecture; "
            + "1 when it is not; 2 when the file cannot be read at all.")

    @Argument(help: "The weight file.")
    var file: String

    @Option(help: "Architecture id; without it, the architecture is worked out from the file.")
    var arch: String?

    @Flag(name: .customLong("shapes-only"), help: "Skip loading values (no NaN/Inf check).")
    var shapesOnly = false

    @Option(help: "text or json.")
    var format: OutputFormat = .text

    func run() throws {
        try reportingErrors {
            let requested = try arch.map { try ArchitectureRegistry.find($0) }
            let opened = try unreadableOnFailure { try WeightFileOpener.open(path: file) }
            let (report, _) = try unreadableOnFailure {
                try Verifier.verify(opened, architecture: requested, preset: arch.flatMap(WeightsPreset.find),
                                    checkValues: !shapesOnly)
            }
            print(format == .json ? ReportRenderer.verifyJSON(report) : ReportRenderer.verifyText(report), terminator: "")
            if !report.ok { throw ExitCode(1) }
        }
    }
}

/// Exit status 2 for a file that cannot be read at all: its header, a tensor's declared
/// shape or its data is unusable. Problems found in a readable file exit 1.
func unreadableOnFailure<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let error as ZooError {
        throw fail(error, code: 2)
    }
}
