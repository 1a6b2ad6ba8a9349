import ArgumentParser
import Foundation
import ModelZoo

/// Prints a line to stdout at once, so logs piped to a file or another program follow the
/// run epoch by epoch instead of arriving in one block at the end.
func printFlushed(_ line: String) {
    print(line)
    fflush(nil)  // every C stream; naming `stdout` is not concurrency-safe in Swift 6
}

func printWarning(_ message: String) {
    FileHandle.standardError.write(Data("zoo: warning: \(message)\n".utf8))
}

/// A live "features 120/450" counter on a terminal; nothing when stderr is a file or pipe.
func extractionCounter() -> ((Int, Int) -> Void)? {
    guard isatty(STDERR_FILENO) != 0 else { return nil }
    return { done, total in
        FileHandle.standardError.write(Data("\rfeatures \(done)/\(total)\(done == total ? "\n" : "")".utf8))
    }
}

struct Finetune: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Replace the final FC layer with a new head for the classes of an image folder and train it.",
        discussion: """
            DATA holds one subfolder per class of JPEG or PNG images; if it has train/ and val/ \
            subfolders (each with one folder per class) they are used, otherwise --val-split of each \
            class is held out. The backbone is frozen: its features are computed once and cached beside \
            OUT (OUT.features-<key>.bin). By default the new head is fitted as a multinomial logistic \
            regression (L-BFGS on standardised features, C chosen on the validation images from a short \
            grid), with nothing to tune. --optimizer sgd trains it by SGD instead (--epochs, --lr, --batch, \
            --weight-decay; giving any of them selects SGD), and so does --train-last K, which also trains \
            the last K blocks before the head (a ResNet block, an Inception module, a VGG conv stage, a \
            layer elsewhere: zoo summary ARCH --blocks), forward and backward with oneDNN on the cached \
            output of the frozen front; the best epoch by validation accuracy is kept. --augment N trains on \
            N random resized crops (and flips, unless --no-flip) of each training image. OUT is written in \
            the format its extension names, with the class names.
            """)

    @OptionGroup var source: ModelOptions
    @Option(help: "ImageFolder: one subfolder per class (or train/ and val/ each holding them).")
    var data: String
    @Option(help: "Where to write the fine-tuned model (.safetensors, .onnx, .h5, .weights.h5).")
    var out: String
    @Option(help: "lbfgs (the head as a logistic regression; the default without --train-last) or sgd.")
    var optimizer: OptimizerChoice?
    @Option(help: "SGD: passes over the training images (default 30).")
    var epochs: Int?
    @Option(help: "SGD: images per step (default 32).")
    var batch: Int?
    @Option(help: "SGD: initial learning rate, cosine decay to 0 (default 0.01).")
    var lr: Double?
    @Option(name: .customLong("weight-decay"), help: "SGD: L2 weight decay on weights, not biases (default 1e-4).")
    var weightDecay: Double?
    @Option(help: "Train on N random resized crops of each training image (features cached per view).")
    var augment: Int?
    @Flag(name: .customLong("no-flip"), help: "With --augment: no horizontal flips (for digits, text, ...).")
    var noFlip = false
    @Option(name: .customLong("export-features"), help: .hidden)
    var exportFeatures: String?
    @Option(name: .customLong("val-split"), help: "Share of each class held out for validation when DATA has no train/ and val/.")
    var valSplit: Double = 0.2
    @Option(name: .customLong("train-last"), help: "Also train the last K blocks before the head (ResNet blocks, Inception modules, VGG conv stages, layers otherwise: see zoo summary ARCH --blocks).")
    var trainLast: Int = 0
    @Option(name: .customLong("bn"), help: """
        With --train-last: BatchNorm of the trained blocks normalises with its frozen running \
        statistics (frozen, the default: a small fine-tuning set's batch statistics are noisy and \
        would drag the pretrained statistics away) or with each batch's, updating the running \
        statistics as torch's model.train() does (live; needs --batch 2 or more).
        """)
    var bn: BatchNormStatistics = .frozen
    @Option(help: "Seed for the validation split, the augmented views and (SGD) the head's initial weights and shuffles.")
    var seed: UInt64 = 0
    @Flag(help: "Fail on an unreadable image instead of skipping it with a warning.")
    var strict = false
    @Flag(help: "Continue from the last finished epoch of an interrupted run with the same settings.")
    var resume = false
    @Flag(name: .customLong("no-cache"), help: "Do not read or write the feature cache.")
    var noCache = false
    @Option(name: .customLong("stop-after"), help: .hidden)
    var stopAfter: Int?

    /// The SGD settings given on the command line.
    private var sgdOptions: [String] {
        [("--epochs", epochs != nil), ("--batch", batch != nil), ("--lr", lr != nil),
         ("--weight-decay", weightDecay != nil)].filter(\.1).map(\.0)
    }

    func validate() throws {
        try validating {
            if optimizer == .lbfgs, !sgdOptions.isEmpty {
                throw ZooError.invalidArgument("\(sgdOptions.joined(separator: ", ")) set SGD; --optimizer lbfgs has no "
                                               + "learning rate or epochs (drop them, or use --optimizer sgd)")
            }
            if noFlip && augment == nil { throw ZooError.invalidArgument("--no-flip applies to --augment N") }
        }
    }

    func run() throws {
        try reportingErrors {
            var options = FineTuner.Options(weightsPath: source.weights, architecture: source.arch, dataPath: data, outputPath: out)
            switch optimizer {
            case .lbfgs?: options.optimizer = .lbfgs
            case .sgd?: options.optimizer = .sgd
            // Scripts that set a learning rate or epochs mean SGD: keep them working as they did.
            case nil: options.optimizer = sgdOptions.isEmpty && trainLast == 0 ? nil : .sgd
            }
            if let augment { options.augmentation = Augmentation(views: augment, flip: !noFlip) }
            options.exportFeatures = exportFeatures
            options.hyper.epochs = epochs ?? options.hyper.epochs
            options.hyper.batch = batch ?? options.hyper.batch
            options.hyper.learningRate = lr ?? options.hyper.learningRate
            options.hyper.weightDecay = weightDecay ?? options.hyper.weightDecay
            options.hyper.seed = seed
            options.hyper.batchNormStatistics = bn
            options.validationFraction = valSplit
            options.trainLast = trainLast
            options.strict = strict
            options.resume = resume
            options.cacheFeatures = !noCache
            options.threads = source.threads
            guard source.precision != .int8 else {
                throw ZooError.invalidArgument("--precision int8 is for run, predict, bench and evaluate; finetune extracts features in fp32 or bf16")
            }
            options.precision = source.precision
            options.convolutions = source.convolutions
            options.stopAfterEpochs = stopAfter
            _ = try FineTuner.run(options, callbacks: FineTuner.Callbacks(
                log: printFlushed, warn: printWarning, extractionProgress: extractionCounter()))
        }
    }
}

enum OptimizerChoice: String, ExpressibleByArgument, CaseIterable {
    case lbfgs, sgd
}

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Accuracy, per-class accuracy and the confusion matrix of a model on an image folder.",
        discussion: """
            DATA holds one subfolder per class (its val/ subfolder is used when it has train/ and val/). \
            Folder names are matched to the class names stored in the weights (by zoo finetune); \
            without stored names, folders named 0, 1, ... are those output indices, and otherwise \
            the i-th folder in sorted order is class i.
            """)

    @OptionGroup var source: ModelOptions
    @Option(help: "ImageFolder: one subfolder per class.")
    var data: String
    @Option(help: "Images per forward pass.")
    var batch: Int = 32
    @Flag(help: "Fail on an unreadable image instead of skipping it with a warning.")
    var strict = false
    @Option(help: "text or json.")
    var format: OutputFormat = .text
    @Option(help: "Also write an HTML page to DIR/index.html: the confusion matrix as a heat map, per-class accuracy, and the misclassified images.")
    var report: String?

    func validate() throws {
        try validating {
            guard batch >= 1, batch <= 4096 else { throw ZooError.invalidArgument("--batch must be between 1 and 4096") }
        }
    }

    func run() throws {
        try reportingErrors {
            if let report { try EvaluationHTML.checkDestination(report) }
            let model = try ModelLoader.load(path: source.weights, architecture: source.arch)
            let result = try Evaluator.evaluate(model: model, dataPath: data, batch: batch, threads: source.threads,
                                                precision: source.precision,
                                                calibration: try source.calibration(for: model),
                                                convolutions: source.convolutions, strict: strict,
                                                warn: printWarning, progress: extractionCounter())
            let written = try report.map { try EvaluationHTML.write(result, modelPath: source.weights, dataPath: data, to: $0) }
            if format == .json {
                print(result.json, terminator: "")
                // stdout stays pure JSON.
                if let written { FileHandle.standardError.write(Data("wrote \(written)\n".utf8)) }
            } else {
                print(result.text)
                if let written { print("wrote \(written)") }
            }
        }
    }
}

extension BatchNormStatistics: ExpressibleByArgument {}
