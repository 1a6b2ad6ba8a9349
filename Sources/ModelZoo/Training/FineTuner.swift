import Foundation

/// `zoo finetune` as a library call: load a pretrained file, cut it, extract features of an
/// ImageFolder through the frozen backbone, train a new head (and optionally the last
/// layers), and write the whole model with the new class names. OUT appears only complete.
public enum FineTuner {
    public struct Options {
        public var weightsPath: String
        public var architecture: String?
        public var dataPath: String
        public var outputPath: String
        public var hyper = TailTrainer.Hyperparameters()
        public var validationFraction = 0.2
        public var trainLast = 0
        public var strict = false
        public var resume = false
        public var cacheFeatures = true
        public var threads: Int?
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
    }

    public static func checkpointPath(for output: String) -> String { output + ".checkpoint.safetensors" }

    public static func run(_ options: Options, callbacks: Callbacks) throws -> Result {
        let out = options.outputPath
        guard let format = ModelWriter.format(forPath: out) else {
            throw ZooError.invalidArgument(
                "\(out): cannot tell the output format from the extension; use .safetensors, .onnx, .h5, .weights.h5 or .pth")
        }
        if samePath(out, options.weightsPath) {
            throw ZooError.invalidArgument("\(out): the output would overwrite the input weights; choose another --out")
        }
        let outDirectory = URL(fileURLWithPath: out).deletingLastPathComponent().path
        guard ImageFolder.isDirectory(outDirectory) else {
            throw ZooError.writeFailed(path: out, reason: "folder \(outDirectory) does not exist")
        }
        guard options.extractionBatch >= 1, options.extractionBatch <= 4096 else {
            throw ZooError.invalidArgument("feature batch must be between 1 and 4096")
        }

        let model = try ModelLoader.load(path: options.weightsPath, architecture: options.architecture)
        if model.report.noTop {
            // The head would be global average pooling and one dense layer, which no spec
            // here declares, so nothing could read the result back as a known network.
            throw ZooError.invalidArgument("\(options.weightsPath) holds \(model.architecture.id) without its classifier "
                + "(include_top=False): putting a new head on a no-top file is not supported yet; use weights with their top")
        }
        let folder = try ImageFolder.forTraining(root: options.dataPath, validationFraction: options.validationFraction,
                                                 seed: options.hyper.seed)
        let plan = try TransferPlan(source: model.network, classes: folder.classNames.count, trainLast: options.trainLast)
        let splitText: String
        switch folder.split {
        case .folders: splitText = "train/ and val/ folders"
        case let .random(fraction, seed): splitText = String(format: "%.0f%% of each class held out, seed %llu", fraction * 100, seed)
        case .none: splitText = "no validation set"
        }
        callbacks.log("\(model.architecture.id) from \(options.weightsPath): new \(folder.classNames.count)-class head "
                      + "'\(model.architecture.headLayer)'; classes \(folder.classNames.joined(separator: ", "))")
        callbacks.log("data: \(folder.train.count) training and \(folder.validation.count) validation images (\(splitText))")
        callbacks.log("features: output of '\(plan.featureLayer)' (\(plan.featureShape.count) values per image); "
                      + "training \(plan.trainedLayers.filter { !$0.parameters.isEmpty }.map(\.layer.name).joined(separator: ", "))")

        var extractorOptions = FeatureExtractor.Options()
        extractorOptions.batch = options.extractionBatch
        extractorOptions.threads = options.threads
        extractorOptions.strict = options.strict
        let extractor = FeatureExtractor(plan: plan, weights: model.weights, options: extractorOptions)
        let samples = folder.train + folder.validation
        let paths = samples.map(\.path), labels = samples.map(\.label)
        let extraction = try extractor.extract(paths: paths, labels: labels, weightsPath: options.weightsPath,
                                               cacheBase: options.cacheFeatures ? out : nil, warn: callbacks.warn,
                                               progress: callbacks.extractionProgress)
        if extraction.fromCache, let cache = extraction.cachePath {
            callbacks.log("reusing cached features from \(cache)")
        } else {
            callbacks.log(String(format: "extracted features of %d images: %.1f img/s", paths.count,
                                 extraction.imagesPerSecond))
        }
        let all = extraction.features
        let trainSet = subset(all, 0..<folder.train.count)
        let valSet = subset(all, folder.train.count..<samples.count)
        // A class whose every training image was unreadable cannot be learnt.
        let usableLabels = Set(trainSet.usableIndices.map { trainSet.labels[$0] })
        for (label, name) in folder.classNames.enumerated() where !usableLabels.contains(label) {
            throw ZooError.invalidArgument("class '\(name)' has no readable training image")
        }

        let trainer = try TailTrainer(plan: plan, pretrained: model.weights, hyper: options.hyper)
        let checkpoint = checkpointPath(for: out)
        let fingerprint = String(format: "%016llx", FNV1a.hash(
            extractor.cacheKey(paths: paths, labels: labels, weightsPath: options.weightsPath)
                + "\(options.hyper) trainLast=\(options.trainLast) classes=\(folder.classNames)"))
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
        let skipped = all.skipped.keys.sorted().map { all.paths[$0] }
        let finished = (resumeState?.finishedEpochs ?? 0) + outcome.epochsRun
        guard finished >= options.hyper.epochs else {
            callbacks.log("stopped after epoch \(finished); \(out) not written; continue with --resume")
            return Result(written: nil, classNames: folder.classNames, trainImages: trainSet.usableIndices.count,
                          validationImages: valSet.usableIndices.count, skippedImages: skipped,
                          bestEpoch: outcome.bestEpoch, bestValidationAccuracy: outcome.bestValidationAccuracy,
                          featuresFromCache: extraction.fromCache, extractionImagesPerSecond: extraction.imagesPerSecond,
                          featureLayer: plan.featureLayer, trainedLayers: plan.trainedLayers.map(\.layer.name))
        }

        var weights = model.weights
        for spec in plan.source.layers[plan.cutIndex...].flatMap({ $0.parameters }) { weights[spec.name] = nil }
        for (name, tensor) in outcome.weights { weights[name] = tensor }
        let summary = try ModelWriter.write(plan.target, weights: weights, classNames: folder.classNames, to: out,
                                            format: format, producer: "zoo finetune")
        try? FileManager.default.removeItem(atPath: checkpoint)
        let best = outcome.bestValidationAccuracy.map { String(format: ", val %.1f%%", $0 * 100) } ?? ""
        callbacks.log("best epoch \(outcome.bestEpoch)\(best); wrote \(summary.format.rawValue) \(out)")
        return Result(written: summary, classNames: folder.classNames, trainImages: trainSet.usableIndices.count,
                      validationImages: valSet.usableIndices.count, skippedImages: skipped,
                      bestEpoch: outcome.bestEpoch, bestValidationAccuracy: outcome.bestValidationAccuracy,
                      featuresFromCache: extraction.fromCache, extractionImagesPerSecond: extraction.imagesPerSecond,
                      featureLayer: plan.featureLayer, trainedLayers: plan.trainedLayers.map(\.layer.name))
    }

    static func subset(_ set: FeatureSet, _ range: Range<Int>) -> FeatureSet {
        let d = set.dimension
        var skipped: [Int: String] = [:]
        for (index, reason) in set.skipped where range.contains(index) { skipped[index - range.lowerBound] = reason }
        return FeatureSet(dimension: d, paths: Array(set.paths[range]), labels: Array(set.labels[range]),
                          values: Array(set.values[(range.lowerBound * d)..<(range.upperBound * d)]), skipped: skipped)
    }

    /// Whether two paths name the same file (after resolving `..` and symbolic links).
    static func samePath(_ a: String, _ b: String) -> Bool {
        let ua = URL(fileURLWithPath: a).standardizedFileURL.resolvingSymlinksInPath()
        let ub = URL(fileURLWithPath: b).standardizedFileURL.resolvingSymlinksInPath()
        return ua.path == ub.path
    }
}
