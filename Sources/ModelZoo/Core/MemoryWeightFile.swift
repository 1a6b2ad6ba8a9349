/// Canonical weights held in memory, seen as a weight file: what a fine-tuned model is
/// before anyone saves it. It reads as the safetensors file `ModelWriter` would write (the
/// torchvision state_dict names, zoo's metadata), so verifying and loading it goes through
/// the same mapping and checks as the saved file would.
public final class MemoryWeightFile: WeightFile {
    public let path: String
    public var format: WeightFormat { .safetensors }
    public let producer: String?
    public let tensors: [TensorRecord]
    public let metadata: [String: String]
    private let values: [String: Tensor]

    /// `net`'s parameters and buffers from `weights`, described by `path` (not a file).
    public init(_ net: ResolvedNetwork, weights: [String: Tensor], classNames: [String]?, preset: WeightsPreset,
                path: String, producer: String) throws {
        let (state, _) = try ModelWriter.stateDict(net, weights: weights, path: path)
        self.path = path
        self.producer = producer
        tensors = state.map { TensorRecord(name: $0.name, shape: $0.tensor.shape, dtype: .float32, byteCount: $0.tensor.count * 4) }
        values = Dictionary(uniqueKeysWithValues: state.map { ($0.name, $0.tensor) })
        var metadata = [ZooMetadata.architecture: net.architecture.id, ZooMetadata.producer: producer,
                        ZooMetadata.preprocessing: preset.preprocessing.rawValue]
        if preset.isNamedVariant { metadata[ZooMetadata.preset] = preset.id }
        if let means = preset.meanBGR { metadata[ZooMetadata.meanBGR] = ZooMetadata.encode(means: means) }
        if let classNames { metadata[ZooMetadata.classNames] = ZooMetadata.encode(classNames: classNames) }
        self.metadata = metadata
    }

    public func load(_ name: String) throws -> Tensor {
        guard let tensor = values[name] else { throw ZooError.badTensor(path: path, tensor: name, reason: "not in memory") }
        return tensor
    }
}
