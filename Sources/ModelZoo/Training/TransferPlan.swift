/// Where a pretrained network is cut for transfer learning: the frozen backbone (run by
/// oneDNN once per image, its output cached), and the trained tail (the new head, plus the
/// last `trainLast` blocks before it, run forward and backward by oneDNN each step).
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

    /// Layer kinds the oneDNN trainer runs backward.
    static func isTrainable(_ layer: ResolvedLayer) -> Bool {
        switch layer.layer.op {
        case .linear, .conv, .batchNorm, .maxPool, .avgPool, .lrn, .flatten, .dropout, .concat, .add: return true
        case .adaptiveAvgPool(let size):
            // Identity or even windows (an average pool); uneven adaptive windows have no primitive.
            guard let input = layer.inputShapes.first else { return false }
            return input.h % size.h == 0 && input.w % size.w == 0
        case .softmax: return false
        }
    }

    /// Plans a cut of `source` with a new `classes`-way head that trains the last
    /// `trainLast` blocks before the head as well (see `TransferBlocks`).
    public init(source: ResolvedNetwork, classes: Int, trainLast: Int) throws {
        let arch = source.architecture
        guard trainLast >= 0 else { throw ZooError.invalidParameter(name: "trainLast", message: "{trainLast} must be 0 or more, got \(trainLast)") }
        guard let headIndex = source.layers.lastIndex(where: { $0.layer.name == arch.headLayer }),
              headIndex == source.layers.count - 1, case .linear = source.layers[headIndex].layer.op else {
            throw ZooError.engineFailure(layer: arch.headLayer,
                                         reason: "\(arch.id): the head is not the network's final linear layer")
        }
        let blocks = TransferBlocks.blocks(of: source)
        guard let headBlock = blocks.lastIndex(where: { $0.layers.contains(headIndex) }) else {
            throw ZooError.engineFailure(layer: arch.headLayer, reason: "\(arch.id): the head is in no block")
        }
        guard trainLast <= headBlock else {
            throw ZooError.invalidParameter(name: "trainLast", message:
                "{trainLast} \(trainLast): \(arch.id) has only \(headBlock) blocks with parameters before its head "
                    + "(see zoo summary \(arch.id) --blocks)")
        }
        // The head is cut at the head layer itself, as the features have always been taken.
        let cut = trainLast == 0 ? headIndex : blocks[headBlock - trainLast].layers.lowerBound
        for index in cut..<source.layers.count where !Self.isTrainable(source.layers[index]) {
            let layer = source.layers[index].layer
            throw ZooError.invalidParameter(name: "trainLast", message:
                "{trainLast} \(trainLast) on \(arch.id) reaches layer '\(layer.name)' (\(layer.op.typeName)), "
                    + "which the trainer cannot run backward")
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

/// The units `--train-last K` counts, read off the layer graph. A cut is only possible
/// where everything after it reads nothing from before it but the layer just before it, so
/// a ResNet block or an Inception module (whose branches and shortcut read the block's
/// input) is one unit by construction. Within that: a BatchNorm belongs to the conv before
/// it, layers without parameters (pools, flatten, dropout) to the unit before them, and a
/// VGG conv stage (its convs up to the max pool) is one unit.
public struct TransferBlock: Sendable, Equatable {
    /// A short name: the common prefix of the layers' names where there is one.
    public let name: String
    /// Indices into the network's layers.
    public let layers: Range<Int>
    public let parameters: Int
}

public enum TransferBlocks {
    public static func blocks(of net: ResolvedNetwork) -> [TransferBlock] {
        let layers = net.layers
        guard !layers.isEmpty else { return [] }
        var producer: [String: Int] = [Layer.networkInput: -1]
        for (index, resolved) in layers.enumerated() { producer[resolved.layer.name] = index }
        // lastReader[p + 1]: the last layer reading the value produced at p (-1: the input).
        var lastReader = [Int](repeating: -1, count: layers.count + 1)
        for (index, resolved) in layers.enumerated() {
            for input in resolved.layer.inputs { if let p = producer[input] { lastReader[p + 1] = max(lastReader[p + 1], index) } }
        }
        // Cut before i: every value made before i - 1 is read only before i.
        var starts = [0]
        var reach = -1
        for i in 1..<max(layers.count, 1) {
            reach = max(reach, lastReader[i - 1])  // values produced at i - 2 and earlier
            if reach < i { starts.append(i) }
        }
        var segments: [Range<Int>] = []
        for (k, start) in starts.enumerated() { segments.append(start..<(k + 1 < starts.count ? starts[k + 1] : layers.count)) }
        func params(_ range: Range<Int>) -> [ResolvedLayer] { range.map { layers[$0] }.filter { !$0.parameters.isEmpty } }
        func isBatchNorm(_ l: ResolvedLayer) -> Bool { if case .batchNorm = l.layer.op { return true }; return false }
        var units: [Range<Int>] = []
        for segment in segments {
            let p = params(segment)
            if let last = units.last, p.isEmpty || p.allSatisfy(isBatchNorm) {
                units[units.count - 1] = last.lowerBound..<segment.upperBound
            } else {
                units.append(segment)
            }
        }
        if net.architecture.family == .vgg {
            var staged: [Range<Int>] = []
            var open = false
            for unit in units {
                let ops = unit.map { layers[$0].layer.op }
                let isConv = ops.contains { if case .conv = $0 { return true }; return false }
                let endsStage = ops.contains { if case .maxPool = $0 { return true }; return false }
                if open, isConv, let last = staged.last {
                    staged[staged.count - 1] = last.lowerBound..<unit.upperBound
                } else {
                    staged.append(unit)
                }
                open = isConv && !endsStage
            }
            units = staged
        }
        var stage = 0
        return units.map { range in
            let named = params(range).map(\.layer.name)
            if net.architecture.family == .vgg, range.contains(where: { if case .conv = layers[$0].layer.op { return true }; return false }) {
                stage += 1
                return TransferBlock(name: "conv stage \(stage)", layers: range, parameters: params(range).reduce(0) { $0 + $1.parameterCount })
            }
            return TransferBlock(name: commonPrefix(named.isEmpty ? range.map { layers[$0].layer.name } : named),
                                 layers: range, parameters: params(range).reduce(0) { $0 + $1.parameterCount })
        }
    }

    /// The blocks as `zoo summary --blocks` prints them: for each, the `--train-last K` that
    /// starts training there, its layers, parameters, and the feature volume cached before it.
    public static func render(_ net: ResolvedNetwork, json: Bool = false) -> String {
        let blocks = blocks(of: net)
        guard let headBlock = blocks.lastIndex(where: { $0.layers.contains(net.layers.count - 1) }) else { return "" }
        var rows: [(k: Int, block: TransferBlock, first: String, last: String, features: Shape3)] = []
        for (index, block) in blocks.enumerated() {
            let start = block.layers.lowerBound
            rows.append((headBlock - index, block, net.layers[start].layer.name, net.layers[block.layers.upperBound - 1].layer.name,
                         start == 0 ? net.input : net.layers[start - 1].output))
        }
        if json {
            let entries = rows.map { r in
                "  {\"train_last\": \(r.k), \"block\": \"\(r.block.name)\", \"first\": \"\(r.first)\", \"last\": \"\(r.last)\", "
                    + "\"layers\": \(r.block.layers.count), \"parameters\": \(r.block.parameters), "
                    + "\"features\": [\(r.features.c), \(r.features.h), \(r.features.w)]}"
            }
            return "[\n" + entries.joined(separator: ",\n") + "\n]\n"
        }
        var lines = ["\(net.architecture.title) (\(net.architecture.id)): the blocks --train-last K counts back from the head",
                     ""]
        let header = ["K", "block", "layers", "params", "cached features"]
        var table = [header]
        for r in rows {
            let k = r.k == 0 ? "head" : r.k < 0 ? "-" : "\(r.k)"
            let span = r.first == r.last ? r.first : "\(r.first) .. \(r.last)"
            table.append([k, r.block.name, span, r.block.parameters.formatted(), "\(r.features.c)x\(r.features.h)x\(r.features.w)"])
        }
        let widths = header.indices.map { c in table.map { $0[c].count }.max() ?? 0 }
        for row in table {
            lines.append(row.indices.map { c in
                c == 3 ? String(repeating: " ", count: widths[c] - row[c].count) + row[c]
                       : row[c] + String(repeating: " ", count: widths[c] - row[c].count)
            }.joined(separator: "  ").trimmingCharacters(in: .whitespaces))
        }
        lines.append("")
        lines.append("--train-last K trains the K blocks above the head and the head; the features cached are the "
                     + "volume before the first of them.")
        return lines.joined(separator: "\n") + "\n"
    }

    /// "layer4.0" from "layer4.0.conv1" ... "layer4.0.downsample.1"; "a..b" when they share
    /// no whole component.
    static func commonPrefix(_ names: [String]) -> String {
        guard let first = names.first else { return "" }
        if names.count == 1 { return first }
        let separators: Set<Character> = [".", "/", "_"]
        var prefix = Substring(first)
        for name in names.dropFirst() {
            while !name.hasPrefix(prefix) { prefix = prefix.dropLast() }
        }
        // Back off to a whole component.
        if !names.allSatisfy({ $0.count == prefix.count || separators.contains($0[$0.index($0.startIndex, offsetBy: prefix.count)]) }) {
            while let last = prefix.last, !separators.contains(last) { prefix = prefix.dropLast() }
        }
        while let last = prefix.last, separators.contains(last) { prefix = prefix.dropLast() }
        return prefix.isEmpty ? "\(first)..\(names.last ?? first)" : String(prefix)
    }
}
