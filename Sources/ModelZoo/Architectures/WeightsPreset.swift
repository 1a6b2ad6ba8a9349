/// What a set of weights needs beside its architecture, as torchvision's `Weights` carry
/// `transforms` and `meta`: how images become its input, what its outputs are called, where
/// the weights come from and at what size they were trained. An architecture is the shape of
/// the network; a preset is one training of it. The ONNX zoo's Caffe2 ResNet50 is torchvision's
/// ResNet50 layer for layer, trained with Caffe's preprocessing: the preset `resnet50-caffe2`
/// of the architecture `resnet50`, not an architecture of its own.
public struct WeightsPreset: Sendable, Equatable {
    /// Stable id (`resnet50-caffe2`); an architecture's own preset has the architecture's id.
    public var id: String
    /// The id of the architecture these weights are an instance of.
    public var architecture: String
    /// Where the weights come from, in words.
    public var source: String
    public var preprocessing: Architecture.Preprocessing
    /// Per-channel means (B, G, R, or one for all) the caffe preprocessing subtracts in
    /// place of ImageNet's (a caffemodel's own transform_param, or stored by zoo's writers).
    public var meanBGR: [Float]?
    /// The input size the weights were trained at; nil takes the network's.
    public var inputSize: Size2?
    /// The names of the outputs, in order; nil where the weights' classes are not known.
    /// They apply only to a head with exactly this many outputs.
    public var classNames: [String]?
    /// Producers (matched inside the file's producer string and convention) whose files
    /// hold these weights: how a file is given this preset rather than the default one.
    public var producers: [String]
    /// Other ids users might type for it.
    public var aliases: [String]

    public init(id: String, architecture: String, source: String, preprocessing: Architecture.Preprocessing,
                meanBGR: [Float]? = nil, inputSize: Size2? = nil, classNames: [String]?,
                producers: [String] = [], aliases: [String] = []) {
        self.id = id; self.architecture = architecture; self.source = source; self.preprocessing = preprocessing
        self.meanBGR = meanBGR; self.inputSize = inputSize; self.classNames = classNames
        self.producers = producers; self.aliases = aliases
    }

    /// The class names for a head of `classes` outputs: the preset's own when the head is
    /// the one it was trained with, else none (a new head's names travel in the file).
    public func classNames(forHead classes: Int) -> [String]? {
        classNames.flatMap { $0.count == classes ? $0 : nil }
    }

    /// Whether this preset is not the architecture's default one.
    public var isNamedVariant: Bool { id != architecture }
}

extension WeightsPreset {
    /// The preset the registry's weights of `architecture` have when nothing else says
    /// otherwise. Each spec declares the dataset its published weights were trained on.
    public static func standard(for architecture: Architecture) -> WeightsPreset {
        return WeightsPreset(id: architecture.id, architecture: architecture.id, source: architecture.variant,
                             preprocessing: architecture.preprocessing, inputSize: architecture.defaultInputSize,
                             classNames: architecture.dataset.classNames(count: architecture.defaultClasses),
                             producers: architecture.producers)
    }

    /// Every preset, each architecture's own first, in `zoo list` order, then the named
    /// variants.
    public static let all: [WeightsPreset] = ArchitectureRegistry.all.map(standard(for:)) + registered

    /// Weights that are another training of a registered architecture.
    static let registered: [WeightsPreset] = [
        // The onnx wheel's light_resnet50 (model zoo resnet50 v1, a Caffe2 export): its
        // graph is torchvision's ResNet50 (no conv biases, stride on the 3x3, BN eps 1e-5)
        // under Caffe2's names and trained on BGR 0-255 minus the ImageNet means.
        WeightsPreset(id: "resnet50-caffe2", architecture: "resnet50",
                      source: "the ONNX model zoo's Caffe2 export of ResNet50 (resnet50 v1 in the zoo, torchvision's geometry)",
                      preprocessing: .caffe, inputSize: Size2(224), classNames: ImageNetClasses.names,
                      producers: ["caffe2"], aliases: ["resnet50-onnxzoo"]),
    ]

    /// Looks a preset up by id or alias, case-insensitively; nil when none has it.
    public static func find(_ id: String) -> WeightsPreset? {
        let key = id.lowercased()
        return all.first { $0.id == key || $0.aliases.contains(key) }
    }

    /// The presets of one architecture, its own first.
    public static func presets(of architectureID: String) -> [WeightsPreset] {
        all.filter { $0.architecture == architectureID }
    }

    /// The preset whose producers match a file's producer and convention, among an
    /// architecture's presets; nil when none names the producer.
    static func matching(producer: String, architecture: String) -> WeightsPreset? {
        let text = producer.lowercased()
        // The longest producer name wins: a "caffe2" file also contains "caffe".
        return presets(of: architecture)
            .flatMap { preset in preset.producers.filter { text.contains($0) }.map { (preset, $0.count) } }
            .max { $0.1 < $1.1 }?.0
    }
}

extension Architecture {
    /// The data a spec's published weights were trained on: it says what the default
    /// preset's outputs are called.
    public enum Dataset: String, Sendable, Codable {
        case imagenet1k = "ImageNet-1k"
        /// MNIST-like digits; the outputs are not named (predict prints "class N").
        case digits
        /// Nothing published: test nets.
        case unspecified

        func classNames(count: Int) -> [String]? {
            switch self {
            case .imagenet1k: return count == ImageNetClasses.names.count ? ImageNetClasses.names : nil
            case .digits, .unspecified: return nil
            }
        }
    }
}

extension WeightsPreset {
    /// The preset of a file's weights: `requested` when the caller named one; else the one
    /// zoo's writers recorded with them; else the preset made for the file's producer (a
    /// Caffe2 export of resnet50); else the architecture's standard preset. What the file
    /// stores (preprocessing, means) and what a caffemodel declares (its transform_param
    /// means; Caffe weights take BGR 0-255 whatever spec they map onto) override it.
    public static func resolve(for file: WeightFile, architecture: Architecture, requested: WeightsPreset? = nil) -> WeightsPreset {
        let recorded = file.metadata[ZooMetadata.preset].flatMap(find).flatMap { $0.architecture == architecture.id ? $0 : nil }
        let producer = (file.producer ?? "").lowercased()
        var preset = requested.flatMap { $0.architecture == architecture.id ? $0 : nil }
            ?? recorded
            ?? matching(producer: producer, architecture: architecture.id)
            ?? standard(for: architecture)
        if let net = file.graph?.caffe {
            preset.preprocessing = .caffe
            if let means = net.transform?.meanValues, means.count == 1 || means.count == 3 { preset.meanBGR = means }
            if preset.source == architecture.variant { preset.source = "a Caffe model (\(file.producer ?? "caffe"))" }
        }
        if let stored = file.metadata[ZooMetadata.preprocessing], let preprocessing = Architecture.Preprocessing(rawValue: stored) {
            preset.preprocessing = preprocessing
        }
        if let means = file.metadata[ZooMetadata.meanBGR].flatMap(ZooMetadata.decode(means:)) { preset.meanBGR = means }
        return preset
    }
}
