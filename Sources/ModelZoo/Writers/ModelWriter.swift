/// Writes canonical weights of a resolved network to any format `zoo convert` targets.
/// Each format's writer turns canonical names and layouts into its own; every write is
/// atomic (a temporary file beside the target, then a rename).
public enum ModelWriter {
    public struct Summary: Sendable {
        public let path: String
        public let format: WeightFormat
        public let tensors: Int
        public let parameters: Int
        /// Layout changes applied, for the user ("HWIO kernels", "fc1 rows C,H,W -> H,W,C").
        public let transforms: [String]
    }

    /// The format a path's extension asks for.
    public static func format(forPath path: String) -> WeightFormat? {
        let lower = path.lowercased()
        if lower.hasSuffix(".weights.h5") { return .kerasWeightsH5 }
        if lower.hasSuffix(".h5") || lower.hasSuffix(".hdf5") || lower.hasSuffix(".keras.h5") { return .kerasH5 }
        if lower.hasSuffix(".onnx") { return .onnx }
        if lower.hasSuffix(".safetensors") { return .safetensors }
        return nil
    }

    public static func write(_ net: ResolvedNetwork, weights: [String: Tensor], classNames: [String]?,
                             to path: String, format: WeightFormat, producer: String) throws -> Summary {
        switch format {
        case .safetensors:
            var tensors: [(name: String, tensor: Tensor)] = []
            for p in net.parameters + net.buffers {
                guard let t = weights[p.name] else {
                    throw ZooError.badTensor(path: path, tensor: p.name, reason: "no value to write")
                }
                tensors.append((p.name, t))
            }
            var metadata = ["format": "pt", "zoo.architecture": net.architecture.id, "zoo.producer": producer]
            if let names = classNames { metadata[ClassNames.metadataKey] = ClassNames.encode(names) }
            try SafetensorsWriter.write(tensors, metadata: metadata, to: path)
            return Summary(path: path, format: format, tensors: tensors.count, parameters: net.totalParameters,
                           transforms: ["none: torchvision state_dict names and layouts"])
        default:
            throw ZooError.invalidArgument("writing \(format.rawValue) is not supported yet")
        }
    }
}
