/// A weight file verified against its architecture and turned into canonical weights:
/// what `run`, `predict`, `bench`, `convert` and `finetune` start from.
public struct LoadedModel {
    public let file: WeightFile
    public let report: VerifyReport
    public let architecture: Architecture
    /// The network as the file's graph runs it (pooling and input size from the graph when
    /// the file has one), at the file's class count.
    public let network: ResolvedNetwork
    public let weights: [String: Tensor]
    /// Preprocessing, means, class names and source of these weights (`WeightsPreset.resolve`).
    public let preset: WeightsPreset
    /// The names of the outputs: stored with the weights (by `zoo finetune`), else the
    /// preset's when the head is the one it was trained with, else nil.
    public let classNames: [String]?

    /// Class names the file itself stores (zoo's writers), nil when it stores none.
    public var storedClassNames: [String]? { file.metadata[ZooMetadata.classNames].map { ZooMetadata.decode(classNames: $0) } }
}

public enum ModelLoader {
    /// Thrown when the file is readable but not a complete, finite instance of the
    /// architecture: the report says why.
    public struct VerificationFailed: Error, CustomStringConvertible {
        public let report: VerifyReport
        public var description: String {
            "\(report.file) is not a usable \(report.architecture ?? "model of any known architecture"): "
                + "\(report.problems.count) problem(s); run `zoo verify` on it for the list"
        }
    }

    /// `id` names an architecture or a weights preset (`resnet50-caffe2`: the architecture
    /// `resnet50` with that preset).
    public static func load(path: String, architecture id: String? = nil, inputSize: Size2? = nil) throws -> LoadedModel {
        try load(path: path, spec: try id.map { try ArchitectureRegistry.find($0) }, preset: id.flatMap(WeightsPreset.find),
                 inputSize: inputSize)
    }

    /// The same with an architecture given as a spec rather than an id (narrow test nets
    /// that are not in the registry), and optionally the preset to load it with.
    public static func load(path: String, spec requested: Architecture?, preset requestedPreset: WeightsPreset? = nil,
                            inputSize: Size2? = nil) throws -> LoadedModel {
        try load(file: try WeightFileOpener.open(path: path), spec: requested, preset: requestedPreset, inputSize: inputSize)
    }

    /// Verifies and loads a file already opened (or weights in memory: `MemoryWeightFile`).
    public static func load(file: WeightFile, spec requested: Architecture?, preset requestedPreset: WeightsPreset? = nil,
                            inputSize: Size2? = nil) throws -> LoadedModel {
        try load(try prepare(file: file, spec: requested, preset: requestedPreset, inputSize: inputSize))
    }

    /// Reads every value of a file verified by shapes and checks it is finite.
    static func load(_ prepared: Prepared) throws -> LoadedModel {
        let weights = try prepared.mapping.loadWeights(from: prepared.file)
        let nonFinite = Verifier.nonFiniteProblems(prepared.mapping, loaded: weights)
        guard nonFinite.isEmpty else {
            var report = prepared.report
            report.problems = nonFinite
            report.ok = false
            throw VerificationFailed(report: report)
        }
        return LoadedModel(file: prepared.file, report: prepared.report, architecture: prepared.architecture,
                           network: prepared.network, weights: weights, preset: prepared.preset,
                           classNames: prepared.classNames)
    }

    /// What `load` knows before it reads a value: the file verified by shapes, its mapping
    /// and the network it runs as (`convert` copies tensors file to file from here).
    struct Prepared {
        let file: WeightFile
        let report: VerifyReport
        let mapping: MappingResult
        let architecture: Architecture
        let network: ResolvedNetwork
        let preset: WeightsPreset
        let classNames: [String]?
    }

    /// `id` as for `load(path:architecture:)`.
    static func prepare(path: String, architecture id: String?) throws -> Prepared {
        try prepare(file: try WeightFileOpener.open(path: path), spec: try id.map { try ArchitectureRegistry.find($0) },
                    preset: id.flatMap(WeightsPreset.find), inputSize: nil)
    }

    static func prepare(file: WeightFile, spec requested: Architecture?, preset requestedPreset: WeightsPreset?,
                        inputSize: Size2?) throws -> Prepared {
        // Shapes first; values are checked once loaded, so the file is read only once.
        let (report, found) = try Verifier.verify(file, architecture: requested, preset: requestedPreset,
                                                  checkValues: false)
        guard report.ok, let mapping = found, let archID = report.architecture else {
            throw VerificationFailed(report: report)
        }
        let registered = try requested ?? ArchitectureRegistry.find(archID)
        let base = report.noTop ? registered.withoutTop() : report.pooledHead ? registered.withPooledHead() : registered
        var arch = base
        var size = inputSize
        switch file.graph {
        case .onnx(let graph)?:
            let geometry = ONNXGrouping.graphGeometry(graph)
            if let pools = geometry.pools, pools.count == base.poolCount {
                arch = base.overriding(pools: pools)
            }
            if size == nil { size = geometry.inputSize }
        // A caffemodel carries its net: pooling (Caffe rounds up), LRN constants and the
        // input size come from the file.
        case .caffe(let net)?:
            let geometry = CaffeGrouping.geometry(net)
            if let pools = geometry.pools, pools.count == base.poolCount {
                arch = arch.overriding(pools: pools)
            }
            if let lrns = geometry.lrns, lrns.count == base.lrnCount {
                arch = arch.overriding(lrns: lrns)
            }
            if size == nil { size = geometry.inputSize }
        case .keras?, nil:
            break
        }
        let network = try arch.resolve(classes: mapping.network.classes, inputSize: size)
        let preset = WeightsPreset.resolve(for: file, architecture: registered, requested: requestedPreset)
        let stored = file.metadata[ZooMetadata.classNames].map { ZooMetadata.decode(classNames: $0) }
        // A pooled head is always a new one: the preset's names are not its names.
        let names = stored ?? (base.includeTop && !base.pooledHead ? preset.classNames(forHead: network.classes) : nil)
        return Prepared(file: file, report: report, mapping: mapping, architecture: arch, network: network,
                        preset: preset, classNames: names)
    }
}

extension Architecture {
    var poolCount: Int {
        layers().filter { if case .maxPool = $0.op { return true }; if case .avgPool = $0.op { return true }; return false }.count
    }

    var lrnCount: Int {
        layers().filter { if case .lrn = $0.op { return true }; return false }.count
    }

    /// The same network with its LRN layers replaced, in order, by `lrns` (a Caffe file's
    /// own constants).
    func overriding(lrns: [LayerOp]) -> Architecture {
        rebuilt { _, layers in
            var replacements = lrns.makeIterator()
            return layers.map { layer in
                var layer = layer
                if case .lrn = layer.op, let op = replacements.next() { layer.op = op }
                return layer
            }
        }
    }

    /// The same network with its fixed pooling layers replaced, in order, by `pools`: how a
    /// graph that pads or rounds differently from the spec (the ONNX zoo's Caffe2 exports
    /// at 224x224) is run exactly as its authors ran it. Input size becomes free because
    /// the graph, not the spec, now fixes it.
    func overriding(pools: [LayerOp]) -> Architecture {
        rebuilt(acceptsOtherInputSizes: true) { _, layers in
            var replacements = pools.makeIterator()
            return layers.map { layer in
                var layer = layer
                switch layer.op {
                case .maxPool, .avgPool: if let op = replacements.next() { layer.op = op }
                default: break
                }
                return layer
            }
        }
    }
}
