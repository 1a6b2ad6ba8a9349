import Foundation

/// Groups a Keras file's tensors into layers in creation order.
///
/// Keras 2 legacy files name tensors `<layer>/<scope>/kernel:0`; Keras 3 `.weights.h5`
/// files name them `layers/<layer>/vars/<index>`, where the index's meaning depends on the
/// layer kind (conv and dense: 0 kernel, 1 bias; BatchNorm: gamma, beta, moving mean,
/// moving variance). HDF5 lists groups alphabetically, so `conv2d_10` comes before
/// `conv2d_2`: layers are re-sorted by creation order before they are paired.
public enum KerasGrouping {
    /// `declaredNames` maps a Keras 3 layer path name (`conv2d_3`) to the layer's own name
    /// (`conv2_block1_0_conv`, from the `vars` group's `name` attribute); ordering uses the
    /// declared name when there is one, because the path counter follows the model's layer
    /// list, which puts keras.applications ResNet's shortcut conv before the block's last
    /// conv: sorted by path, the two 1x1 convs of a block with the same shape would swap.
    public static func group(_ records: [TensorRecord], declaredNames: [String: String] = [:])
        -> (layers: [SourceLayer], loose: [TensorRecord]) {
        var order: [String] = []
        var byLayer: [String: [(String, TensorRecord)]] = [:]
        var loose: [TensorRecord] = []
        for record in records {
            guard let (layer, leaf) = split(record.name) else { loose.append(record); continue }
            if byLayer[layer] == nil { order.append(layer) }
            byLayer[layer, default: []].append((leaf, record))
        }
        var layers: [SourceLayer] = []
        func key(_ layer: String) -> [KeyPart] { creationOrderKey(declaredNames[layer] ?? layer) }
        for layer in order.sorted(by: { key($0).lexicographicallyPrecedes(key($1)) }) {
            let entries = byLayer[layer] ?? []
            guard let (kind, tensors) = classify(entries) else {
                loose += entries.map(\.1)
                continue
            }
            layers.append(SourceLayer(name: layer, kind: kind, layout: .keras, tensors: tensors,
                                      canonicalName: declaredNames[layer] ?? layer))
        }
        return (layers, loose)
    }

    /// Whether every layer carries a keras.applications name, so the file can be paired by
    /// name instead of by creation order. Auto-names (`conv2d_3`) never match.
    public static func hasApplicationsNames(_ layers: [SourceLayer]) -> Bool {
        let pattern = #"^(block\d+_conv\d+|fc[12]|predictions|conv1_(conv|bn)|conv\d+_block\d+_\d+_(conv|bn))$"#
        return !layers.isEmpty && layers.allSatisfy {
            ($0.canonicalName ?? $0.name).range(of: pattern, options: .regularExpression) != nil
        }
    }

    /// What a full-model file's `model_config` says about the layers between the weights:
    /// activations and pooling, the evidence that tells LeNet's two forms apart.
    public static func evidence(fromModelConfig json: String) -> GraphEvidence {
        var e = GraphEvidence()
        guard let data = json.data(using: .utf8),
              let root = try? JSONSerialization.jsonObject(with: data) else { return e }
        e.hasGraph = true
        func walk(_ value: Any) {
            if let dict = value as? [String: Any] {
                switch dict["class_name"] as? String {
                case "MaxPooling2D"?: e.maxPool = true
                case "AveragePooling2D"?, "GlobalAveragePooling2D"?: e.avgPool = true
                case "BatchNormalization"?: e.batchNorm = true
                case "ReLU"?: e.relu = true
                default: break
                }
                switch dict["activation"] as? String {
                case "relu"?: e.relu = true
                case "tanh"?: e.tanh = true
                default: break
                }
                dict.values.forEach(walk)
            } else if let array = value as? [Any] {
                array.forEach(walk)
            }
        }
        walk(root)
        return e
    }

    /// "layers/conv2d_3/vars/1" -> ("conv2d_3", "1"); "dense/dense/kernel:0" -> ("dense", "kernel").
    /// Optimizer state and anything outside a layer returns nil.
    static func split(_ name: String) -> (String, String)? {
        let parts = name.split(separator: "/").map(String.init)
        if parts.first == "optimizer" || parts.first == "optimizer_weights" { return nil }
        if let v = parts.firstIndex(of: "vars"), v >= 1, v + 1 < parts.count {
            let layerParts = parts[..<v].drop { $0 == "layers" || $0 == "model_weights" }
            guard let layer = layerParts.last else { return nil }
            return (layer, parts[v + 1])
        }
        let body = parts.drop { $0 == "model_weights" }
        guard body.count >= 2, let first = body.first, let last = body.last else { return nil }
        let leaf = last.hasSuffix(":0") ? String(last.dropLast(2)) : last
        return (first, leaf)
    }

    /// Roles from Keras weight names, or from `vars` indices and shapes.
    static func classify(_ entries: [(String, TensorRecord)]) -> (SourceLayer.Kind, [ParameterRole: TensorRecord])? {
        var tensors: [ParameterRole: TensorRecord] = [:]
        let named: [String: ParameterRole] = ["kernel": .weight, "bias": .bias, "gamma": .weight, "beta": .bias,
                                              "moving_mean": .runningMean, "moving_variance": .runningVar]
        if entries.allSatisfy({ named[$0.0] != nil }) {
            for (leaf, record) in entries { if let role = named[leaf] { tensors[role] = record } }
        } else if let roles = keras1Roles(entries.map(\.0)) {
            for ((_, record), role) in zip(entries, roles) { tensors[role] = record }
        } else if entries.allSatisfy({ Int($0.0) != nil }) {
            let byIndex = entries.sorted { (Int($0.0) ?? 0) < (Int($1.0) ?? 0) }.map(\.1)
            let first = byIndex.first?.shape.count
            if first == 4 || first == 2 {
                tensors[.weight] = byIndex.first
                if byIndex.count > 1 { tensors[.bias] = byIndex[1] }
                if byIndex.count > 2 { return nil }
            } else if byIndex.count == 4 {
                tensors[.weight] = byIndex[0]; tensors[.bias] = byIndex[1]
                tensors[.runningMean] = byIndex[2]; tensors[.runningVar] = byIndex[3]
            } else {
                return nil
            }
        } else {
            return nil
        }
        if tensors[.runningMean] != nil || tensors[.runningVar] != nil { return (.batchNorm, tensors) }
        switch tensors[.weight]?.shape.count {
        case 4?: return (.conv, tensors)
        case 2?: return (.dense, tensors)
        default: return nil
        }
    }

    /// Keras 1 named a layer's weights after the layer and the attribute holding them, and
    /// TensorFlow appended a uniquing counter: `block1_conv1_W_1:0`, `block1_conv1_b_1:0`
    /// (keras.applications' VGG16/VGG19 and `_notop` files still are this). Keras loads them
    /// by position within the layer; the attribute names say the same: `W` kernel, `b` bias,
    /// and BatchNorm's `gamma`, `beta`, `running_mean`, `running_std` (which held the
    /// variance despite its name). Nil unless every name is one of those, each once.
    static func keras1Roles(_ leaves: [String]) -> [ParameterRole]? {
        let suffixes: [(String, ParameterRole)] = [("_running_mean", .runningMean), ("_running_std", .runningVar),
                                                   ("_gamma", .weight), ("_beta", .bias), ("_W", .weight), ("_b", .bias)]
        var roles: [ParameterRole] = []
        for leaf in leaves {
            // The counter TensorFlow adds to a repeated variable name: `_W_1`, `_b_12`.
            var stem = Substring(leaf)
            if let underscore = stem.lastIndex(of: "_"), stem[stem.index(after: underscore)...].allSatisfy(\.isNumber),
               underscore < stem.index(before: stem.endIndex) {
                stem = stem[..<underscore]
            }
            guard let role = suffixes.first(where: { stem.hasSuffix($0.0) && stem.count > $0.0.count })?.1,
                  !roles.contains(role) else { return nil }
            roles.append(role)
        }
        return roles.isEmpty ? nil : roles
    }

    /// Layer names in Keras creation order (`conv2d`, `conv2d_2`, `conv2d_10`), by the
    /// sort key the grouping pairs layers with.
    public static func sortedByCreationOrder(_ names: [String]) -> [String] {
        names.sorted { creationOrderKey($0).lexicographicallyPrecedes(creationOrderKey($1)) }
    }

    /// A sort key giving Keras creation order: numbers inside names compare as numbers
    /// (`conv2d_2` < `conv2d_10`), and keras.applications ResNet's shortcut `_0_conv`,
    /// created first, sorts after the block's main branch as in the canonical order.
    static func creationOrderKey(_ name: String) -> [KeyPart] {
        var key: [KeyPart] = []
        var digits = "", letters = ""
        func flush() {
            if !letters.isEmpty { key.append(.text(letters)); letters = "" }
            if !digits.isEmpty { key.append(.number(Int(digits.prefix(18)) ?? 0)); digits = "" }
        }
        let resnetShortcut = name.range(of: #"_block\d+_0_(conv|bn)$"#, options: .regularExpression) != nil
        let adjusted = resnetShortcut ? name.replacingOccurrences(of: "_0_", with: "_9_") : name
        for ch in adjusted {
            if ch.isNumber {
                if !letters.isEmpty { key.append(.text(letters)); letters = "" }
                digits.append(ch)
            } else {
                if !digits.isEmpty { key.append(.number(Int(digits.prefix(18)) ?? 0)); digits = "" }
                letters.append(ch)
            }
        }
        flush()
        // Unnumbered auto-names come first: `conv2d` before `conv2d_1`.
        return key
    }

    enum KeyPart: Comparable {
        case number(Int)
        case text(String)
    }
}

extension Array where Element == KerasGrouping.KeyPart {
    func lexicographicallyPrecedes(_ other: [KerasGrouping.KeyPart]) -> Bool {
        for (a, b) in zip(self, other) where a != b { return a < b }
        return count < other.count
    }
}
