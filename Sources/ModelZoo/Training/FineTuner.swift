import Foundation

/// `zoo finetune` as a library call: load a pretrained file, cut it, extract features of an
/// ImageFolder through the frozen backbone, train a new head (and optionally the last
/// layers), and write the whole model with the new class names. OUT appears only complete.
public enum FineTuner {
    /// How the tail is trained.
    public enum Optimizer: String, Sendable {
        /// The head alone, as a multinomial logistic regression fitted by L-BFGS with the
        /// L2 strength chosen on the validation split (`HeadFitter`): nothing to tune.
        case lbfgs
        /// Mini-batch SGD with momentum (`TailTrainer`): the path for `--train-last`.
        case sgd
    }

    public struct Options {
        public var weightsPath: String
        public var architecture: String?
        public var dataPath: String
        public var outputPath: String
        public var hyper = TailTrainer.Hyperparameters()
        public var validationFraction = 0.2
        public var trainLast = 0
        /// nil: L-BFGS for a head alone, SGD when `trainLast` > 0.
        public var optimizer: Optimizer?
        /// C values tried by the L-BFGS head fit.
        public var cGrid = HeadFitter.defaultGrid
        /// Augmented training views (validation images always get the centre view); its
        /// seed is replaced by `hyper.seed`.
        public var augmentation: Augmentation?
        /// A folder to write the features (train_X.npy, train_y.npy, val_X.npy, val_y.npy)
        /// and the head fit (head_fit.json) to, for Tools/check_head_fit.py.
        public var exportFeatures: String?
        public var strict = false
        public var resume = false
        public var cacheFeatures = true
        public var threads: Int?
        /// The frozen backbone's arithmetic during feature extraction.
        public var precision: Precision = .fp32
        /// How the frozen backbone's float32 3x3 convolutions are computed.
        public var convolutions: ConvolutionAlgorithm = .winograd
        /// Images per oneDNN forward pass during feature extraction.
        public var extractionBatch = 32
        /// Stop after this many epochs in total without writing OUT (tests use it to
        /// simulate an interrupted run).
        public var stopAfterEpochs: Int?

        public init(weightsPath: String, architecture: String? = nil, dataPath: String, outputPath: String) {
            self.weightsPath = weightsPath; self.architecture = architecture
            self.dataPath = dataPath; self.outputPath = outputPath
        }
    }

    /// What the caller is told along the way.
    public struct Callbacks {
        public var log: (String) -> Void
        public var warn: (String) -> Void
        public var extractionProgress: ((Int, Int) -> Void)?
        public init(log: @escaping (String) -> Void, warn: @escaping (String) -> Void,
                    extractionProgress: ((Int, Int) -> Void)? = nil) {
            self.log = log; self.warn = warn; self.extractionProgress = extractionProgress
        }
    }

    public struct Result {
        /// nil when the run stopped early (`stopAfterEpochs`).
        public let written: ModelWriter.Summary?
        public let classNames: [String]
        public let trainImages: Int
        public let validationImages: Int
        public let skippedImages: [String]
        public let bestEpoch: Int
        public let bestValidationAccuracy: Double?
        public let featuresFromCache: Bool
        public let extractionImagesPerSecond: Double
        public let featureLayer: String
        public let trainedLayers: [String]
        public let optimizer: Optimizer
        /// The L-BFGS grid and chosen point; nil with SGD.
        public let headFit: HeadFitter.Fit?
        /// Feature rows the head was trained on (images times augmented views).
        public let trainRows: Int
    }

    public static func checkpointPath(for output: String) -> String { output + ".checkpoint.safetensors" }

    /// Where the tuned network goes.
    public enum Destination {
        /// Written to `Options.outputPath` in this format.
        case file(WeightFormat)
        /// Kept in memory, in the box given (checkpoints of an SGD run still go beside
        /// `Options.outputPath`).
        case memory(TunedWeights)

        func write(_ net: ResolvedNetwork, weights: [String: Tensor], classNames: [String], to path: String,
                   producer: String, preset: WeightsPreset) throws -> ModelWriter.Summary {
            switch self {
            case .file(let format):
                return try ModelWriter.write(net, weights: weights, classNames: classNames, to: path, format: format,
                                             producer: producer, preset: preset)
            case .memory(let box):
                box.network = net; box.weights = weights; box.classNames = classNames
                return ModelWriter.Summary(path: "(memory)", format: .safetensors, tensors: net.parameters.count + net.buffers.count,
                                           parameters: net.totalParameters, transforms: [])
            }
        }
    }

    /// A fine-tuned network and its weights, as `Destination.memory` leaves them.
    public final class TunedWeights: @unchecked Sendable {
        public fileprivate(set) var network: ResolvedNetwork?
        public fileprivate(set) var weights: [String: Tensor] = [:]
        public fileprivate(set) var classNames: [String] = []
        public init() {}
    }

    /// Settings that are wrong whatever the weights: refused before anything is loaded.
    static func checkSettings(_ options: Options) throws {
        guard options.extractionBatch >= 1, options.extractionBatch <= 4096 else {
            throw ZooError.invalidParameter(name: "extractionBatch", message: "{extractionBatch} must be between 1 and 4096")
        }
        if (options.optimizer ?? (options.trainLast > 0 ? .sgd : .lbfgs)) == .lbfgs && options.trainLast > 0 {
            throw ZooError.invalidParameter(name: "trainLast", message:
                "{trainLast} \(options.trainLast) trains more than a head: it needs {optimizer} sgd (L-BFGS fits the head alone)")
        }
        if options.hyper.batchNormStatistics == .live {
            // Only the head would train, and a Linear head has no BatchNorm.
            guard options.trainLast > 0 else {
                throw ZooError.invalidParameter(name: "batchNormStatistics", message: "{batchNormStatistics} live applies to {trainLast} K")
            }
            // TailTrainer refuses it too; here it is refused before any feature is extracted.
            guard options.hyper.batch >= 2 else {
                throw ZooError.invalidParameter(
                    name: "batch", message: "{batch} must be 2 or more with live BatchNorm statistics, got \(options.hyper.batch)")
            }
        }
        if let augmentation = options.augmentation, !(1...1000).contains(augmentation.views) {
            throw ZooError.invalidParameter(name: "augmentation",
                                           message: "{augmentation} must be between 1 and 1000 views, got \(augmentation.views)")
        }
    }

    /// Loads `options.weightsPath`, fine-tunes it and writes `options.outputPath`.
    public static func run(_ options: Options, callbacks: Callbacks) throws -> Result {
        let out = options.outputPath
        guard let format = ModelWriter.format(forPath: out) else {
            throw ZooError.invalidParameter(name: "outputPath", message:
                "\(out): cannot tell the output format from the extension; use .safetensors, .onnx, .h5, .weights.h5 or .pth")
        }
        try OutputTarget.refuseOverwriting(input: options.weightsPath, output: out)
        let outDirectory = URL(fileURLWithPath: out).deletingLastPathComponent().path
        guard ImageFolder.isDirectory(outDirectory) else {
            throw ZooError.writeFailed(path: out, reason: "folder \(outDirectory) does not exist")
        }
        try checkSettings(options)
        let model = try ModelLoader.load(path: options.weightsPath, architecture: options.architecture)
        return try run(options, model: model, destination: .file(format), callbacks: callbacks)
    }

    /// Fine-tunes weights already loaded (`options.weightsPath` and `architecture` are then
    /// only named in logs and cache keys); the result goes to `destination`.
    public static func run(_ options: Options, model: LoadedModel, destination: Destination,
                           callbacks: Callbacks) throws -> Result {
        try checkSettings(options)
        let out = options.outputPath
        let format = destination
        let optimizer = options.optimizer ?? (options.trainLast > 0 ? .sgd : .lbfgs)
        let folder = try ImageFolder.forTraining(root: options.dataPath, validationFraction: options.validationFraction,
                                                 seed: options.hyper.seed)
        // A no-top file gets the head keras.applications examples put on one: global
        // average pooling, then one dense layer; `verify` knows that shape again.
        let source = model.report.noTop
            ? try model.architecture.withPooledHead().resolve(classes: folder.classNames.count,
                                                              inputSize: Size2(model.network.input.h, model.network.input.w))
            : model.network
        let plan = try TransferPlan(source: source, classes: folder.classNames.count, trainLast: options.trainLast)
        let splitText: String
        switch folder.split {
        case .folders: splitText = "train/ and val/ folders"
        case let .random(fraction, seed): splitText = String(format: "%.0f%% of each class held out, seed %llu", fraction * 100, seed)
        case .none: splitText = "no validation set"
        }
        callbacks.log("\(model.architecture.id) from \(options.weightsPath): new \(folder.classNames.count)-class head "
                      + "'\(source.architecture.headLayer)'; classes \(folder.classNames.joined(separator: ", "))")
        callbacks.log("data: \(folder.train.count) training and \(folder.validation.count) validation images (\(splitText))")
        callbacks.log("features: output of '\(plan.featureLayer)' (\(plan.featureShape.count) values per image); "
                      + "training \(plan.trainedLayers.filter { !$0.parameters.isEmpty }.map(\.layer.name).joined(separator: ", "))")

        var extractorOptions = FeatureExtractor.Options()
        extractorOptions.batch = options.extractionBatch
        extractorOptions.threads = options.threads
        extractorOptions.precision = options.precision
        extractorOptions.convolutions = options.convolutions
        extractorOptions.strict = options.strict
        extractorOptions.preset = model.preset
        var augmentation = options.augmentation
        augmentation?.seed = options.hyper.seed
        extractorOptions.augmentation = augmentation
        let extractor = FeatureExtractor(plan: plan, weights: model.weights, options: extractorOptions)
        // Training rows: every image once, or `views` augmented views of each; validation
        // rows: every image once, centre-cropped as at evaluation.
        var trainRows: [(sample: ImageFolder.Sample, view: Int?)] = folder.train.map { ($0, nil) }
        if let augmentation {
            trainRows = folder.train.flatMap { sample in (0..<augmentation.views).map { (sample, Optional($0)) } }
            callbacks.log("augmentation: \(augmentation.views) views of each training image (random resized crop, scale "
                          + "0.08-1, ratio 3/4-4/3\(augmentation.flip ? ", random horizontal flip" : ", no flip")"
                          + ", seed \(augmentation.seed)); validation images centre-cropped")
        }
        let samples = trainRows.map(\.sample) + folder.validation
        let views = trainRows.map(\.view) + [Int?](repeating: nil, count: folder.validation.count)
        let paths = samples.map(\.path), labels = samples.map(\.label)
        let extraction = try extractor.extract(paths: paths, labels: labels, views: views, weightsPath: options.weightsPath,
                                               cacheBase: options.cacheFeatures ? out : nil, warn: callbacks.warn,
                                               progress: callbacks.extractionProgress)
        if extraction.fromCache, let cache = extraction.cachePath {
            callbacks.log("reusing cached features from \(cache)")
        } else {
            callbacks.log(String(format: "extracted features of %d %@: %.1f img/s", paths.count,
                                 augmentation == nil ? "images" : "views", extraction.imagesPerSecond))
        }
        let all = extraction.features
        let trainSet = subset(all, 0..<trainRows.count)
        let valSet = subset(all, trainRows.count..<samples.count)
        let trainImages = Set(trainSet.usableIndices.map { trainSet.paths[$0] }).count
        // A class whose every training image was unreadable cannot be learnt.
        let usableLabels = Set(trainSet.usableIndices.map { trainSet.labels[$0] })
        for (label, name) in folder.classNames.enumerated() where !usableLabels.contains(label) {
            throw ZooError.invalidArgument("class '\(name)' has no readable training image")
        }

        let skipped = Array(Set(all.skipped.keys.map { all.paths[$0] })).sorted()
        if let directory = options.exportFeatures {
            try exportFeatures(train: trainSet, validation: valSet, classes: folder.classNames, to: directory)
        }
        if optimizer == .lbfgs {
            return try fitHead(options, plan: plan, model: model, format: format, classNames: folder.classNames,
                               train: trainSet, validation: valSet, trainImages: trainImages, skipped: skipped,
                               extraction: extraction, callbacks: callbacks)
        }

        let trainer = try TailTrainer(plan: plan, pretrained: model.weights, hyper: options.hyper)
        let checkpoint = checkpointPath(for: out)
        let fingerprint = String(format: "%016llx", FNV1a.hash(
            extractor.cacheKey(paths: paths, labels: labels, weightsPath: options.weightsPath)
                + "\(options.hyper) trainLast=\(options.trainLast) classes=\(folder.classNames) \(augmentation?.key ?? "")"))
        var resumeState: TrainingCheckpoint? = nil
        if options.resume {
            if FileManager.default.fileExists(atPath: checkpoint) {
                let state = try TrainingCheckpoint.read(path: checkpoint, fingerprint: fingerprint)
                callbacks.log("resuming after epoch \(state.finishedEpochs) of \(options.hyper.epochs) from \(checkpoint)")
                resumeState = state
            } else {
                callbacks.log("no checkpoint at \(checkpoint): starting from epoch 1")
            }
        }
        let shapes = trainer.parameterShapes
        let outcome = try trainer.train(
            train: trainSet, validation: valSet.paths.isEmpty ? nil : valSet, resumeFrom: resumeState,
            stopAfter: options.stopAfterEpochs,
            save: { state in try state.write(to: checkpoint, shapes: shapes, fingerprint: fingerprint) },
            report: { callbacks.log($0.line) })
        let finished = (resumeState?.finishedEpochs ?? 0) + outcome.epochsRun
        // A run stopped early (--stop-after) and a finished one report the same training.
        func sgdResult(written: ModelWriter.Summary?) -> Result {
            Result(written: written, classNames: folder.classNames, trainImages: trainImages,
                   validationImages: valSet.usableIndices.count, skippedImages: skipped,
                   bestEpoch: outcome.bestEpoch, bestValidationAccuracy: outcome.bestValidationAccuracy,
                   featuresFromCache: extraction.fromCache, extractionImagesPerSecond: extraction.imagesPerSecond,
                   featureLayer: plan.featureLayer, trainedLayers: plan.trainedLayers.map(\.layer.name),
                   optimizer: .sgd, headFit: nil, trainRows: trainSet.usableIndices.count)
        }
        guard finished >= options.hyper.epochs else {
            callbacks.log("stopped after epoch \(finished); \(out) not written; continue with --resume")
            return sgdResult(written: nil)
        }

        var weights = model.weights
        for spec in plan.source.layers[plan.cutIndex...].flatMap({ $0.parameters }) { weights[spec.name] = nil }
        for (name, tensor) in outcome.weights { weights[name] = tensor }
        let summary = try format.write(plan.target, weights: weights, classNames: folder.classNames, to: out,
                                       producer: "zoo finetune", preset: model.preset)
        try? FileManager.default.removeItem(atPath: checkpoint)
        let best = outcome.bestValidationAccuracy.map { String(format: ", val %.1f%%", $0 * 100) } ?? ""
        callbacks.log("best epoch \(outcome.bestEpoch)\(best); wrote \(summary.format.rawValue) \(out)")
        return sgdResult(written: summary)
    }

    /// The default path: the head as a logistic regression on the cached features.
    static func fitHead(_ options: Options, plan: TransferPlan, model: LoadedModel, format: Destination,
                        classNames: [String], train: FeatureSet, validation: FeatureSet, trainImages: Int,
                        skipped: [String], extraction: FeatureExtractor.Result, callbacks: Callbacks) throws -> Result {
        let out = options.outputPath
        let head = plan.target.layers[plan.cutIndex]
        guard plan.trainedLayers.count == 1, case .linear = head.layer.op,
              let weightSpec = head.parameters.first(where: { $0.role == .weight }) else {
            throw ZooError.invalidArgument("\(plan.source.architecture.id): the head is not a single Linear layer on the features; "
                                           + "use --optimizer sgd")
        }
        let biasSpec = head.parameters.first(where: { $0.role == .bias })
        if options.resume {
            callbacks.log("nothing to resume: the logistic-regression head is fitted in one go")
        }
        let hasValidation = !validation.usableIndices.isEmpty
        let gridText = options.cGrid.sorted().map { String(format: "%g", $0) }.joined(separator: ", ")
        callbacks.log("head: multinomial logistic regression, L-BFGS on \(train.dimension) standardised features of "
                      + "\(train.usableIndices.count) rows; "
                      + (hasValidation ? "C (inverse L2 strength) chosen on val from \(gridText)"
                                       : "no validation set, so C = 1 (scikit-learn's default)"))
        let started = DispatchTime.now().uptimeNanoseconds
        let fit = try HeadFitter.fit(train: train, validation: hasValidation ? validation : nil, classes: classNames.count,
                                     grid: options.cGrid, report: { callbacks.log("  " + $0.line) })
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        if let directory = options.exportFeatures {
            try exportHeadFit(fit, to: directory)
        }
        // Accuracy of the folded Float head on raw features: what the written file will score.
        let folded = headAccuracy(weight: fit.weight, bias: fit.bias, classes: classNames.count, on: validation)
        let trainAccuracy = headAccuracy(weight: fit.weight, bias: fit.bias, classes: classNames.count, on: train)
        var weights = model.weights
        for spec in plan.source.layers[plan.cutIndex...].flatMap({ $0.parameters }) { weights[spec.name] = nil }
        weights[weightSpec.name] = Tensor(shape: weightSpec.shape, data: fit.weight)
        if let biasSpec { weights[biasSpec.name] = Tensor(shape: biasSpec.shape, data: fit.bias) }
        let summary = try format.write(plan.target, weights: weights, classNames: classNames, to: out,
                                       producer: "zoo finetune", preset: model.preset)
        let point = fit.chosenPoint
        let val = hasValidation ? String(format: ", val %.1f%%", folded * 100) : ""
        callbacks.log(String(format: "chosen C %g (l2 %.1e): train %.1f%%%@; fitted in %.2f s; wrote %@ %@",
                             point.c, point.lambda, trainAccuracy * 100, val, seconds, summary.format.rawValue, out))
        return Result(written: summary, classNames: classNames, trainImages: trainImages,
                      validationImages: validation.usableIndices.count, skippedImages: skipped,
                      bestEpoch: 0, bestValidationAccuracy: hasValidation ? folded : nil,
                      featuresFromCache: extraction.fromCache, extractionImagesPerSecond: extraction.imagesPerSecond,
                      featureLayer: plan.featureLayer, trainedLayers: plan.trainedLayers.map(\.layer.name),
                      optimizer: .lbfgs, headFit: fit, trainRows: train.usableIndices.count)
    }

    static func headAccuracy(weight: [Float], bias: [Float], classes: Int, on set: FeatureSet) -> Double {
        let rows = set.usableIndices
        guard !rows.isEmpty else { return 0 }
        let d = set.dimension
        var correct = 0
        var logits = [Float](repeating: 0, count: classes)
        for r in rows {
            for j in 0..<classes {
                var s = bias[j]
                for i in 0..<d { s += weight[j * d + i] * set.values[r * d + i] }
                logits[j] = s
            }
            if TailTrainer.argmax(logits, row: 0, width: classes) == set.labels[r] { correct += 1 }
        }
        return Double(correct) / Double(rows.count)
    }

    /// The usable rows of the training and validation features as .npy files (float32,
    /// labels as float32 too: the npy writer has one element type), for a peer to fit.
    static func exportFeatures(train: FeatureSet, validation: FeatureSet, classes: [String], to directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        for (name, set) in [("train", train), ("val", validation)] {
            let rows = set.usableIndices
            var x = [Float]()
            x.reserveCapacity(rows.count * set.dimension)
            for r in rows { x += set.values[(r * set.dimension)..<((r + 1) * set.dimension)] }
            try NPY.write(Tensor(shape: [rows.count, set.dimension], data: x),
                          to: (directory as NSString).appendingPathComponent("\(name)_X.npy"))
            try NPY.write(Tensor(shape: [rows.count], data: rows.map { Float(set.labels[$0]) }),
                          to: (directory as NSString).appendingPathComponent("\(name)_y.npy"))
        }
    }

    static func exportHeadFit(_ fit: HeadFitter.Fit, to directory: String) throws {
        let grid: [[String: Any]] = fit.grid.map { p in
            var entry: [String: Any] = ["C": p.c, "lambda": p.lambda, "iterations": p.iterations, "converged": p.converged,
                                        "objective": p.objective, "train_loss": p.trainLoss, "train_accuracy": p.trainAccuracy]
            if let v = p.validationAccuracy { entry["val_accuracy"] = v }
            if let v = p.validationLoss { entry["val_loss"] = v }
            return entry
        }
        let json: [String: Any] = ["grid": grid, "chosen_C": fit.chosenPoint.c]
        let data = try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys])
        let path = (directory as NSString).appendingPathComponent("head_fit.json")
        try AtomicFileWriter.write(to: path) { try $0.write([UInt8](data)) }
    }

    static func subset(_ set: FeatureSet, _ range: Range<Int>) -> FeatureSet {
        let d = set.dimension
        var skipped: [Int: String] = [:]
        for (index, reason) in set.skipped where range.contains(index) { skipped[index - range.lowerBound] = reason }
        return FeatureSet(dimension: d, paths: Array(set.paths[range]), labels: Array(set.labels[range]),
                          values: Array(set.values[(range.lowerBound * d)..<(range.upperBound * d)]), skipped: skipped)
    }
}
