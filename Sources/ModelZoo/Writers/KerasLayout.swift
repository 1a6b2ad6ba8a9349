/// How a network's canonical weights become a Keras model's layers: which Keras layer
/// holds each tensor, under what name, in which order, and with what layout change.
///
/// Keras loads legacy `.h5` weights by position (the model's weighted layers in
/// `model.layers` order against the file's `layer_names`), and Keras 3 `.weights.h5` by
/// path (`layers/<class name>_<n>`, counted per class in the same order). So the order of
/// `layers` here is `model.layers` order of the matching Keras model: keras.applications
/// VGG16/VGG19/ResNet50, or the model Tools/keras_models.py builds.
public struct KerasLayout: Sendable {
    public enum WeightTransform: Sendable, Equatable {
        case none
        /// OIHW to HWIO (grouped convs too: [O, I/g, kh, kw] to [kh, kw, I/g, O]).
        case convToHWIO
        /// [out, in] to [in, out].
        case transpose
        /// [out, in] to [in, out] with the input rows reordered from C,H,W to Keras's H,W,C.
        case transposeToHWCFlatten(Shape3)
    }

    public struct Weight: Sendable {
        /// Keras's name for the weight (`kernel`, `bias`, `gamma`, `moving_mean`, ...).
        public let kerasName: String
        public let canonical: ParameterSpec
        public let transform: WeightTransform

        public var kerasShape: [Int] {
            let s = canonical.shape
            switch transform {
            case .none: return s
            case .convToHWIO: return [s[2], s[3], s[1], s[0]]
            case .transpose, .transposeToHWCFlatten: return [s[1], s[0]]
            }
        }
    }

    public struct KerasLayer: Sendable {
        /// The layer's own name (`block1_conv1`, `conv2d_3`).
        public let name: String
        /// snake_case of the Keras class: `conv2d`, `batch_normalization`, `dense`.
        public let className: String
        public let weights: [Weight]
    }

    public let layers: [KerasLayer]
    /// What the names follow ("keras.applications.VGG16", "Tools/keras_models.py resnet18").
    public let namingSource: String

    /// Keras 3 `.weights.h5` paths: `layers/<class>` then `<class>_1`, ... in layer order.
    public var weightsFilePaths: [String] {
        var counters: [String: Int] = [:]
        return layers.map { layer in
            let n = counters[layer.className, default: 0]
            counters[layer.className] = n + 1
            return "layers/" + (n == 0 ? layer.className : "\(layer.className)_\(n)")
        }
    }

    public var transformLabels: [String] {
        var labels: [String] = []
        if layers.contains(where: { $0.weights.contains { $0.transform == .convToHWIO } }) {
            labels.append("conv kernels OIHW -> HWIO")
        }
        if layers.contains(where: { $0.weights.contains { $0.transform == .transpose } }) {
            labels.append("dense weights [out,in] -> [in,out]")
        }
        for layer in layers {
            for w in layer.weights {
                if case .transposeToHWCFlatten(let v) = w.transform {
                    labels.append("\(w.canonical.layer) -> \(layer.name): [out,in] -> [in,out], rows C,H,W -> H,W,C (\(v.c)x\(v.h)x\(v.w))")
                }
            }
        }
        if layers.contains(where: { $0.className == "batch_normalization" }) {
            labels.append("BatchNorm kept unfolded (gamma, beta, moving_mean, moving_variance)")
        }
        labels.append("names: \(namingSource)")
        return labels
    }

    /// Architectures with a Keras model to load into. Others are refused with the reason.
    public static let supportedArchitectures: [String] = [
        "lenet5", "lenet5-classic", "alexnet", "vgg11", "vgg13", "vgg16", "vgg19",
        "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn", "resnet18", "resnet34", "resnet50-keras",
    ]

    /// Plans the Keras form of `net`, or explains why Keras cannot hold it exactly.
    public static func plan(_ net: ResolvedNetwork) throws -> KerasLayout {
        let arch = net.architecture
        func refuse(_ why: String) -> ZooError {
            .invalidArgument("cannot write \(arch.id) as Keras HDF5: \(why)")
        }
        for layer in net.layers {
            switch layer.layer.op {
            case .lrn:
                throw refuse("layer '\(layer.layer.name)' is a local response normalisation, which Keras has no layer for "
                    + "(write ONNX or safetensors instead)")
            case .maxPool(let p), .avgPool(let p):
                if p.ceilMode {
                    throw refuse("pooling layer '\(layer.layer.name)' rounds its output size up (ceil mode), which Keras "
                        + "pooling cannot do without changing the result (write ONNX or safetensors instead)")
                }
            case .adaptiveAvgPool:
                let input = layer.inputShapes[0], out = layer.output
                if input != out && !(out.h == 1 && out.w == 1) {
                    throw refuse("adaptive pooling '\(layer.layer.name)' from \(input.h)x\(input.w) to \(out.h)x\(out.w) "
                        + "is not the identity at this input size; the Keras model expects \(arch.defaultInputSize) input")
                }
            default: break
            }
        }
        guard supportedArchitectures.contains(arch.id) else {
            let reason: String
            switch arch.id {
            case "resnet50", "resnet101", "resnet152":
                reason = "torchvision's ResNet is v1.5 (stride on the 3x3, no conv biases) while keras.applications' "
                    + "ResNet50 is v1 (stride on the first 1x1, conv biases): a different network, not a relayout. "
                    + "Only resnet50-keras weights convert to Keras ResNet50"
            default:
                reason = "there is no Keras model for it in keras.applications or Tools/keras_models.py"
            }
            throw refuse(reason)
        }

        let naming = names(for: net)
        var layers: [KerasLayer] = []
        for layer in net.layers {
            let params = layer.parameters + layer.buffers
            guard !params.isEmpty, let name = naming.names[layer.layer.name] else { continue }
            func spec(_ role: ParameterRole) -> ParameterSpec? { params.first { $0.role == role } }
            var weights: [Weight] = []
            let className: String
            switch layer.layer.op {
            case .conv:
                className = "conv2d"
                if let w = spec(.weight) { weights.append(Weight(kerasName: "kernel", canonical: w, transform: .convToHWIO)) }
                if let b = spec(.bias) { weights.append(Weight(kerasName: "bias", canonical: b, transform: .none)) }
            case .linear:
                className = "dense"
                var transform = WeightTransform.transpose
                if let v = WeightMapping.flattenedVolume(feeding: layer, in: net), v.h * v.w > 1 {
                    transform = .transposeToHWCFlatten(v)
                }
                if let w = spec(.weight) { weights.append(Weight(kerasName: "kernel", canonical: w, transform: transform)) }
                if let b = spec(.bias) { weights.append(Weight(kerasName: "bias", canonical: b, transform: .none)) }
            case .batchNorm:
                className = "batch_normalization"
                for (role, kerasName) in [(ParameterRole.weight, "gamma"), (.bias, "beta"),
                                          (.runningMean, "moving_mean"), (.runningVar, "moving_variance")] {
                    if let p = spec(role) { weights.append(Weight(kerasName: kerasName, canonical: p, transform: .none)) }
                }
            default:
                throw refuse("layer '\(layer.layer.name)' (\(layer.layer.op.typeName)) has weights Keras cannot hold")
            }
            layers.append(KerasLayer(name: name, className: className, weights: weights))
        }
        return KerasLayout(layers: reorderedLikeKeras(layers, net: net, naming: naming), namingSource: naming.source)
    }

    private struct Naming {
        var names: [String: String]
        var source: String
        var applications: Bool
    }

    /// Keras names for every weighted layer, by canonical layer name.
    /// keras.applications' layer name for each canonical layer (`features.0` ->
    /// `block1_conv1`, `layer1.0.downsample.0` -> `conv2_block1_0_conv`), for the networks
    /// keras.applications has; nil for the others.
    static func applicationsNames(for net: ResolvedNetwork) -> [String: String]? {
        let naming = names(for: net)
        return naming.applications ? naming.names : nil
    }

    private static func names(for net: ResolvedNetwork) -> Naming {
        let id = net.architecture.id
        var names: [String: String] = [:]
        if id == "vgg16" || id == "vgg19" {
            var block = 1, conv = 1
            var dense = 0
            for layer in net.layers {
                switch layer.layer.op {
                case .conv:
                    names[layer.layer.name] = "block\(block)_conv\(conv)"
                    conv += 1
                case .maxPool:
                    block += 1; conv = 1
                case .linear:
                    dense += 1
                    names[layer.layer.name] = dense == 3 ? "predictions" : "fc\(dense)"
                default: break
                }
            }
            return Naming(names: names, source: "keras.applications.\(id.uppercased())", applications: true)
        }
        if id == "resnet50-keras" {
            for layer in net.layers {
                let n = layer.layer.name
                if n == "conv1" { names[n] = "conv1_conv" }
                else if n == "bn1" { names[n] = "conv1_bn" }
                else if n == "fc" { names[n] = "predictions" }
                else if n.hasPrefix("layer") {
                    // layer<s>.<b>.<part>: stage s is Keras conv<s+1>, block b is block<b+1>.
                    let parts = n.split(separator: ".").map(String.init)
                    guard parts.count >= 3, let stage = Int(parts[0].dropFirst(5)), let block = Int(parts[1]) else { continue }
                    let prefix = "conv\(stage + 1)_block\(block + 1)_"
                    switch parts[2...].joined(separator: ".") {
                    case "conv1": names[n] = prefix + "1_conv"
                    case "bn1": names[n] = prefix + "1_bn"
                    case "conv2": names[n] = prefix + "2_conv"
                    case "bn2": names[n] = prefix + "2_bn"
                    case "conv3": names[n] = prefix + "3_conv"
                    case "bn3": names[n] = prefix + "3_bn"
                    case "downsample.0": names[n] = prefix + "0_conv"
                    case "downsample.1": names[n] = prefix + "0_bn"
                    default: break
                    }
                }
            }
            return Naming(names: names, source: "keras.applications.ResNet50", applications: true)
        }
        // Keras auto-names, in creation order, which Tools/keras_models.py keeps equal to
        // the spec's layer order.
        var counters: [String: Int] = [:]
        for layer in net.layers where !(layer.parameters.isEmpty) {
            let base: String
            switch layer.layer.op {
            case .conv: base = "conv2d"
            case .batchNorm: base = "batch_normalization"
            case .linear: base = "dense"
            default: continue
            }
            let n = counters[base, default: 0]
            counters[base] = n + 1
            names[layer.layer.name] = n == 0 ? base : "\(base)_\(n)"
        }
        return Naming(names: names, source: "Keras auto-names of the Tools/keras_models.py \(id) model", applications: false)
    }

    /// `model.layers` order: Keras sorts a functional graph's layers by depth, so a residual
    /// block's shortcut conv and BN sit beside the main-branch layers at the same depth (the
    /// one created first goes first). keras.applications creates the shortcut first
    /// (1_conv, 1_bn, 2_conv, 2_bn, 0_conv, 3_conv, 0_bn, 3_bn); Tools/keras_models.py's
    /// basic block creates it last (conv1, bn1, conv2, downsample conv, bn2, downsample bn).
    private static func reorderedLikeKeras(_ layers: [KerasLayer], net: ResolvedNetwork, naming: Naming) -> [KerasLayer] {
        guard net.architecture.family == .resnet else { return layers }
        let canonical = net.layers.map(\.layer.name).filter { naming.names[$0] != nil }
        var byName: [String: KerasLayer] = [:]
        for (name, layer) in zip(canonical, layers) { byName[name] = layer }
        var ordered: [KerasLayer] = []
        var index = 0
        while index < canonical.count {
            let parts = canonical[index].split(separator: ".")
            guard canonical[index].hasPrefix("layer"), parts.count >= 3 else {
                if let layer = byName[canonical[index]] { ordered.append(layer) }
                index += 1
                continue
            }
            let prefix = parts[0] + "." + parts[1] + "."
            var end = index
            while end < canonical.count && canonical[end].hasPrefix(prefix) { end += 1 }
            let blockParts = Set(canonical[index..<end].map { String($0.dropFirst(prefix.count)) })
            let order: [String]
            if !blockParts.contains("downsample.0") {
                order = canonical[index..<end].map { String($0.dropFirst(prefix.count)) }
            } else if blockParts.contains("conv3") {
                order = ["conv1", "bn1", "conv2", "bn2", "downsample.0", "conv3", "downsample.1", "bn3"]
            } else {
                order = ["conv1", "bn1", "conv2", "downsample.0", "bn2", "downsample.1"]
            }
            ordered += order.compactMap { byName[prefix + $0] }
            index = end
        }
        return ordered
    }
}
