/// How one source tensor becomes one canonical tensor.
public enum LayoutTransform: Equatable, Sendable {
    case none
    /// Keras/TensorFlow conv kernel [kh, kw, in, out] to [out, in, kh, kw].
    case hwioToOIHW
    /// Dense [in, out] to [out, in].
    case transpose
    /// Keras dense [in, out] right after a flatten of a C x H x W volume: transpose, and
    /// reorder the input rows from Keras's H,W,C flatten order to the canonical C,H,W.
    case transposeFromHWCFlatten(c: Int, h: Int, w: Int)
    /// No tensor in the file: the value is a constant (BatchNorm folded into the conv by
    /// the exporter is rebuilt as an identity BatchNorm carrying the conv's bias).
    case constant(Float)
    /// Caffe BatchNorm running sums: divided by the file's one-element scale factor
    /// tensor, named here (read when the weights are loaded; zero gives zeros, as in Caffe).
    case dividedByFactor(String)

    public var label: String {
        switch self {
        case .none: return "as is"
        case .hwioToOIHW: return "HWIO -> OIHW"
        case .transpose: return "[in,out] -> [out,in]"
        case .transposeFromHWCFlatten: return "[in,out] -> [out,in], rows H,W,C -> C,H,W"
        case .constant(let v): return "constant \(v)"
        case .dividedByFactor(let name): return "divided by \(name)"
        }
    }

    /// The canonical shape a source shape becomes, or nil when the ranks do not fit.
    func canonicalShape(of shape: [Int]) -> [Int]? {
        switch self {
        case .none, .constant, .dividedByFactor: return shape
        case .hwioToOIHW: return shape.count == 4 ? [shape[3], shape[2], shape[0], shape[1]] : nil
        case .transpose, .transposeFromHWCFlatten: return shape.count == 2 ? [shape[1], shape[0]] : nil
        }
    }

    /// Applies the transform to a loaded tensor whose shape was already checked.
    public func apply(_ t: Tensor, canonicalShape: [Int]) -> Tensor {
        switch self {
        case .none, .dividedByFactor:
            return Tensor(shape: canonicalShape, data: t.data)
        case .constant(let value):
            return Tensor(shape: canonicalShape, data: [Float](repeating: value, count: canonicalShape.reduce(1, *)))
        case .hwioToOIHW:
            // HWIO is a [kh*kw*ci, co] matrix whose row (y*kw+x)*ci+i is OIHW column i*kh*kw+(y*kw+x).
            let (kh, kw, ci, co) = (t.shape[0], t.shape[1], t.shape[2], t.shape[3])
            let pixels = kh * kw
            let out = [Float](unsafeUninitializedCapacity: t.count) { buffer, initialized in
                t.data.withUnsafeBufferPointer { src in
                    LayoutKernels.transpose(src, rows: pixels * ci, cols: co, into: buffer) { (row: Int) -> Int in
                        let channel = row % ci
                        return channel * pixels + row / ci
                    }
                }
                initialized = t.count
            }
            return Tensor(shape: canonicalShape, data: out)
        case .transpose, .transposeFromHWCFlatten:
            // Tiled (LayoutKernels): VGG's 411 MB first FC takes seconds element by element.
            var flatten: Shape3?
            if case .transposeFromHWCFlatten(let c, let h, let w) = self { flatten = Shape3(c, h, w) }
            let (rows, cols) = (t.shape[0], t.shape[1])
            let out = [Float](unsafeUninitializedCapacity: t.count) { buffer, initialized in
                if let base = buffer.baseAddress { adviseHugePages(base, count: t.count * 4) }
                t.data.withUnsafeBufferPointer { src in
                    LayoutKernels.denseFromKeras(src, rows: rows, cols: cols, flatten: flatten, into: buffer)
                }
                initialized = t.count
            }
            return Tensor(shape: canonicalShape, data: out)
        }
    }
}

/// One canonical parameter and where its value comes from.
public struct TensorBinding: Sendable {
    public let canonical: ParameterSpec
    /// The file's tensor; nil for constants.
    public let source: TensorRecord?
    public let transform: LayoutTransform
}

/// Something wrong between a file and an architecture, naming both sides.
public struct MappingProblem: Sendable, Equatable, Codable {
    public enum Kind: String, Sendable, Codable {
        case missing, unexpected
        case wrongShape = "wrong_shape"
        case wrongDtype = "wrong_dtype"
        case nonFinite = "non_finite"
        case graphMismatch = "graph_mismatch"
        case parameterTotal = "parameter_total"
    }
    /// The file's name for the tensor, when it has one.
    public var fileTensor: String?
    /// The canonical name, when the tensor maps to one.
    public var canonical: String?
    public var kind: Kind
    public var expected: String
    public var actual: String

    /// "file name (canonical name)", or whichever exists.
    public var tensor: String {
        switch (fileTensor, canonical) {
        case let (f?, c?) where f != c: return "\(f) (\(c))"
        case let (f?, _): return f
        case let (nil, c?): return c
        default: return "-"
        }
    }
}

/// The pairing of a file's layers with an architecture's, at the class count the file's
/// head has.
public struct MappingResult: Sendable {
    public let network: ResolvedNetwork
    public var bindings: [TensorBinding]
    public var problems: [MappingProblem]
    public var notes: [String]
    public var batchNormFolded: Bool
    /// Bias inputs the graph leaves out, bound to zeros: a weaker fit than a file that has
    /// them, which breaks ties between specs with and without conv biases.
    public var impliedZeroBiases = 0
    /// How this pairing was made (a Keras file with keras.applications names pairs by name
    /// with the specs keras.applications has, by creation order with the others).
    public var pairing: SourceModel.Pairing = .byName

    /// Loads and transforms every bound tensor into canonical form.
    public func loadWeights(from file: WeightFile) throws -> [String: Tensor] {
        var weights: [String: Tensor] = [:]
        weights.reserveCapacity(bindings.count)
        for binding in bindings {
            weights[binding.canonical.name] = try loadWeight(binding, from: file)
        }
        return weights
    }

    /// One canonical tensor's values.
    public func loadWeight(_ binding: TensorBinding, from file: WeightFile) throws -> Tensor {
        let shape = binding.canonical.shape
            guard let record = binding.source else {
                return binding.transform.apply(Tensor(zeros: [0]), canonicalShape: shape)
            }
            var raw = try file.load(record.name)
            guard raw.count == shape.reduce(1, *) else {
                throw ZooError.badTensor(path: file.path, tensor: record.name,
                                         reason: "holds \(raw.count) values, \(binding.canonical.name) needs \(shape)")
            }
            if case .dividedByFactor(let factorName) = binding.transform {
                let factor = try file.load(factorName)
                guard factor.count == 1, let value = factor.data.first else {
                    throw ZooError.badTensor(path: file.path, tensor: factorName,
                                             reason: "a BatchNorm scale factor holds one value, this holds \(factor.count)")
                }
                // Caffe: scale = factor == 0 ? 0 : 1 / factor.
                let scale: Float = value == 0 ? 0 : 1 / value
                raw.data = raw.data.map { $0 * scale }
            }
            return binding.transform.apply(raw, canonicalShape: shape)
    }
}

public enum WeightMapping {
    /// Pairs the file's layers with the architecture's and checks every shape: by canonical
    /// name when the file names its layers, otherwise each kind (conv, dense, BatchNorm) in
    /// the order of the graph or of Keras's layer creation. Never throws: what does not fit
    /// becomes a problem.
    public static func map(_ source: SourceModel, onto arch: Architecture, inputSize: Size2? = nil) -> MappingResult? {
        // The name each spec layer has in the file's naming.
        var fileName: (String) -> String? = { $0 }
        var pairing = source.pairing
        if source.naming == .kerasApplications {
            if let names = (try? arch.resolve()).flatMap({ KerasLayout.applicationsNames(for: $0) }) {
                fileName = { names[$0] }
            } else {
                // A spec keras.applications never named (LeNet, AlexNet...): Keras layers
                // still come in creation order.
                pairing = .byCreationOrder
            }
        }
        // The head's width decides the class count, so a replaced head is still this network.
        var classes = arch.defaultClasses
        let headName = fileName(arch.headLayer)
        let head = pairing == .byName
            ? source.layers.first { $0.canonicalName != nil && $0.canonicalName == headName }
            : source.layers.last { $0.kind == .dense }
        if let head, head.kind == .dense, let w = head.tensors[.weight] {
            let dims = w.shape.count == 2 ? w.shape : w.shape.filter { $0 != 1 }
            let out = dims.count != 2 ? 0 : head.layout == .canonical ? dims[0] : dims[1]
            if out >= 1 && out <= 1_000_000 { classes = out }
        }
        guard let net = try? arch.resolve(classes: classes, inputSize: inputSize) else { return nil }

        let specBN = net.layers.filter { if case .batchNorm = $0.layer.op { return true }; return false }
        let sourceBN = source.layers.filter { $0.kind == .batchNorm }
        var result = MappingResult(network: net, bindings: [], problems: [], notes: [], batchNormFolded: false)
        result.pairing = pairing
        // BatchNorm folded into the convs by an exporter: a graph without BatchNormalization
        // nodes, or (no graph) convs carrying biases where the spec has none.
        if sourceBN.isEmpty && !specBN.isEmpty {
            if source.evidence.hasGraph {
                result.batchNormFolded = !source.evidence.batchNorm
            } else {
                let specConvs = net.layers.filter { if case .conv = $0.layer.op { return true }; return false }
                let sourceConvs = source.layers.filter { $0.kind == .conv }
                func biasWhereSpecHasNone(_ src: SourceLayer, _ spec: ResolvedLayer) -> Bool {
                    src.tensors[.bias] != nil && !spec.parameters.contains { $0.role == .bias }
                }
                if pairing == .byName {
                    let specByName = Dictionary(specConvs.map { ($0.layer.name, $0) }, uniquingKeysWith: { a, _ in a })
                    result.batchNormFolded = sourceConvs.contains { src in
                        specByName[src.canonicalName ?? ""].map { biasWhereSpecHasNone(src, $0) } ?? false
                    }
                } else {
                    result.batchNormFolded = sourceConvs.count == specConvs.count
                        && zip(sourceConvs, specConvs).contains { biasWhereSpecHasNone($0, $1) }
                }
            }
        }
        if pairing == .byName {
            pairByName(source, net, fileName: fileName, &result)
        } else {
            pairByOrder(source, net, &result)
        }
        if result.batchNormFolded {
            result.notes.append("BatchNorm folded into conv by the exporter: rebuilt as identity BatchNorm layers carrying the conv biases")
        }
        if result.impliedZeroBiases > 0 {
            result.notes.append("\(result.impliedZeroBiases) bias input(s) absent from the graph, read as zeros (exporters drop all-zero biases)")
        }
        result.notes += source.notes
        if let prefix = source.strippedPrefix {
            result.notes.append("prefix '\(prefix)' removed from every tensor name")
        }
        if classes != arch.defaultClasses {
            result.notes.append("head replaced: \(classes) classes instead of \(arch.defaultClasses)")
        }
        return result
    }

    /// The layout transform a source layer's weight needs to become a spec layer's.
    static func transform(_ src: SourceLayer, for spec: ResolvedLayer, in net: ResolvedNetwork) -> LayoutTransform {
        switch spec.layer.op {
        case .conv: return src.layout == .keras ? .hwioToOIHW : .none
        case .linear:
            if src.layout == .keras, let x = flattenedVolume(feeding: spec, in: net), x.h * x.w > 1 {
                return .transposeFromHWCFlatten(c: x.c, h: x.h, w: x.w)
            }
            return src.layout == .canonical ? .none : .transpose
        default: return .none
        }
    }

    /// Every spec layer looks up the file's layer of the same canonical name: the file's
    /// order never matters, and a name in the file the spec lacks is `unexpected`.
    static func pairByName(_ source: SourceModel, _ net: ResolvedNetwork, fileName: (String) -> String? = { $0 },
                           _ result: inout MappingResult) {
        var byName: [String: SourceLayer] = [:]
        for layer in source.layers {
            guard let name = layer.canonicalName, byName[name] == nil else { result.unexpected(layer); continue }
            byName[name] = layer
        }
        var paired = Set<String>()
        for spec in net.layers where !(spec.parameters.isEmpty && spec.buffers.isEmpty) {
            guard let name = fileName(spec.layer.name) else { result.missing(spec); continue }
            if case .batchNorm = spec.layer.op, result.batchNormFolded, byName[name] == nil { continue }
            guard let src = byName[name] else { result.missing(spec); continue }
            paired.insert(name)
            let bnAfter: ResolvedLayer? = result.batchNormFolded ? batchNorm(following: spec, in: net) : nil
            result.bind(spec, src, transform: transform(src, for: spec, in: net), foldedInto: bnAfter)
            result.compareGraph(src, spec)
        }
        for layer in source.layers {
            if let name = layer.canonicalName, byName[name]?.name == layer.name, !paired.contains(name) {
                result.unexpected(layer)
            }
        }
    }

    /// Anonymous layers: each kind in the order the graph computes it (ONNX node order) or
    /// Keras created it. Used only where the file carries no canonical names.
    static func pairByOrder(_ source: SourceModel, _ net: ResolvedNetwork, _ result: inout MappingResult) {
        for kind in [SourceLayer.Kind.conv, .batchNorm, .dense] {
            let sources = source.layers.filter { $0.kind == kind }
            let specs = net.layers.filter { l in
                switch (kind, l.layer.op) {
                case (.conv, .conv), (.batchNorm, .batchNorm), (.dense, .linear): return true
                default: return false
                }
            }
            if kind == .batchNorm && result.batchNormFolded { continue }
            for (index, spec) in specs.enumerated() {
                guard index < sources.count else { result.missing(spec); continue }
                let src = sources[index]
                let bnAfter: ResolvedLayer? = kind == .conv && result.batchNormFolded ? batchNorm(following: spec, in: net) : nil
                result.bind(spec, src, transform: transform(src, for: spec, in: net), foldedInto: bnAfter)
                result.compareGraph(src, spec)
            }
            for extra in sources.dropFirst(specs.count) { result.unexpected(extra) }
        }
    }

    /// The C x H x W volume a flatten turned into this dense layer's input, if one did.
    static func flattenedVolume(feeding dense: ResolvedLayer, in net: ResolvedNetwork) -> Shape3? {
        var name = dense.layer.inputs.first
        while let current = name, let layer = net.layer(named: current) {
            switch layer.layer.op {
            case .flatten: return layer.inputShapes.first
            case .dropout: name = layer.layer.inputs.first
            default: return nil
            }
        }
        return nil
    }

    /// The BatchNorm reading a conv's output, for rebuilding folded ones.
    static func batchNorm(following conv: ResolvedLayer, in net: ResolvedNetwork) -> ResolvedLayer? {
        net.layers.first { layer in
            if case .batchNorm = layer.layer.op { return layer.layer.inputs == [conv.layer.name] }
            return false
        }
    }
}

extension MappingResult {
    mutating func missing(_ spec: ResolvedLayer) {
        for p in spec.parameters + spec.buffers {
            problems.append(MappingProblem(fileTensor: nil, canonical: p.name, kind: .missing,
                                           expected: "\(p.shape)", actual: "absent"))
        }
    }

    mutating func unexpected(_ src: SourceLayer) {
        for record in src.tensors.values.sorted(by: { $0.name < $1.name }) {
            problems.append(MappingProblem(fileTensor: record.name, canonical: nil, kind: .unexpected,
                                           expected: "no such tensor", actual: "\(record.shape)"))
        }
    }

    mutating func bind(_ spec: ResolvedLayer, _ src: SourceLayer, transform: LayoutTransform, foldedInto bn: ResolvedLayer?) {
        var used = Set<ParameterRole>()
        for p in spec.parameters + spec.buffers {
            guard let record = src.tensors[p.role] else {
                if p.role == .bias && src.biasAbsentInGraph {
                    bindings.append(TensorBinding(canonical: p, source: nil, transform: .constant(0)))
                    impliedZeroBiases += 1
                } else {
                    problems.append(MappingProblem(fileTensor: nil, canonical: p.name, kind: .missing,
                                                   expected: "\(p.shape) (in \(src.name))", actual: "absent"))
                }
                continue
            }
            used.insert(p.role)
            var t: LayoutTransform = p.role == .weight ? transform : .none
            if p.role.isBuffer, let factor = src.runningSumsFactor { t = .dividedByFactor(factor.name) }
            var shape = t.canonicalShape(of: record.shape)
            // Unit dimensions do not move any value: Caffe2 stores FC weights as
            // [1, 1, out, in] and reshapes them in the graph.
            if shape != p.shape, record.shape.filter({ $0 != 1 }) == p.shape.filter({ $0 != 1 }), record.shape.count != 2 || p.shape.count != 2 {
                if case .dividedByFactor = t {} else { t = .none }
                shape = p.shape
            }
            if shape != p.shape {
                problems.append(MappingProblem(fileTensor: record.name, canonical: p.name, kind: .wrongShape,
                                               expected: "\(p.shape)",
                                               actual: "\(record.shape)" + (t == .none ? "" : " (\(t.label))")))
            } else if !record.dtype.convertsToFloat32 {
                problems.append(MappingProblem(fileTensor: record.name, canonical: p.name, kind: .wrongDtype,
                                               expected: "float32", actual: record.dtype.rawValue))
            } else {
                bindings.append(TensorBinding(canonical: p, source: record, transform: t))
            }
        }
        // A folded conv's bias is the BatchNorm's shift; its scale, mean and variance are
        // already inside the conv weights. A conv whose own bias took the file's bias, or
        // whose bias the exporter dropped as all zeros, leaves a zero shift.
        if let bn = bn {
            var shift: TensorRecord?
            if let bias = src.tensors[.bias], !used.contains(.bias) {
                used.insert(.bias)
                shift = bias
            }
            for p in bn.parameters + bn.buffers {
                switch p.role {
                case .bias:
                    if let shift, shift.shape == p.shape {
                        bindings.append(TensorBinding(canonical: p, source: shift, transform: .none))
                    } else if let shift {
                        problems.append(MappingProblem(fileTensor: shift.name, canonical: p.name, kind: .wrongShape,
                                                       expected: "\(p.shape)", actual: "\(shift.shape)"))
                    } else {
                        bindings.append(TensorBinding(canonical: p, source: nil, transform: .constant(0)))
                        impliedZeroBiases += 1
                    }
                case .weight: bindings.append(TensorBinding(canonical: p, source: nil, transform: .constant(1)))
                case .runningMean: bindings.append(TensorBinding(canonical: p, source: nil, transform: .constant(0)))
                case .runningVar:
                    var eps = 0.0
                    if case .batchNorm(let e) = bn.layer.op { eps = e }
                    bindings.append(TensorBinding(canonical: p, source: nil, transform: .constant(Float(1 - eps))))
                }
            }
        }
        for (role, record) in src.tensors where !used.contains(role) {
            problems.append(MappingProblem(fileTensor: record.name, canonical: nil, kind: .unexpected,
                                           expected: "no \(role.rawValue) in \(spec.layer.name)", actual: "\(record.shape)"))
        }
        if let eps = src.graphEpsilon, case .batchNorm(let specEps) = spec.layer.op, abs(eps - specEps) > specEps * 0.01 {
            problems.append(MappingProblem(fileTensor: src.name, canonical: spec.layer.name, kind: .graphMismatch,
                                           expected: "epsilon \(specEps)", actual: "epsilon \(eps)"))
        }
    }

    mutating func compareGraph(_ src: SourceLayer, _ spec: ResolvedLayer) {
        guard let g = src.graphConv, case .conv(let c) = spec.layer.op else { return }
        compareGraph(src, g, c, spec.layer.name)
    }

    mutating func compareGraph(_ src: SourceLayer, _ g: ConvSpec, _ c: ConvSpec, _ name: String) {
        let fileName = src.tensors[.weight]?.name ?? src.name
        func check(_ what: String, _ expected: String, _ actual: String) {
            if expected != actual {
                problems.append(MappingProblem(fileTensor: fileName, canonical: name + ".weight", kind: .graphMismatch,
                                               expected: "\(what) \(expected)", actual: "\(what) \(actual)"))
            }
        }
        check("stride", "\(c.stride)", "\(g.stride)")
        check("groups", "\(c.groups)", "\(g.groups)")
        // Exporters write Caffe's ceil-mode or "same" padding as explicit pads; only a
        // different leading pad changes which pixels a kernel sees.
        check("padding", "\(c.padding.top),\(c.padding.left)", "\(g.padding.top),\(g.padding.left)")
    }
}
