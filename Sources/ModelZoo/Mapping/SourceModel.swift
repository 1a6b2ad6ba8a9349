/// What a weight file holds, grouped into layers but still in the file's own names and
/// layouts. Readers know formats; this knows how each exporter groups tensors into layers;
/// `WeightMapping` then pairs these layers with an architecture's.
public struct SourceLayer: Sendable {
    public enum Kind: String, Sendable { case conv, dense, batchNorm }

    /// How the file lays out this layer's weight.
    public enum Layout: String, Sendable {
        /// OIHW conv kernels, `[out, in]` dense (torch, ONNX, Caffe).
        case canonical
        /// HWIO conv kernels, `[in, out]` dense (Keras, TensorFlow).
        case keras
        /// `[in, out]` dense only: ONNX Gemm without transB, or MatMul.
        case inOut
    }

    public var name: String
    public var kind: Kind
    public var layout: Layout
    /// Tensors by role (weight, bias, or BatchNorm's four).
    public var tensors: [ParameterRole: TensorRecord]
    /// Conv attributes the file's graph declares, when it has a graph.
    public var graphConv: ConvSpec?
    /// BatchNorm epsilon the file's graph declares.
    public var graphEpsilon: Double?
    /// The canonical (torchvision) module this layer names itself as, when the file's names
    /// say (`layer3.10.conv1`, with wrapper prefixes such as `module.` removed); nil for
    /// anonymous tensors (`onnx::Conv_123`) and for Keras layer names.
    public var canonicalName: String?
    /// The graph gives the node no bias input: ONNX reads an absent optional input as zeros
    /// (torch's exporter drops all-zero biases).
    public var biasAbsentInGraph: Bool
    /// Caffe's BatchNorm stores running sums: its running mean and variance are these
    /// tensors divided by the one-element scale factor blob (a factor of zero gives zeros,
    /// as Caffe computes it).
    public var runningSumsFactor: TensorRecord?

    public init(name: String, kind: Kind, layout: Layout, tensors: [ParameterRole: TensorRecord],
                graphConv: ConvSpec? = nil, graphEpsilon: Double? = nil,
                canonicalName: String? = nil, biasAbsentInGraph: Bool = false,
                runningSumsFactor: TensorRecord? = nil) {
        self.name = name; self.kind = kind; self.layout = layout; self.tensors = tensors
        self.graphConv = graphConv; self.graphEpsilon = graphEpsilon
        self.canonicalName = canonicalName; self.biasAbsentInGraph = biasAbsentInGraph
        self.runningSumsFactor = runningSumsFactor
    }
}

/// Which non-linearities and pools the file's graph or config uses: evidence that settles
/// variants the shapes cannot (LeNet's ReLU/max against tanh/average, LRN or not).
public struct GraphEvidence: Sendable, Equatable {
    public var hasGraph = false
    public var relu = false, tanh = false
    public var maxPool = false, avgPool = false
    public var lrn = false
    public var batchNorm = false
    /// Conv + BatchNorm were fused by the exporter (torch.onnx.export in eval mode).
    public var batchNormFolded = false
    public init() {}
}

public struct SourceModel: Sendable {
    /// How the file's layers find the spec's.
    public enum Pairing: String, Sendable {
        /// Every layer carries its canonical module name: looked up by name, whatever the
        /// order of the file (safetensors.torch sorts keys, so `layer3.10` precedes `layer3.2`).
        case byName = "by name"
        /// Anonymous tensors paired through the graph: the order its nodes compute in.
        case byGraph = "by graph order"
        /// Keras auto-named layers: their creation order, recovered from the names' counters.
        case byCreationOrder = "by Keras creation order"
    }

    public var layers: [SourceLayer]
    /// Tensors that belong to no layer (shape constants, counters, optimizer state).
    public var looseTensors: [TensorRecord]
    public var evidence: GraphEvidence
    /// Where the file came from, for the report ("torch.onnx.export", "Keras 3", ...).
    public var convention: String
    public var pairing: Pairing
    /// A wrapper prefix removed from every name (`module.` from DataParallel), for the report.
    public var strippedPrefix: String?
    /// Whose names `canonicalName` holds when pairing by name.
    public var naming: LayerNaming = .torchvision

    public enum LayerNaming: String, Sendable {
        /// torchvision state_dict module names (or the spec's own, for Caffe's nets).
        case torchvision
        /// keras.applications layer names (`block1_conv1`, `conv2_block1_0_conv`,
        /// `predictions`), translated through the spec's Keras naming.
        case kerasApplications
    }
    /// What the grouping set aside or assumed, for the report (Caffe's training-only
    /// layers and auxiliary classifiers).
    public var notes: [String] = []

    public init(layers: [SourceLayer], looseTensors: [TensorRecord], evidence: GraphEvidence, convention: String,
                pairing: Pairing, strippedPrefix: String? = nil) {
        self.layers = layers; self.looseTensors = looseTensors; self.evidence = evidence; self.convention = convention
        self.pairing = pairing; self.strippedPrefix = strippedPrefix
    }

    public var learnableElementCount: Int {
        layers.reduce(0) { total, layer in
            total + layer.tensors.filter { !$0.key.isBuffer }.values.reduce(0) { $0 + $1.elementCount }
        }
    }
}

/// Groups tensors named `<module>.<role>` (torchvision state_dicts: safetensors, h5py files
/// written from a state_dict, torch.onnx exports that kept the module names).
public enum CanonicalNameGrouping {
    /// Prefixes training code wraps state_dict keys in: DataParallel's `module.`,
    /// torch.compile's `_orig_mod.`, and the attribute a script keeps its network under.
    static let wrapperPrefixes = ["module.", "_orig_mod.", "model.", "backbone.", "net.", "network."]

    /// The wrapper prefix every layer name starts with (repeated ones joined: `module.model.`),
    /// or nil. Only a prefix shared by every name is removed: a lone `model.` key is a name.
    public static func commonWrapperPrefix(_ moduleNames: [String]) -> String? {
        guard !moduleNames.isEmpty else { return nil }
        var prefix = ""
        while let next = wrapperPrefixes.first(where: { p in moduleNames.allSatisfy { $0.hasPrefix(prefix + p) && $0.count > prefix.count + p.count } }) {
            prefix += next
        }
        return prefix.isEmpty ? nil : prefix
    }

    public static func group(_ records: [TensorRecord]) -> (layers: [SourceLayer], loose: [TensorRecord], strippedPrefix: String?) {
        var order: [String] = []
        var byModule: [String: [ParameterRole: TensorRecord]] = [:]
        var loose: [TensorRecord] = []
        for record in records {
            guard let dot = record.name.lastIndex(of: "."),
                  let role = ParameterRole(rawValue: String(record.name[record.name.index(after: dot)...])) else {
                loose.append(record)
                continue
            }
            let module = String(record.name[..<dot])
            if byModule[module] == nil { order.append(module) }
            byModule[module, default: [:]][role] = record
        }
        var layers: [SourceLayer] = []
        for module in order {
            guard let tensors = byModule[module], let kind = inferKind(tensors) else {
                loose += byModule[module]?.values.sorted { $0.name < $1.name } ?? []
                continue
            }
            layers.append(SourceLayer(name: module, kind: kind, layout: .canonical, tensors: tensors))
        }
        let prefix = commonWrapperPrefix(layers.map(\.name))
        for i in layers.indices {
            layers[i].canonicalName = String(layers[i].name.dropFirst(prefix?.count ?? 0))
        }
        return (layers, loose, prefix)
    }

    /// Conv kernels are rank 4, dense weights rank 2; BatchNorm has running statistics.
    static func inferKind(_ tensors: [ParameterRole: TensorRecord]) -> SourceLayer.Kind? {
        if tensors[.runningMean] != nil || tensors[.runningVar] != nil { return .batchNorm }
        switch tensors[.weight]?.shape.count {
        case 4?: return .conv
        case 2?: return .dense
        case 1?: return .batchNorm
        default: return nil
        }
    }
}
