import Foundation

/// The parameter table of a resolved network, as text (like the hand-written tables in
/// ../shared/seeds), Markdown, or JSON.
public enum SummaryFormat: String, CaseIterable, Sendable {
    case text, markdown, json
}

extension ResolvedLayer {
    /// "11x11/4, pad 2" style description of the layer's window, or "" where there is none.
    public var geometry: String {
        func pad(_ p: Padding) -> String { p == .zero ? "" : ", pad \(p)" }
        switch layer.op {
        case .conv(let c):
            return "\(c.kernel.h)x\(c.kernel.w)/\(c.stride)\(pad(c.padding))" + (c.groups > 1 ? ", groups \(c.groups)" : "")
        case .maxPool(let p), .avgPool(let p):
            return "\(p.kernel.h)x\(p.kernel.w)/\(p.stride)\(pad(p.padding))" + (p.ceilMode ? ", ceil" : "")
        case .adaptiveAvgPool(let s):
            return "to \(s.h)x\(s.w)"
        case .lrn(let l):
            return "size \(l.size), alpha \(l.alpha), beta \(l.beta), k \(l.k)"
        case .batchNorm(let eps):
            return "eps \(eps)"
        case .dropout(let rate):
            return "p \(rate)"
        case .concat, .add:
            return "of \(layer.inputs.count)"
        case .flatten, .linear, .softmax:
            return ""
        }
    }

    /// Type with its fused activation, e.g. "Conv+ReLU".
    public var typeLabel: String {
        switch layer.activation {
        case .relu?: return layer.op.typeName + "+ReLU"
        case .tanh?: return layer.op.typeName + "+Tanh"
        case nil: return layer.op.typeName
        }
    }
}

public enum SummaryRenderer {
    public static func render(_ net: ResolvedNetwork, as format: SummaryFormat) -> String {
        switch format {
        case .text: return text(net)
        case .markdown: return markdown(net)
        case .json: return json(net)
        }
    }

    private static let headers = ["layer", "type", "output CxHxW", "kernel/stride", "weights", "biases",
                                  "activations", "MACs"]

    private static func rows(_ net: ResolvedNetwork) -> [[String]] {
        var rows: [[String]] = [["input", "Input", net.input.description, "", "0", "0",
                                 grouped(net.input.count), "0"]]
        for l in net.layers {
            rows.append([l.layer.name, l.typeLabel, l.output.description, l.geometry,
                         grouped(l.weightCount),
                         grouped(l.biasCount),
                         l.allocatesOutput ? grouped(l.output.count) : "-",
                         grouped(l.macs)])
        }
        return rows
    }

    private static func totals(_ net: ResolvedNetwork) -> [String] {
        let bytes = net.forwardMemoryBytes
        var lines = [
            "TOTAL params: \(grouped(net.totalParameters)) learnable"
                + (net.totalBuffers > 0 ? " (+\(grouped(net.totalBuffers)) BatchNorm running statistics)" : ""),
        ]
        if let published = net.architecture.publishedParameters, net.classes == net.architecture.defaultClasses {
            lines.append("published: \(grouped(published))" + (published == net.totalParameters ? " (matches)" : " (DIFFERS)"))
        }
        lines.append("TOTAL memory: \(grouped(net.activationElements)) values * 4 bytes = \(grouped(bytes)) bytes "
            + "(\(String(format: "%.1f", Double(bytes) / 1_048_576)) MiB) / image (forward)")
        lines.append("TOTAL MACs: \(grouped(net.totalMACs)) (\(String(format: "%.2f", Double(net.totalMACs) / 1e9)) G) / image")
        return lines
    }

    private static func title(_ net: ResolvedNetwork) -> String {
        let a = net.architecture
        return "\(a.title) [\(a.id)]: \(a.variant); input \(net.input.c)x\(net.input.h)x\(net.input.w), \(net.classes) classes"
    }

    static func text(_ net: ResolvedNetwork) -> String {
        let table = [headers] + rows(net)
        let widths = headers.indices.map { col in table.map { $0[col].count }.max() ?? 0 }
        let numeric: Set<Int> = [4, 5, 6, 7]
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, cell in
                let padding = String(repeating: " ", count: widths[i] - cell.count)
                return numeric.contains(i) ? padding + cell : cell + padding
            }.joined(separator: "  ").trimmingCharacters(in: .whitespaces)
        }
        var out = [title(net), ""]
        out.append(line(headers))
        out.append(String(repeating: "-", count: widths.reduce(0, +) + 2 * (widths.count - 1)))
        out += rows(net).map(line)
        out.append("")
        out += totals(net)
        return out.joined(separator: "\n") + "\n"
    }

    static func markdown(_ net: ResolvedNetwork) -> String {
        var out = ["### " + title(net), ""]
        out.append("| " + headers.joined(separator: " | ") + " |")
        out.append("|" + headers.indices.map { $0 >= 4 ? "---:" : "---" }.joined(separator: "|") + "|")
        for row in rows(net) { out.append("| " + row.map { $0.isEmpty ? " " : $0 }.joined(separator: " | ") + " |") }
        out.append("")
        out += totals(net).map { "- " + $0 }
        return out.joined(separator: "\n") + "\n"
    }

    static func json(_ net: ResolvedNetwork) -> String { encodeJSON(SummaryJSON(net)) }
}

/// `zoo summary --format json`: the network, every layer, the totals.
struct SummaryJSON: Encodable {
    struct Parameter: Encodable { let name: String; let shape: [Int] }
    struct LayerRow: Encodable {
        let name, type: String
        let output: [Int]
        let params, weights, biases, buffers, activationElements, macs: Int
        let inputs: [String]
        let activation: String?
        let geometry: String?
        let parameters: [Parameter]
        enum CodingKeys: String, CodingKey {
            case name, type, output, params, weights, biases, buffers, activationElements = "activation_elements", macs
            case inputs, activation, geometry, parameters
        }
    }
    let architecture, title, variant, family: String
    let input: [Int]
    let classes: Int
    let layers: [LayerRow]
    let totalParams, totalBuffers, activationElements, forwardMemoryBytes, macs: Int
    let publishedParams: Int?
    enum CodingKeys: String, CodingKey {
        case architecture, title, variant, family, input, classes, layers, totalParams = "total_params"
        case totalBuffers = "total_buffers", activationElements = "activation_elements"
        case forwardMemoryBytes = "forward_memory_bytes", macs, publishedParams = "published_params"
    }

    init(_ net: ResolvedNetwork) {
        let a = net.architecture
        architecture = a.id; title = a.title; variant = a.variant; family = a.family.rawValue
        input = net.input.array; classes = net.classes
        layers = net.layers.map { l in
            LayerRow(name: l.layer.name, type: l.layer.op.typeName, output: l.output.array, params: l.parameterCount,
                     weights: l.weightCount, biases: l.biasCount, buffers: l.bufferCount,
                     activationElements: l.activationElements, macs: l.macs, inputs: l.layer.inputs,
                     activation: l.layer.activation?.rawValue, geometry: l.geometry.isEmpty ? nil : l.geometry,
                     parameters: (l.parameters + l.buffers).map { Parameter(name: $0.name, shape: $0.shape) })
        }
        totalParams = net.totalParameters; totalBuffers = net.totalBuffers
        activationElements = net.activationElements; forwardMemoryBytes = net.forwardMemoryBytes
        macs = net.totalMACs; publishedParams = a.publishedParameters
    }
}

/// The one encoder behind every `--format json`: sorted keys, so output is stable between
/// runs, and pretty-printed.
public func encodeJSON<T: Encodable>(_ value: T) -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    guard let data = try? encoder.encode(value), let text = String(data: data, encoding: .utf8) else { return "{}\n" }
    return text + "\n"
}

/// 138357544 -> "138,357,544".
public func grouped(_ n: Int) -> String {
    let digits = String(n.magnitude)
    var out = ""
    for (i, ch) in digits.enumerated() {
        if i > 0 && (digits.count - i) % 3 == 0 { out.append(",") }
        out.append(ch)
    }
    return (n < 0 ? "-" : "") + out
}
