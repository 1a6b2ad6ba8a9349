import ArgumentParser
import Foundation
import ModelZoo

@main
struct Zoo: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "zoo",
        abstract: "Load, verify, convert, run and fine-tune the classic CNNs.",
        subcommands: [List.self, Summary.self, Inspect.self, Verify.self, Run.self, Predict.self, Bench.self,
                      Convert.self, Init.self, Finetune.self, Evaluate.self, FuzzBatch.self])

    /// Commands that run the engine restart once with OpenMP's variables set (see
    /// EngineEnvironment: libgomp reads them only when it loads, before any of our code).
    static let engineCommands: Set<String> = ["run", "predict", "bench", "finetune", "evaluate", "convert"]

    static func main() {
        let args = CommandLine.arguments
        // A sandboxed child parsing one HDF5 file for its parent (ReaderIsolation).
        if args.count > 1, args[1] == HDF5Worker.commandLineFlag {
            Foundation.exit(HDF5Worker.run(Array(args.dropFirst(2))))
        }
        // `convert` runs the engine only for --check: without it, no restart (about 40 ms).
        if args.count > 1, engineCommands.contains(args[1]), args[1] != "convert" || args.contains("--check") {
            reexecWithEngineEnvironment(threads: threadsArgument(args))
        }
        main(nil)
    }

    static func threadsArgument(_ args: [String]) -> Int? {
        guard let i = args.firstIndex(of: "--threads"), i + 1 < args.count else { return nil }
        return Int(args[i + 1])
    }

    static func reexecWithEngineEnvironment(threads: Int?) {
        let environment = ProcessInfo.processInfo.environment
        guard EngineEnvironment.needsReexec(environment: environment) else { return }
        let merged = environment.merging(EngineEnvironment.requiredVariables(threads: threads, environment: environment)) { _, new in new }
        let argv = CommandLine.arguments.map { strdup($0) } + [nil]
        let envp = merged.map { strdup("\($0.key)=\($0.value)") } + [nil]
        execve("/proc/self/exe", argv, envp)
        // Only reached if exec failed: carry on with the default settings, just slower.
    }
}

/// The flag each library parameter is given by: the library names its own parameters in
/// errors (`ZooError.invalidParameter`), and the command line shows them as users type them.
let flagForParameter: [String: String] = [
    "outputPath": "--out", "trainLast": "--train-last", "optimizer": "--optimizer", "augmentation": "--augment",
    "validationFraction": "--val-split", "reportDirectory": "--report", "batch": "--batch", "format": "--to",
    "force": "--force", "epochs": "--epochs", "learningRate": "--lr", "weightDecay": "--weight-decay", "output": "output", "extractionBatch": "feature batch",
    "batchNormStatistics": "--bn",
]

/// Prints a library error the way users read it and returns the exit code to throw.
func fail(_ error: Error, code: Int32 = 1) -> ExitCode {
    let text = (error as? ZooError)?.rendered { flagForParameter[$0] ?? $0 } ?? "\(error)"
    FileHandle.standardError.write(Data(("zoo: error: \(text)\n").utf8))
    return ExitCode(code)
}

/// Runs `body`, turning library errors into messages and exit codes: 2 for a file that
/// cannot be read at all, 1 for everything else.
func reportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let error as ExitCode {
        throw error
    } catch let error as ZooError {
        if case .unreadableFile = error { throw fail(error, code: 2) }
        throw fail(error)
    } catch let error as Converter.CheckFailed {
        throw fail(error)
    } catch let error as ModelLoader.VerificationFailed {
        FileHandle.standardError.write(Data(ReportRenderer.verifyText(error.report).utf8))
        throw fail(error)
    } catch let error as CleanExit {
        throw error
    } catch {
        throw fail(error)
    }
}

enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case text, json
}

extension SummaryFormat: ExpressibleByArgument {}
extension Precision: ExpressibleByArgument {}
extension ConvolutionAlgorithm: ExpressibleByArgument {}
extension Architecture.Preprocessing: ExpressibleByArgument {}

/// "224" or "240x320"; anything else is a usage error the parser reports.
extension Size2: ExpressibleByArgument {
    public init?(argument: String) {
        let parts = argument.lowercased().split(separator: "x", omittingEmptySubsequences: false).map { Int($0) }
        switch parts.count {
        case 1: guard let n = parts[0] else { return nil }; self.init(n)
        case 2: guard let h = parts[0], let w = parts[1] else { return nil }; self.init(h, w)
        default: return nil
        }
    }
}

/// The formats `convert` and `init` write, as `--to` spells them.
enum TargetFormat: String, ExpressibleByArgument, CaseIterable {
    case onnx, keras, kerasH5 = "keras-h5", kerasWeightsH5 = "keras-weights-h5", safetensors, pth

    var format: WeightFormat {
        switch self {
        case .onnx: return .onnx
        case .keras: return .keras
        case .kerasH5: return .kerasH5
        case .kerasWeightsH5: return .kerasWeightsH5
        case .safetensors: return .safetensors
        case .pth: return .pth
        }
    }
}

/// Checks of option values in `validate()`, reported as every other error is (one line,
/// exit status 1), before any file is opened.
func validating(_ checks: () throws -> Void) throws {
    try reportingErrors(checks)
}

extension String {
    func leftPadded(_ width: Int) -> String {
        count >= width ? self : String(repeating: " ", count: width - count) + self
    }
}

/// The weight file an engine command loads, and the threads it runs on: the options
/// `run`, `predict`, `bench`, `finetune` and `evaluate` share.
struct ModelOptions: ParsableArguments {
    @Option(help: "The weight file: ONNX, Keras HDF5 (.h5, .weights.h5), HDF5, safetensors or PyTorch .pth.")
    var weights: String
    @Option(help: "Architecture id, when the file alone does not settle it.")
    var arch: String?
    @Option(help: "Worker threads (default: every core).")
    var threads: Int?
    @Option(help: "fp32; bf16: bfloat16 weights and activations with float32 accumulation and classifier (AVX512-BF16); int8: quantized with the scales of --calibrate (AVX512-VNNI).")
    var precision: Precision = .fp32
    @Option(help: ArgumentHelp("With --precision int8: a folder of images (a few hundred, like the ones the model will see, better not its training images) to measure activation ranges on and check int8's answers against fp32's; the scales are saved beside the weights as WEIGHTS.int8.json and later runs reuse them.", valueName: "dir"))
    var calibrate: String?
    @Option(help: ArgumentHelp("With --calibrate: keep blocks out of int8 (in bf16 where the processor has AVX512-BF16, else fp32) until the network keeps this percentage of the float32 top-1 classes on the calibration images (default 99; 0 makes every block int8).", valueName: "percent"))
    var int8Agreement: Double?
    @Option(help: "How fp32 3x3 stride-1 convolutions are computed: winograd (2.25x fewer multiplications, logits within about 1e-6 of direct) or direct (closest to other engines' rounding).")
    var convolutions: ConvolutionAlgorithm = .winograd

    func validate() throws {
        try validating {
            if calibrate != nil && precision != .int8 { throw ZooError.invalidArgument("--calibrate applies only to --precision int8") }
            if let int8Agreement {
                guard calibrate != nil else { throw ZooError.invalidArgument("--int8-agreement applies only with --calibrate DIR") }
                guard (0...100).contains(int8Agreement) else {
                    throw ZooError.invalidArgument("--int8-agreement is a percentage from 0 to 100, not \(int8Agreement)")
                }
            }
        }
    }

    /// The int8 activation scales for `model`: measured now with --calibrate, else the saved
    /// ones; nil for other precisions.
    func calibration(for model: LoadedModel, preprocessing: Architecture.Preprocessing? = nil) throws -> Int8Calibration? {
        guard precision == .int8 else { return nil }
        return try Int8Calibration.resolve(model: model, weightsPath: weights, directory: calibrate,
                                           preprocessing: preprocessing, threads: threads,
                                           agreementTarget: (int8Agreement ?? Int8Calibration.defaultAgreementTarget * 100) / 100) { line in
            FileHandle.standardError.write(Data((line + "\n").utf8))
        }
    }
}
