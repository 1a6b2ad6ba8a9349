import Foundation

/// A classic CNN with its weights, verified on the way in: the library's entry point.
///
/// ```swift
/// let model = try Model.load("Fixtures/lenet/lenet5_digits04.onnx")
/// print(model.verification.confidence, model.verification.problems)
/// let top = try model.classify(URL(fileURLWithPath: "digit.png"), top: 3)
/// let tuned = try model.finetuned(on: ImageFolderSource("Fixtures/digits59"), progress: { print($0) })
/// try tuned.save("digits59.safetensors")
/// ```
///
/// A file that is not a complete, finite instance of its architecture does not load:
/// `load` throws `ModelLoader.VerificationFailed`, whose `report` names every problem.
public struct Model {
    public let architecture: Architecture
    /// The network at this model's class count and input size.
    public let network: ResolvedNetwork
    /// Canonical (torchvision) names and layouts.
    public let weights: [String: Tensor]
    public let verification: VerifyReport
    /// How images become this model's input, where the weights come from, and the names of
    /// the outputs of the head they were trained with.
    public let preset: WeightsPreset
    /// The names of this model's outputs: stored with the weights (a fine-tuned head), or
    /// the preset's when the head is the preset's own; nil when unknown.
    public let classNames: [String]?
    /// The file it came from, its format and its producer.
    public let provenance: Provenance

    public struct Provenance: Sendable {
        public var path: String
        public var format: WeightFormat
        public var producer: String?
    }

    public struct Classification: Sendable {
        public let index: Int
        public let label: String
        public let probability: Double
    }

    /// Opens, verifies and loads a weight file in any format `zoo` reads. Without
    /// `architecture`, the file's tensors and graph decide which network it is.
    public static func load(_ path: String, architecture: Architecture? = nil, inputSize: Size2? = nil) throws -> Model {
        try Model(ModelLoader.load(path: path, architecture: architecture?.id, inputSize: inputSize))
    }

    init(_ loaded: LoadedModel) {
        architecture = loaded.architecture
        network = loaded.network
        weights = loaded.weights
        verification = loaded.report
        preset = loaded.preset
        classNames = loaded.classNames
        provenance = Provenance(path: loaded.file.path, format: loaded.file.format, producer: loaded.file.producer)
        self.loaded = loaded
    }

    private let loaded: LoadedModel

    /// The `top` most probable classes of one image (JPEG or PNG), preprocessed by the
    /// model's preset.
    /// `.int8` uses `calibration`, else the one saved beside the weights (`calibrateInt8`).
    public func classify(_ image: URL, top: Int = 5, precision: Precision = .fp32,
                         calibration: Int8Calibration? = nil) throws -> [Classification] {
        guard top >= 1 else { throw ZooError.invalidArgument("top must be at least 1, got \(top)") }
        let predictor = try Predictor(model: loaded, preprocessing: preset.preprocessing, precision: precision,
                                      calibration: try int8Scales(precision, calibration))
        return try predictor.classify(path: image.path, top: top).map {
            Classification(index: $0.index, label: $0.label, probability: $0.probability)
        }
    }

    /// Logits for a batch [N, C, H, W] in the canonical NCHW layout.
    public func logits(_ input: Tensor, precision: Precision = .fp32, calibration: Int8Calibration? = nil) throws -> Tensor {
        guard input.shape.count == 4 else {
            throw ZooError.invalidArgument("input must be [N, C, H, W], got \(input.shape)")
        }
        return try Network(network, weights: weights, batch: input.shape[0], precision: precision,
                           calibration: try int8Scales(precision, calibration)).forward(input)
    }

    /// Measures int8 activation ranges on the images under `folder` (through the model's
    /// preprocessing) and, with `save`, writes them beside the weights for later runs.
    /// `agreement`: the share of those images whose float32 top-1 class int8 must keep;
    /// blocks are kept out of int8 until it does (see `Int8Calibration`; 0: all int8).
    public func calibrateInt8(on folder: URL, save: Bool = true,
                              agreement: Double = Int8Calibration.defaultAgreementTarget) throws -> Int8Calibration {
        let calibration = try Int8Calibration.calibrate(model: loaded, directory: folder.path,
                                                        preprocessing: preset.preprocessing, agreementTarget: agreement)
        if save { try calibration.write(to: Int8Calibration.path(besideWeights: provenance.path)) }
        return calibration
    }

    private func int8Scales(_ precision: Precision, _ given: Int8Calibration?) throws -> Int8Calibration? {
        guard precision == .int8 else { return nil }
        if let given { return given }
        return try Int8Calibration.resolve(model: loaded, weightsPath: provenance.path, directory: nil)
    }

    /// A new head for the class folders of `folder`, fitted on this model's frozen features
    /// the way `zoo finetune` does with its defaults; returns the tuned model, with its
    /// class names and this model's preset, verified as a loaded file is. The weights stay
    /// in memory: nothing is written (an SGD run's checkpoints go to a scratch folder that is
    /// removed afterwards); `save` writes the result.
    public func finetuned(on folder: ImageFolderSource, options: (inout FineTuner.Options) -> Void = { _ in },
                          progress: @escaping (String) -> Void = { _ in }) throws -> Model {
        let scratch = FileManager.default.temporaryDirectory
            .appendingPathComponent("zoo-finetune-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        var settings = FineTuner.Options(weightsPath: provenance.path, architecture: architecture.id,
                                         dataPath: folder.path, outputPath: scratch.appendingPathComponent("tuned").path)
        settings.cacheFeatures = false
        options(&settings)
        settings.outputPath = scratch.appendingPathComponent("tuned").path
        let tuned = FineTuner.TunedWeights()
        _ = try FineTuner.run(settings, model: loaded, destination: .memory(tuned), callbacks: .init(log: progress, warn: progress))
        guard let network = tuned.network else {
            throw ZooError.invalidParameter(name: "options", message: "the run stopped before the head was trained ({options} stopAfterEpochs)")
        }
        let file = try MemoryWeightFile(network, weights: tuned.weights, classNames: tuned.classNames, preset: preset,
                                        path: provenance.path + " (fine-tuned on \(folder.path))", producer: "zoo finetune")
        return try Model(ModelLoader.load(file: file, spec: architecture, preset: preset,
                                          inputSize: Size2(network.input.h, network.input.w)))
    }

    /// Writes the model, with its class names, in the format `path`'s extension names
    /// (.safetensors, .onnx, .h5, .weights.h5, .pth). Never replaces the file it came from.
    @discardableResult
    public func save(_ path: String) throws -> ModelWriter.Summary {
        guard let format = ModelWriter.format(forPath: path) else {
            throw ZooError.invalidArgument("\(path): cannot tell the output format from the extension")
        }
        try OutputTarget.refuseOverwriting(input: provenance.path, output: path, parameter: "path")
        return try ModelWriter.write(network, weights: weights, classNames: classNames, to: path, format: format,
                                     producer: "modelzoo", source: provenance.path, preset: preset)
    }
}

/// A folder of images, one subfolder per class (with `train/` and `val/` inside, or split
/// by `zoo finetune`'s rules).
public struct ImageFolderSource: Sendable {
    public let path: String
    public init(_ path: String) { self.path = path }
}
