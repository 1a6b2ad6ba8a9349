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
        if lower.hasSuffix(".keras") { return .keras }
        if lower.hasSuffix(".h5") || lower.hasSuffix(".hdf5") || lower.hasSuffix(".keras.h5") { return .kerasH5 }
        if lower.hasSuffix(".onnx") { return .onnx }
        if lower.hasSuffix(".safetensors") { return .safetensors }
        if lower.hasSuffix(".pth") || lower.hasSuffix(".pt") { return .pth }
        return nil
    }

    /// Checks that `format` can hold `net` exactly, before anything is written: Keras has
    /// no LRN or ceil-mode pooling, and some networks have no Keras model at all.
    public static func checkExpressible(_ net: ResolvedNetwork, as format: WeightFormat) throws {
        switch format {
        case .kerasH5, .kerasWeightsH5: _ = try KerasLayout.plan(net)
        case .keras: try KerasArchiveWriter.check(net)
        case .onnx, .safetensors, .pth: break
        case .hdf5, .npy, .caffemodel:
            throw ZooError.invalidArgument("cannot write \(format.rawValue): use onnx, keras, keras-h5, keras-weights-h5, safetensors or pth")
        }
    }

    /// Writes `weights` (canonical names and layouts) as `format`. `producer` says what made
    /// them ("zoo finetune", "zoo convert from x.onnx"); `source` is the file converted from;
    /// `preset` is the one the weights were loaded with (nil: the architecture's standard one).
    /// `stored` (safetensors and ONNX only): tensors the input file still holds, copied file
    /// to file (or transposed on the way, `StoredTensor`) instead of taken from `weights`.
    public static func write(_ net: ResolvedNetwork, weights: [String: Tensor], classNames: [String]?,
                             to path: String, format: WeightFormat, producer: String,
                             source: String? = nil, preset: WeightsPreset? = nil) throws -> Summary {
        try write(net, weights: weights, stored: [:], classNames: classNames, to: path, format: format,
                  producer: producer, source: source, preset: preset)
    }

    /// `beforeCommit` (with `stored`) runs when everything is written, before the file takes
    /// the target's name: throwing leaves the target as it was.
    static func write(_ net: ResolvedNetwork, weights: [String: Tensor], stored: [String: StoredTensor],
                      classNames: [String]?, to path: String, format: WeightFormat, producer: String,
                      source: String? = nil, preset: WeightsPreset? = nil,
                      beforeCommit: (() throws -> Void)? = nil) throws -> Summary {
        guard stored.isEmpty || format == .safetensors || format == .onnx else {
            throw ZooError.invalidArgument("tensors copied file to file are written to safetensors and ONNX only")
        }
        var metadata = [ZooMetadata.architecture: net.architecture.id, ZooMetadata.producer: producer]
        // The preprocessing the weights were trained with travels with them: a head fitted
        // on a Caffe VGG's features must see Caffe's BGR minus the mean, although the vgg16
        // spec's own default is torchvision's.
        let preset = preset ?? WeightsPreset.standard(for: net.architecture)
        if preset.isNamedVariant { metadata[ZooMetadata.preset] = preset.id }
        metadata[ZooMetadata.preprocessing] = preset.preprocessing.rawValue
        if let means = preset.meanBGR { metadata[ZooMetadata.meanBGR] = ZooMetadata.encode(means: means) }
        if let names = classNames { metadata[ZooMetadata.classNames] = ZooMetadata.encode(classNames: names) }
        if let source { metadata[ZooMetadata.source] = source }
        let tensorCount = net.parameters.count + net.buffers.count
        switch format {
        case .safetensors, .pth:
            var transforms = ["none: torchvision state_dict names and layouts"]
            if format == .safetensors {
                let (tensors, counters) = try statePayloads(net, weights: weights, stored: stored, path: path)
                metadata["format"] = "pt"
                try SafetensorsWriter.write(payloads: tensors, metadata: metadata, int64Scalars: counters, to: path,
                                            beforeCommit: beforeCommit)
                if !counters.isEmpty { transforms.append("\(counters.count) BatchNorm num_batches_tracked counters added (int64, 0)") }
                return Summary(path: path, format: format, tensors: tensors.count + counters.count,
                               parameters: net.totalParameters, transforms: transforms)
            } else {
                let (tensors, counters) = try stateDict(net, weights: weights, path: path)
                // A state_dict has no place for strings that load_state_dict(strict=True)
                // would not call unexpected keys: the architecture and source go unrecorded.
                try PthWriter.write(tensors, int64Scalars: counters, to: path)
                transforms.append("zip layout of torch >= 1.6, state_dict only (no metadata: torch.load(weights_only=True) reads it)")
                if !counters.isEmpty { transforms.append("\(counters.count) BatchNorm num_batches_tracked counters added (int64, 0)") }
                return Summary(path: path, format: format, tensors: tensors.count + counters.count,
                               parameters: net.totalParameters, transforms: transforms)
            }
        case .onnx:
            try ONNXWriter.write(net, weights: weights, stored: stored, metadata: metadata, to: path,
                                 beforeCommit: beforeCommit)
            var transforms = ["graph from the \(net.architecture.id) spec, opset \(ONNXWriter.opsetVersion), "
                + "input '\(ONNXWriter.inputName)' [batch, \(net.input.c), \(net.input.h), \(net.input.w)], output '\(ONNXWriter.outputName)'",
                "initializers named by torchvision state_dict keys, layouts unchanged (OIHW, [out,in])"]
            if net.layers.contains(where: { if case .batchNorm = $0.layer.op { return true }; return false }) {
                transforms.append("BatchNorm kept unfolded")
            }
            return Summary(path: path, format: format, tensors: tensorCount, parameters: net.totalParameters,
                           transforms: transforms)
        case .kerasH5, .kerasWeightsH5:
            let plan = try KerasLayout.plan(net)
            try KerasWriter.write(net, weights: weights, plan: plan, layout: format == .kerasH5 ? .legacy : .keras3,
                                  attributes: metadata, to: path)
            return Summary(path: path, format: format, tensors: plan.layers.reduce(0) { $0 + $1.weights.count },
                           parameters: net.totalParameters, transforms: plan.transformLabels)
        case .keras:
            let plan = try KerasArchiveWriter.write(net, weights: weights, attributes: metadata, to: path)
            return Summary(path: path, format: format, tensors: plan.layers.reduce(0) { $0 + $1.weights.count },
                           parameters: net.totalParameters,
                           transforms: plan.transformLabels + ["config.json: the functional model of \(plan.namingSource.hasPrefix("keras.applications") ? plan.namingSource : "Tools/keras_models.py"); keras.models.load_model reads it"])
        case .hdf5, .npy, .caffemodel:
            throw ZooError.invalidArgument("writing \(format.rawValue) is not supported: use onnx, keras, keras-h5, keras-weights-h5, safetensors or pth")
        }
    }

    /// `stateDict` with tensors that may still be in the input file.
    static func statePayloads(_ net: ResolvedNetwork, weights: [String: Tensor], stored: [String: StoredTensor], path: String) throws
        -> (tensors: [(name: String, shape: [Int], payload: TensorPayload)], counters: [(name: String, value: Int64)]) {
        var tensors: [(name: String, shape: [Int], payload: TensorPayload)] = []
        for p in net.parameters + net.buffers {
            if let tensor = stored[p.name], tensor.span.byteCount == p.count * MemoryLayout<Float>.size {
                tensors.append((p.name, p.shape, .stored(tensor)))
                continue
            }
            guard let t = weights[p.name] else {
                throw ZooError.badTensor(path: path, tensor: p.name, reason: "no value to write")
            }
            guard t.shape == p.shape else {
                throw ZooError.badTensor(path: path, tensor: p.name, reason: "has shape \(t.shape), the network needs \(p.shape)")
            }
            tensors.append((p.name, p.shape, .values(t.data)))
        }
        return (tensors, batchNormCounters(net))
    }

    static func batchNormCounters(_ net: ResolvedNetwork) -> [(name: String, value: Int64)] {
        net.layers.compactMap { layer -> (name: String, value: Int64)? in
            if case .batchNorm = layer.layer.op { return (layer.layer.name + ".num_batches_tracked", 0) }
            return nil
        }
    }

    /// The torchvision state_dict of `net`: parameters and buffers in spec order, then the
    /// `num_batches_tracked` step counter torch's BatchNorm2d keeps and strict loading expects.
    static func stateDict(_ net: ResolvedNetwork, weights: [String: Tensor], path: String) throws
        -> (tensors: [(name: String, tensor: Tensor)], counters: [(name: String, value: Int64)]) {
        var tensors: [(name: String, tensor: Tensor)] = []
        for p in net.parameters + net.buffers {
            guard let t = weights[p.name] else {
                throw ZooError.badTensor(path: path, tensor: p.name, reason: "no value to write")
            }
            guard t.shape == p.shape else {
                throw ZooError.badTensor(path: path, tensor: p.name, reason: "has shape \(t.shape), the network needs \(p.shape)")
            }
            tensors.append((p.name, t))
        }
        let counters = net.layers.compactMap { layer -> (name: String, value: Int64)? in
            if case .batchNorm = layer.layer.op { return (layer.layer.name + ".num_batches_tracked", 0) }
            return nil
        }
        return (tensors, counters)
    }
}
