import ArgumentParser
import Foundation
import ModelZoo


private func printSummary(_ summary: ModelWriter.Summary) {
    print("  wrote \(summary.path) (\(summary.format.rawValue)): \(summary.tensors) tensors, "
        + "\(grouped(summary.parameters)) parameters")
    for transform in summary.transforms { print("  - \(transform)") }
}


struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Convert weights between ONNX, Keras HDF5 (.h5, .weights.h5), safetensors and PyTorch .pth.",
        discussion: """
            The input is verified first (the `zoo verify` report is printed when it fails). The output \
            format comes from OUT's extension unless --to is given. The output is written atomically \
            and never replaces the input; an existing output needs --force. Exit status: 0 on \
            success, 1 when the input is not a usable model, the target cannot hold it, or --check \
            finds different logits; 2 when the input cannot be read at all.
            """)

    @Argument(help: "The weight file to convert.")
    var input: String
    @Argument(help: "The file to write.")
    var output: String
    @Option(help: "Architecture id, when the input alone does not settle it.")
    var arch: String?
    @Option(help: "onnx, keras, keras-h5, keras-weights-h5, safetensors or pth (default: from OUT's extension).")
    var to: TargetFormat?
    @Flag(help: "Replace OUT if it exists.")
    var force = false
    @Flag(help: "Reload OUT and compare the engine's logits on both (fails over 1e-4 of the largest logit).")
    var check = false
    @Option(help: "Worker threads for --check (default: every core).")
    var threads: Int?

    func run() throws {
        try reportingErrors {
            let options = Converter.Options(architecture: arch, format: to?.format, force: force,
                                            check: check, threads: threads)
            let report: Converter.Report
            do {
                report = try Converter.convert(input: input, output: output, options: options)
            } catch let failure as Converter.CheckFailed {
                printReport(failure.report)
                throw failure
            }
            printReport(report)
        }
    }

    private func printReport(_ report: Converter.Report) {
        print("\(report.input) (\(report.inputFormat.rawValue), \(report.architecture)) -> \(report.summary.path)")
        printSummary(report.summary)
        for note in report.notes { print("  note: \(note)") }
        if let c = report.check {
            print(String(format: "  check: batch %d, largest logit difference %.3g, %.3g of the largest logit (%.4g): %@",
                         c.batch, c.maxAbsDifference, c.ratio, c.maxAbsLogit, c.passed ? "OK" : "FAILED"))
        }
        print(String(format: "  took %.2f s", report.seconds))
    }
}

struct Init: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write random weights for an architecture (to try the tools without downloading anything).",
        discussion: "He-scaled normal weights from a fixed seed: the same file on every machine. Not trained.")

    @Argument(help: "Architecture id (see `zoo list`).")
    var arch: String
    @Argument(help: "The file to write (.onnx, .h5, .weights.h5, .safetensors or .pth).")
    var output: String
    @Option(help: "Random seed.")
    var seed: UInt64 = 1
    @Option(help: "Size of the classifier head (default: the architecture's).")
    var classes: Int?
    @Option(name: .customLong("input-size"), help: "Input size N or HxW (default: the architecture's).")
    var inputSize: Size2?
    @Option(help: "onnx, keras, keras-h5, keras-weights-h5, safetensors or pth (default: from OUT's extension).")
    var to: TargetFormat?
    @Flag(help: "Replace OUT if it exists.")
    var force = false

    func run() throws {
        try reportingErrors {
            let summary = try Converter.writeRandom(architecture: arch, to: output, format: to?.format, seed: seed,
                                                    classes: classes, inputSize: inputSize, force: force)
            print("\(arch): random weights (seed \(seed))")
            printSummary(summary)
        }
    }
}
