import Foundation

/// The one batched image classifier: decode, preprocess by the weights' preset, one oneDNN
/// forward pass per batch, softmax, top classes. `zoo predict`, `zoo evaluate` and
/// `Model.classify` all run images through it.
public final class Predictor {
    public struct Prediction: Sendable, Encodable {
        public let index: Int
        public let label: String
        public let probability: Double
    }

    public let model: LoadedModel
    public let preprocessing: Architecture.Preprocessing
    private let extractor: FeatureExtractor

    /// `batch` images per forward pass; `strict` refuses an unreadable image instead of
    /// skipping it (its row stays zeros and `logits` reports it).
    public init(model: LoadedModel, preprocessing: Architecture.Preprocessing? = nil, threads: Int? = nil,
                precision: Precision = .fp32, calibration: Int8Calibration? = nil,
                convolutions: ConvolutionAlgorithm = .winograd, batch: Int = 32,
                strict: Bool = true) throws {
        guard batch >= 1, batch <= 4096 else {
            throw ZooError.invalidParameter(name: "batch", message: "{batch} must be between 1 and 4096")
        }
        self.model = model
        self.preprocessing = preprocessing ?? model.preset.preprocessing
        var options = FeatureExtractor.Options()
        options.batch = batch
        options.threads = threads
        options.precision = precision
        options.calibration = calibration
        options.convolutions = convolutions
        options.strict = strict
        options.preset = model.preset
        options.preprocessing = preprocessing
        extractor = FeatureExtractor(plan: TransferPlan(whole: model.network), weights: model.weights, options: options)
    }

    /// The network's outputs for `paths`, one row each (`labels` ride along for callers
    /// that score them). `warn` hears of each skipped image; `progress` gets (done, total).
    public func logits(paths: [String], labels: [Int]? = nil, warn: (String) -> Void = { _ in },
                       progress: ((Int, Int) -> Void)? = nil) throws -> FeatureSet {
        try extractor.extract(paths: paths, labels: labels ?? [Int](repeating: 0, count: paths.count), weightsPath: "",
                              cacheBase: nil, warn: warn, progress: progress).features
    }

    /// The `top` most probable classes of each image, in the order given.
    public func classify(paths: [String], top: Int) throws -> [[Prediction]] {
        guard top >= 1 else { throw ZooError.invalidParameter(name: "top", message: "{top} must be at least 1, got \(top)") }
        let rows = try logits(paths: paths)
        let classes = rows.dimension
        return paths.indices.map { row in
            let p = Self.softmax(Array(rows.values[(row * classes)..<((row + 1) * classes)]))
            return p.indices.sorted { p[$0] > p[$1] }.prefix(top).map { i in
                let label = model.classNames.flatMap { i < $0.count ? $0[i] : nil } ?? "class \(i)"
                return Prediction(index: i, label: label, probability: p[i])
            }
        }
    }

    public func classify(path: String, top: Int) throws -> [Prediction] {
        try classify(paths: [path], top: top)[0]
    }

    public func probabilities(path: String) throws -> [Double] {
        Self.softmax(try logits(paths: [path]).values)
    }

    public static func softmax(_ logits: [Float]) -> [Double] {
        guard let maxLogit = logits.max() else { return [] }
        let e = logits.map { exp(Double($0 - maxLogit)) }
        let sum = e.reduce(0, +)
        return e.map { $0 / sum }
    }
}

extension TransferPlan {
    /// The whole network as the "backbone", nothing trained after it: what classifying
    /// runs (features are then the network's outputs).
    init(whole network: ResolvedNetwork) {
        self.source = network
        self.target = network
        self.cutIndex = network.layers.count
        self.backbone = network
        self.featureShape = network.layers.last?.output ?? network.input
    }
}
