/// Where a pretrained network is cut for transfer learning: the frozen backbone (run by
/// oneDNN once per image), and the trained tail (the new head, plus `trainLast` layers with
/// parameters before it, run forward and backward in Swift).
public struct TransferPlan: Sendable {
    /// The pretrained network at its own class count.
    public let source: ResolvedNetwork
    /// The same network with the head sized for `classes`.
    public let target: ResolvedNetwork
    /// Index of the first trained layer, the same in `source` and `target`.
    public let cutIndex: Int
    /// Layers 0..<cutIndex of `source`: what the feature extractor compiles.
    public let backbone: ResolvedNetwork
    /// The volume one image gives at the cut (the first trained layer's input).
    public let featureShape: Shape3
    /// Trained layers of `target`, from the cut to the head.
    public var trainedLayers: [ResolvedLayer] { Array(target.layers[cutIndex...]) }
    /// Name of the layer whose output the features are ("input" for the image itself).
    public var featureLayer: String { cutIndex == 0 ? Layer.networkInput : source.layers[cutIndex - 1].layer.name }

    /// Layer kinds the Swift trainer can run backward.
    static func isTrainable(_ layer: ResolvedLayer) -> Bool {
        switch layer.layer.op {
        case .linear, .conv, .batchNorm, .maxPool, .avgPool, .flatten, .dropout: return true
        // torchvision's adaptive pool is the identity at the sizes it was trained at.
        case .adaptiveAvgPool: return !layer.allocatesOutput
        default: return false
        }
    }

    /// Plans a cut of `source` with a new `classes`-way head that trains `trainLast`
    /// parameter layers before the head as well.
    public init(source: ResolvedNetwork, classes: Int, trainLast: Int) throws {
        let arch = source.architecture
        guard trainLast >= 0 else { throw ZooError.invalidParameter(name: "trainLast", message: "{trainLast} must be 0 or more, got \(trainLast)") }
        guard let headIndex = source.layers.lastIndex(where: { $0.layer.name == arch.headLayer }),
              headIndex == source.layers.count - 1, case .linear = source.layers[headIndex].layer.op else {
            throw ZooError.engineFailure(layer: arch.headLayer,
                                         reason: "\(arch.id): the head is not the network's final linear layer")
        }
        var cut = headIndex
        var remaining = trainLast
        while remaining > 0 {
            guard cut > 0 else {
                throw ZooError.invalidParameter(name: "trainLast", message:
                    "{trainLast} \(trainLast): \(arch.id) has only \(trainLast - remaining) layers with parameters before its head")
            }
            cut -= 1
            if !source.layers[cut].parameters.isEmpty { remaining -= 1 }
        }
        // Trained layers must form a plain chain of layers the Swift trainer can run backward.
        for index in cut..<source.layers.count {
            let layer = source.layers[index].layer
            let expectedInput = index == 0 ? Layer.networkInput : source.layers[index - 1].layer.name
            guard Self.isTrainable(source.layers[index]) else {
                throw ZooError.invalidParameter(name: "trainLast", message:
                    "{trainLast} \(trainLast) on \(arch.id) reaches layer '\(layer.name)' (\(layer.op.typeName)), "
                        + "which the trainer cannot run backward (it handles Linear, Conv, BatchNorm, MaxPool, AvgPool, "
                        + "Flatten, Dropout, and adaptive pooling that is the identity)")
            }
            guard layer.inputs == [expectedInput] else {
                throw ZooError.invalidParameter(name: "trainLast", message:
                    "{trainLast} \(trainLast) on \(arch.id) reaches layer '\(layer.name)', which reads "
                        + "\(layer.inputs.joined(separator: ", ")) rather than the layer before it: only a plain chain can be trained")
            }
        }
        let inputSize = Size2(source.input.h, source.input.w)
        self.source = source
        self.target = try arch.resolve(classes: classes, inputSize: inputSize)
        self.cutIndex = cut
        self.backbone = ResolvedNetwork(architecture: arch, classes: source.classes, input: source.input,
                                        layers: Array(source.layers[..<cut]))
        self.featureShape = cut == 0 ? source.input : source.layers[cut - 1].output
    }
}
