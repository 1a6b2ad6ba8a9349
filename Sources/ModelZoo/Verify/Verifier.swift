import Foundation

/// The verdict on one weight file: which architecture it holds and whether every tensor is
/// there, shaped right and finite.
public struct VerifyReport: Sendable {
    /// How clearly the file picked its architecture.
    public enum Confidence: String, Sendable, Codable {
        /// Every tensor fits and nothing else fits as well (or the architecture was named).
        case high
        /// It fits, but so does another spec (a file without a graph cannot tell LeNet's
        /// two forms apart), or it fits with problems.
        case medium
        /// Named with problems, or matching nothing.
        case none
    }

    public var file: String
    public var format: WeightFormat
    public var producer: String?
    public var convention: String
    /// How the file's tensors were paired with the spec's: by name, by graph order, or by
    /// Keras creation order.
    public var pairing: SourceModel.Pairing
    /// The architecture id, or nil when the file matches none.
    public var architecture: String?
    public var title: String?
    public var variant: String?
    public var confidence: Confidence
    public var classes: Int?
    public var ok: Bool
    /// Learnable values the file holds for the network.
    public var parameters: Int
    public var expectedParameters: Int?
    public var problems: [MappingProblem]
    public var notes: [String]
    /// Other architectures whose shapes fit as well, when the file cannot tell them apart.
    public var alsoFits: [String]
    /// The file holds the network without its classifier (Keras `include_top=False`):
    /// `architecture` names the full network, and the model ends at its last feature map.
    public var noTop = false
    /// The file holds the network without its classifier plus a pooled head (global
    /// average pooling and one dense layer), as `zoo finetune` writes for a no-top file.
    public var pooledHead = false
    /// The weights preset the file was recognised as (`resnet50-caffe2`), or the
    /// architecture's own id for its standard preset; nil when no architecture fits.
    public var preset: String?
}

public enum Verifier {
    /// Verifies an opened file. With `architecture` nil, tries every spec and keeps the one
    /// that fits best. `checkValues` loads every tensor to look for NaN and Inf. `preset`
    /// is the weights preset the caller names (else the file's own is worked out).
    public static func verify(_ file: WeightFile, architecture: Architecture? = nil, preset: WeightsPreset? = nil,
                              checkValues: Bool = true) throws -> (VerifyReport, MappingResult?) {
        let source = try SourceModelBuilder.build(file)
        let candidates = architecture.map { [$0] } ?? ArchitectureRegistry.all
        // Convolutions and not one fully connected layer: the `_notop` files keras.applications
        // downloads for include_top=False. Each spec is then paired without its classifier.
        let noTop = !source.layers.isEmpty && !source.layers.contains { $0.kind == .dense }
            && source.layers.contains { $0.kind == .conv }
        var scored: [(arch: Architecture, mapping: MappingResult, problems: [MappingProblem])] = []
        // One dense layer after convolutions: maybe a pooled head on a no-top network.
        let oneDense = source.layers.filter { $0.kind == .dense }.count == 1 && source.layers.contains { $0.kind == .conv }
        for full in candidates {
            var archs = [noTop && full.includeTop && full.hasClassifier ? full.withoutTop() : full]
            if oneDense && full.hasClassifier && !full.pooledHead { archs.append(full.withPooledHead()) }
            for arch in archs {
                guard let mapping = WeightMapping.map(source, onto: arch) else { continue }
                let problems = mapping.problems + evidenceProblems(arch, source.evidence)
                    + totalProblems(mapping, source)
                scored.append((arch, mapping, problems))
            }
        }
        // Fewest problems wins; among equals, the architecture the file records (zoo's own
        // writers store it), then a spec made for this file's producer, then the registry's
        // order (torchvision first).
        let producer = (file.producer ?? "").lowercased() + " " + source.convention.lowercased()
        let recorded = file.metadata[ZooMetadata.architecture]
        func producerRank(_ arch: Architecture) -> Int {
            if let recorded { return arch.id == recorded ? 0 : 2 }
            return WeightsPreset.matching(producer: producer, architecture: arch.id) != nil ? 0 : 1
        }
        // Then the fewest assumptions: zeros standing in for biases the graph leaves out, and
        // BatchNorm taken as folded, are a weaker fit than tensors the file really has.
        // A pooled head is one too: a ResNet's own avgpool + fc has the same shapes.
        func assumptions(_ m: MappingResult) -> Int {
            m.impliedZeroBiases + (m.batchNormFolded ? 1 : 0) + (m.network.architecture.pooledHead ? 1 : 0)
        }
        let best = scored.enumerated().min { a, b in
            (a.element.problems.count, producerRank(a.element.arch), assumptions(a.element.mapping), a.offset)
                < (b.element.problems.count, producerRank(b.element.arch), assumptions(b.element.mapping), b.offset)
        }?.element

        var report = VerifyReport(file: file.path, format: file.format, producer: file.producer,
                                  convention: source.convention, pairing: source.pairing, architecture: nil, title: nil, variant: nil,
                                  confidence: .none, classes: nil, ok: false,
                                  parameters: source.learnableElementCount, expectedParameters: nil,
                                  problems: [], notes: [], alsoFits: [])
        guard let best = best else {
            report.notes.append("no architecture could be paired with this file's tensors")
            return (report, nil)
        }
        let tensorCount = max(1, best.mapping.network.parameters.count + best.mapping.network.buffers.count)
        // A named --arch is always reported against; a guess that leaves most tensors
        // unpaired is "matches none".
        if architecture == nil && best.problems.count * 2 > tensorCount {
            // Still read every tensor: a file whose data cannot be loaded (unsafe external
            // paths, short data) is unreadable, whatever it was meant to be.
            if checkValues {
                try file.forEachLoadedTensor()
            }
            report.notes.append("closest is \(best.arch.id), with \(best.problems.count) problems: matches none")
            report.problems = absentProblems(file) + best.problems
            return (report, nil)
        }
        var problems = absentProblems(file) + best.problems
        let mapping = best.mapping
        if checkValues && problems.isEmpty {
            problems += try nonFiniteProblems(mapping, file)
        }
        let ties = scored.filter {
            $0.arch.id != best.arch.id && $0.problems.count == best.problems.count
                && producerRank($0.arch) == producerRank(best.arch)
                && assumptions($0.mapping) == assumptions(best.mapping)
        }
        report.architecture = best.arch.id
        report.preset = WeightsPreset.resolve(for: file, architecture: best.arch, requested: preset).id
        report.title = best.arch.title
        report.variant = best.arch.variant + (mapping.batchNormFolded ? ", BatchNorm folded into conv" : "")
        report.noTop = !best.arch.includeTop
        report.pooledHead = best.arch.pooledHead
        report.classes = report.noTop ? nil : mapping.network.classes
        report.problems = problems
        report.ok = problems.isEmpty
        report.expectedParameters = expectedLearnable(mapping)
        report.notes = mapping.notes
        report.pairing = mapping.pairing
        if report.noTop {
            report.notes.insert("no top: the classifier is absent (include_top=False); the model ends at its last "
                + "feature map, \(featureMapDescription(mapping.network))", at: 0)
        }
        report.alsoFits = ties.map(\.arch.id)
        if architecture != nil {
            report.confidence = problems.isEmpty ? .high : .none
        } else if ties.isEmpty {
            report.confidence = best.problems.isEmpty ? .high : .medium
        } else {
            report.confidence = .medium
            report.notes.append("the file cannot tell \(([best.arch.id] + ties.map(\.arch.id)).joined(separator: ", ")) apart"
                + (source.evidence.hasGraph ? "" : " (it has no graph)") + "; reporting the first")
        }
        if let published = best.arch.publishedParameters, mapping.network.classes == best.arch.defaultClasses,
           !mapping.batchNormFolded, published != mapping.network.totalParameters {
            report.notes.append("spec total \(mapping.network.totalParameters) differs from the published \(published)")
        }
        return (report, mapping)
    }

    static func featureMapDescription(_ net: ResolvedNetwork) -> String {
        guard let last = net.layers.last else { return "the input" }
        return "\(last.output) (CxHxW) after '\(last.layer.name)' at \(net.input.h)x\(net.input.w) input"
    }

    /// Learnable values the file should hold: none for what the mapping filled with
    /// constants (folded BatchNorm's scale, shift where no bias carries it, bias inputs the
    /// graph leaves out).
    static func expectedLearnable(_ mapping: MappingResult) -> Int {
        let constant = Set(mapping.bindings.filter { $0.source == nil }.map(\.canonical.name))
        return mapping.network.totalParameters
            - mapping.network.parameters.filter { constant.contains($0.name) }.reduce(0) { $0 + $1.count }
    }

    static func absentProblems(_ file: WeightFile) -> [MappingProblem] {
        file.absentTensors.map {
            MappingProblem(fileTensor: $0, canonical: nil, kind: .missing, expected: "listed by the file", actual: "no data in the file")
        }
    }

    static func totalProblems(_ mapping: MappingResult, _ source: SourceModel) -> [MappingProblem] {
        guard mapping.problems.isEmpty else { return [] }
        let expected = expectedLearnable(mapping)
        let actual = source.learnableElementCount
        return expected == actual ? [] : [MappingProblem(fileTensor: nil, canonical: nil, kind: .parameterTotal,
                                                         expected: grouped(expected), actual: grouped(actual))]
    }

    /// What the file's graph says against what the spec declares.
    static func evidenceProblems(_ arch: Architecture, _ e: GraphEvidence) -> [MappingProblem] {
        guard e.hasGraph else { return [] }
        let layers = arch.layers()
        let usesTanh = layers.contains { $0.activation == .tanh }
        let usesRelu = layers.contains { $0.activation == .relu }
        let usesMax = layers.contains { if case .maxPool = $0.op { return true }; return false }
        let usesAvg = layers.contains { if case .avgPool = $0.op { return true }; return false }
        let usesLRN = layers.contains { if case .lrn = $0.op { return true }; return false }
        var problems: [MappingProblem] = []
        func contradiction(_ expected: String, _ actual: String) {
            problems.append(MappingProblem(fileTensor: nil, canonical: nil, kind: .graphMismatch,
                                           expected: expected, actual: actual))
        }
        if usesTanh && !e.tanh { contradiction("Tanh activations", "none in the graph") }
        if usesRelu && !e.relu { contradiction("ReLU activations", "none in the graph") }
        if !usesTanh && e.tanh { contradiction("no Tanh", "Tanh in the graph") }
        if !usesRelu && e.relu { contradiction("no ReLU", "ReLU in the graph") }
        if usesMax && !e.maxPool { contradiction("MaxPool", "none in the graph") }
        if usesAvg && !e.avgPool && !e.maxPool { contradiction("AveragePool", "none in the graph") }
        if !usesAvg && !usesMax && e.maxPool { contradiction("no MaxPool", "MaxPool in the graph") }
        // Other families may average globally beside their max pools; LeNet's two forms
        // differ exactly here.
        if arch.family == .lenet && usesAvg && !usesMax && e.maxPool && !e.avgPool {
            contradiction("AveragePool", "MaxPool in the graph")
        }
        if usesLRN != e.lrn { contradiction(usesLRN ? "LRN" : "no LRN", e.lrn ? "LRN in the graph" : "none in the graph") }
        return problems
    }

    static func nonFiniteProblems(_ mapping: MappingResult, _ file: WeightFile) throws -> [MappingProblem] {
        var seen = Set<String>()
        return try nonFiniteProblems(mapping) { binding in
            guard let record = binding.source, seen.insert(record.name).inserted else { return nil }
            return try file.load(record.name)
        }
    }

    /// NaN and Inf in already loaded canonical weights, named as the file names them: lets
    /// a loader check the values it has anyway instead of reading the file twice.
    public static func nonFiniteProblems(_ mapping: MappingResult, loaded weights: [String: Tensor]) -> [MappingProblem] {
        (try? nonFiniteProblems(mapping) { binding in binding.source == nil ? nil : weights[binding.canonical.name] }) ?? []
    }

    private static func nonFiniteProblems(_ mapping: MappingResult,
                                          values: (TensorBinding) throws -> Tensor?) throws -> [MappingProblem] {
        var problems: [MappingProblem] = []
        for binding in mapping.bindings {
            guard let record = binding.source, let tensor = try values(binding) else { continue }
            var nan = 0, inf = 0
            tensor.data.withUnsafeBufferPointer { values in
                for v in values where !v.isFinite { if v.isNaN { nan += 1 } else { inf += 1 } }
            }
            if nan + inf > 0 {
                problems.append(MappingProblem(fileTensor: record.name, canonical: binding.canonical.name,
                                               kind: .nonFinite, expected: "finite values",
                                               actual: "\(nan) NaN, \(inf) Inf of \(tensor.count)"))
            }
        }
        return problems
    }
}
