/// One classic network, declared once as data. The table printer, the weight mappings,
/// `verify`, the engine and the writers all read this, so they cannot disagree.
public struct Architecture: Sendable {
    public enum Family: String, Sendable, Codable, CaseIterable {
        case lenet = "LeNet", alexnet = "AlexNet", zfnet = "ZFNet", vgg = "VGG"
        case googlenet = "GoogLeNet", resnet = "ResNet"
    }

    /// How images are turned into the input tensor for weights trained with this spec.
    public enum Preprocessing: String, Sendable, Codable {
        /// Resize 256, centre crop 224, RGB in [0,1], ImageNet mean/std.
        case torchvision
        /// BGR, 0-255, per-channel ImageNet mean subtracted (Caffe and Keras "caffe" mode).
        case caffe
        /// One grey channel in [0,1] at the network's input size.
        case grayscaleUnit = "grayscale"
    }

    /// Stable id used on the command line (`vgg16`, `resnet50-keras`).
    public let id: String
    /// Human name, e.g. "VGG16".
    public let title: String
    public let family: Family
    /// Which variant of the family this is and whose weights it matches.
    public let variant: String
    /// Where the canonical parameter names come from.
    public let namingSource: String
    public let inputChannels: Int
    public let defaultInputSize: Size2
    /// False when the classifier is sized for one input (no adaptive pooling before it).
    public let acceptsOtherInputSizes: Bool
    public let defaultClasses: Int
    /// The final FC layer, replaced by transfer learning.
    public let headLayer: String
    /// Learnable parameters at the default class count, as published; nil where the only
    /// source is a graph file (tests compare against that file).
    public let publishedParameters: Int?
    /// The preprocessing of the weights the spec was written for: its standard preset's
    /// (`WeightsPreset.standard(for:)`). A loaded model's own is `LoadedModel.preset`.
    public let preprocessing: Preprocessing
    /// The data the spec's published weights were trained on, which names the standard
    /// preset's outputs.
    public let dataset: Dataset
    /// Other ids users might type for this spec.
    public let aliases: [String]
    /// Producers whose files this spec is the variant of (matched inside the file's
    /// producer string): breaks ties between specs that share every shape.
    public let producers: [String]
    /// False for the network without its classifier (Keras `include_top=False`): it ends at
    /// the last feature map, and `withoutTop()` made it.
    public let includeTop: Bool
    /// The head is the one `withPooledHead()` puts on a no-top network (global average
    /// pooling, then one dense layer named `head`), not the spec's own classifier.
    public let pooledHead: Bool
    private let makeLayers: @Sendable (_ classes: Int) -> [Layer]

    public init(id: String, title: String, family: Family, variant: String, namingSource: String,
                inputChannels: Int = 3, defaultInputSize: Size2, acceptsOtherInputSizes: Bool,
                defaultClasses: Int = 1000, headLayer: String, publishedParameters: Int?,
                preprocessing: Preprocessing, dataset: Dataset = .unspecified, aliases: [String] = [],
                producers: [String] = [], includeTop: Bool = true, pooledHead: Bool = false,
                layers: @escaping @Sendable (_ classes: Int) -> [Layer]) {
        self.id = id; self.title = title; self.family = family; self.variant = variant
        self.namingSource = namingSource; self.inputChannels = inputChannels
        self.defaultInputSize = defaultInputSize; self.acceptsOtherInputSizes = acceptsOtherInputSizes
        self.defaultClasses = defaultClasses; self.headLayer = headLayer
        self.publishedParameters = publishedParameters; self.preprocessing = preprocessing
        self.dataset = dataset
        self.aliases = aliases; self.producers = producers; self.includeTop = includeTop; self.pooledHead = pooledHead; self.makeLayers = layers
    }

    /// Whether the network ends in fully connected layers a no-top file leaves out.
    public var hasClassifier: Bool {
        layers().contains { if case .linear = $0.op { return true }; return false }
    }

    /// The network as keras.applications builds it with `include_top=False`: everything
    /// before the first fully connected layer, less the flatten, dropout and adaptive pool
    /// that only feed the classifier. It ends at the last feature map (VGG's last max pool,
    /// ResNet's last block), which is what Keras's no-top model outputs. Without the
    /// classifier nothing fixes the input size.
    public func withoutTop() -> Architecture {
        rebuilt(variant: variant + ", no top (include_top=False)", acceptsOtherInputSizes: true,
                publishedParameters: .some(nil), includeTop: false) { _, layers in Self.stripTop(layers) }
    }

    /// The layers before the classifier (and the flatten, dropout and adaptive pool that
    /// only feed it).
    static func stripTop(_ layers: [Layer]) -> [Layer] {
        var kept = Array(layers.prefix { if case .linear = $0.op { return false }; return true })
        while let last = kept.last {
            switch last.op {
            case .flatten, .dropout, .adaptiveAvgPool: kept.removeLast()
            default: return kept
            }
        }
        return kept
    }

    /// The network without its classifier plus the head keras.applications transfer
    /// learning puts on a no-top model: global average pooling (`head_pool`), then one dense
    /// layer (`head`). What `zoo finetune` trains on a no-top file, and what `verify` finds
    /// in the result.
    public func withPooledHead() -> Architecture {
        let base = includeTop ? variant : variant.replacingOccurrences(of: ", no top (include_top=False)", with: "")
        return rebuilt(variant: base + ", new head: global average pooling + dense", acceptsOtherInputSizes: true,
                       publishedParameters: .some(nil), includeTop: true, pooledHead: true, headLayer: "head") { classes, layers in
            var kept = Self.stripTop(layers)
            let last = kept.last?.name ?? Layer.networkInput
            kept.append(Layer(name: "head_pool", op: .adaptiveAvgPool(Size2(1)), inputs: [last]))
            kept.append(Layer(name: "head_flatten", op: .flatten, inputs: ["head_pool"]))
            kept.append(Layer(name: "head", op: .linear(outFeatures: classes, bias: true), inputs: ["head_flatten"]))
            return kept
        }
    }

    /// This architecture with some properties changed and its layer list passed through
    /// `transform`; everything else (includeTop, dataset, aliases...) is kept. The one way
    /// variants of a spec are made, so none of them forgets a property.
    func rebuilt(variant: String? = nil, acceptsOtherInputSizes: Bool? = nil, publishedParameters: Int?? = nil,
                 includeTop: Bool? = nil, pooledHead: Bool? = nil,
                 headLayer: String? = nil,
                 layers transform: @escaping @Sendable (_ classes: Int, [Layer]) -> [Layer] = { $1 }) -> Architecture {
        let make = makeLayers
        return Architecture(
            id: id, title: title, family: family, variant: variant ?? self.variant, namingSource: namingSource,
            inputChannels: inputChannels, defaultInputSize: defaultInputSize,
            acceptsOtherInputSizes: acceptsOtherInputSizes ?? self.acceptsOtherInputSizes,
            defaultClasses: defaultClasses, headLayer: headLayer ?? self.headLayer,
            publishedParameters: publishedParameters ?? self.publishedParameters,
            preprocessing: preprocessing, dataset: dataset, aliases: aliases, producers: producers,
            includeTop: includeTop ?? self.includeTop, pooledHead: pooledHead ?? self.pooledHead
        ) { classes in transform(classes, make(classes)) }
    }

    /// The layer list for a given head size.
    public func layers(classes: Int? = nil) -> [Layer] {
        makeLayers(classes ?? defaultClasses)
    }
}

/// Declares a network layer by layer. Each call appends a layer reading from the previous
/// one (or from `from:`) and returns its name, so Inception branches and ResNet shortcuts
/// read like the diagrams they come from.
public final class NetworkBuilder {
    public private(set) var layers: [Layer] = []
    /// The layer the next call reads from when `from:` is not given.
    public var current: String = Layer.networkInput

    public init() {}

    @discardableResult
    private func add(_ name: String, _ op: LayerOp, from: [String]?, _ act: Activation?) -> String {
        layers.append(Layer(name: name, op: op, inputs: from ?? [current], activation: act))
        current = name
        return name
    }

    @discardableResult
    public func conv(_ name: String, _ out: Int, kernel: Int, stride: Int = 1, pad: Int = 0,
                     groups: Int = 1, bias: Bool = true, act: Activation? = nil,
                     from: String? = nil) -> String {
        conv(name, out, kernel: Size2(kernel), stride: Size2(stride), padding: Padding(pad),
             groups: groups, bias: bias, act: act, from: from)
    }

    @discardableResult
    public func conv(_ name: String, _ out: Int, kernel: Size2, stride: Size2, padding: Padding,
                     groups: Int = 1, bias: Bool = true, act: Activation? = nil,
                     from: String? = nil) -> String {
        let spec = ConvSpec(outChannels: out, kernel: kernel, stride: stride, padding: padding,
                            groups: groups, bias: bias)
        return add(name, .conv(spec), from: from.map { [$0] }, act)
    }

    @discardableResult
    public func batchNorm(_ name: String, epsilon: Double, act: Activation? = nil,
                          from: String? = nil) -> String {
        add(name, .batchNorm(epsilon: epsilon), from: from.map { [$0] }, act)
    }

    @discardableResult
    public func maxPool(_ name: String, kernel: Int, stride: Int, pad: Int = 0, ceil: Bool = false,
                        from: String? = nil) -> String {
        maxPool(name, kernel: kernel, stride: stride, padding: Padding(pad), ceil: ceil, from: from)
    }

    @discardableResult
    public func maxPool(_ name: String, kernel: Int, stride: Int, padding: Padding, ceil: Bool = false,
                        from: String? = nil) -> String {
        let spec = PoolSpec(kernel: Size2(kernel), stride: Size2(stride), padding: padding,
                            ceilMode: ceil, countIncludePad: false)
        return add(name, .maxPool(spec), from: from.map { [$0] }, nil)
    }

    @discardableResult
    public func avgPool(_ name: String, kernel: Int, stride: Int, padding: Padding = .zero,
                        ceil: Bool = false, countIncludePad: Bool = true, from: String? = nil) -> String {
        let spec = PoolSpec(kernel: Size2(kernel), stride: Size2(stride), padding: padding,
                            ceilMode: ceil, countIncludePad: countIncludePad)
        return add(name, .avgPool(spec), from: from.map { [$0] }, nil)
    }

    @discardableResult
    public func adaptiveAvgPool(_ name: String, _ size: Int) -> String {
        add(name, .adaptiveAvgPool(Size2(size)), from: nil, nil)
    }

    @discardableResult
    public func lrn(_ name: String, size: Int, alpha: Double, beta: Double, k: Double) -> String {
        add(name, .lrn(LRNSpec(size: size, alpha: alpha, beta: beta, k: k)), from: nil, nil)
    }

    @discardableResult
    public func flatten(_ name: String = "flatten") -> String { add(name, .flatten, from: nil, nil) }

    @discardableResult
    public func linear(_ name: String, _ out: Int, bias: Bool = true, act: Activation? = nil) -> String {
        add(name, .linear(outFeatures: out, bias: bias), from: nil, act)
    }

    @discardableResult
    public func dropout(_ name: String, _ rate: Double) -> String {
        add(name, .dropout(rate: rate), from: nil, nil)
    }

    @discardableResult
    public func concat(_ name: String, _ inputs: [String]) -> String {
        add(name, .concat, from: inputs, nil)
    }

    @discardableResult
    public func add(_ name: String, _ inputs: [String], act: Activation? = nil) -> String {
        add(name, .add, from: inputs, act)
    }
}
