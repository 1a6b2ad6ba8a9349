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
    /// Class names stored with the weights (by `zoo finetune`), or ImageNet's for
    /// 1000-class heads, or nil.
    public let classNames: [String]?
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

    public static func load(path: String, architecture id: String? = nil, inputSize: Size2? = nil) throws -> LoadedModel {
        try load(path: path, spec: try id.map { try ArchitectureRegistry.find($0) }, inputSize: inputSize)
    }

    /// The same with an architecture given as a spec rather than an id (narrow test nets
    /// that are not in the registry).
    public static func load(path: String, spec requested: Architecture?, inputSize: Size2? = nil) throws -> LoadedModel {
        let prepared = try prepare(path: path, spec: requested, inputSize: inputSize)
        let weights = try prepared.mapping.loadWeights(from: prepared.file)
        let nonFinite = Verifier.nonFiniteProblems(prepared.mapping, loaded: weights)
        guard nonFinite.isEmpty else {
            var report = prepared.report
            report.problems = nonFinite
            report.ok = false
            throw VerificationFailed(report: report)
        }
        return LoadedModel(file: prepared.file, report: prepared.report, architecture: prepared.architecture,
                           network: prepared.network, weights: weights, classNames: prepared.classNames)
    }

    /// What `load` knows before it reads a value: the file verified by shapes, its mapping
    /// and the network it runs as.
    struct Prepared {
        let file: WeightFile
        let report: VerifyReport
        let mapping: MappingResult
        let architecture: Architecture
        let network: ResolvedNetwork
        let classNames: [String]?
    }

    static func prepare(path: String, spec requested: Architecture?, inputSize: Size2? = nil) throws -> Prepared {
        let file = try WeightFileOpener.open(path: path)
        // Shapes first; values are checked once loaded, so the file is read only once.
        let (report, found) = try Verifier.verify(file, architecture: requested, checkValues: false)
        guard report.ok, let mapping = found, let archID = report.architecture else {
            throw VerificationFailed(report: report)
        }
        let registered = try requested ?? ArchitectureRegistry.find(archID)
        let base = report.noTop ? registered.withoutTop() : report.pooledHead ? registered.withPooledHead() : registered
        var arch = base
        var size = inputSize
        if let onnx = file as? ONNXFile {
            let graph = ONNXGrouping.graphGeometry(onnx)
            if let pools = graph.pools, pools.count == base.poolCount {
                arch = base.overriding(pools: pools)
            }
            if size == nil { size = graph.inputSize }
        }
        // A caffemodel carries its net: pooling (Caffe rounds up), LRN constants and the
        // input size come from the file.
        if let caffe = file as? CaffeModelFile {
            let graph = CaffeGrouping.geometry(caffe)
            if let pools = graph.pools, pools.count == base.poolCount {
                arch = arch.overriding(pools: pools)
            }
            if let lrns = graph.lrns, lrns.count == base.lrnCount {
                arch = arch.overriding(lrns: lrns)
            }
            if size == nil { size = graph.inputSize }
            // Caffe weights take BGR in 0-255 minus the mean, whatever spec they map onto
            // (VGG's is torchvision's): the file's mean values when it has them.
            arch = arch.overriding(preprocessing: .caffe)
            if let means = caffe.net.transform?.meanValues, means.count == 1 || means.count == 3 { arch.meanBGR = means }
        }
        // Files zoo wrote say which preprocessing their weights were trained with.
        if let stored = FileMetadata.value(ModelWriter.preprocessingKey, in: file),
           let preprocessing = Architecture.Preprocessing(rawValue: stored), preprocessing != arch.preprocessing {
            arch = arch.overriding(preprocessing: preprocessing)
        }
        if let stored = FileMetadata.value(ModelWriter.meanKey, in: file) {
            let means = stored.split(separator: ",").compactMap { Double($0) }
            if means.count == 1 || means.count == 3, means.allSatisfy({ $0.isFinite && abs($0) < 1e6 }) {
                arch.meanBGR = means.map { Float($0) }
            }
        }
        let network = try arch.resolve(classes: mapping.network.classes, inputSize: size)
        var names = ClassNames.stored(in: file)
        if names == nil && base.includeTop && network.classes == 1000 && base.defaultClasses == 1000 { names = ImageNetClasses.names }
        return Prepared(file: file, report: report, mapping: mapping, architecture: arch, network: network, classNames: names)
    }
}

extension Architecture {
    var poolCount: Int {
        layers().filter { if case .maxPool = $0.op { return true }; if case .avgPool = $0.op { return true }; return false }.count
    }

    var lrnCount: Int {
        layers().filter { if case .lrn = $0.op { return true }; return false }.count
    }

    /// The same network trained with another preprocessing convention.
    func overriding(preprocessing: Preprocessing) -> Architecture {
        rebuilt(preprocessing: preprocessing)
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
