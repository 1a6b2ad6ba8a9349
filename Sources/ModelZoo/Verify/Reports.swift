import Foundation

/// What `zoo inspect` prints: the file's own view, before any architecture is assumed.
public struct InspectReport: Sendable {
    public var file: String
    public var format: WeightFormat
    public var producer: String?
    public var tensors: [TensorRecord]
    public var opsetVersion: Int?
    public var operators: [(String, Int)]
    public var details: [(String, String)]

    public var totalElements: Int { tensors.reduce(0) { $0 + $1.elementCount } }
    public var totalBytes: Int { tensors.reduce(0) { $0 + $1.byteCount } }

    public init(file: WeightFile) {
        self.file = file.path
        format = file.format
        producer = file.producer
        tensors = file.tensors
        opsetVersion = nil
        operators = []
        details = []
    }
}

public enum ReportRenderer {
    /// Tensor names, producers and notes come from the file: control bytes in them (a
    /// newline, a terminal escape) are shown as `\\xNN`, so each row stays one row and the
    /// file cannot drive the user's terminal.
    static func terminalSafe(_ line: String) -> String { ZooError.oneLine(line, Int.max) }

    public static func inspectText(_ r: InspectReport) -> String {
        var out = ["file: \(r.file)", "format: \(r.format.rawValue)"]
        if let p = r.producer { out.append("producer: \(p)") }
        if let o = r.opsetVersion { out.append("opset: \(o)") }
        for (k, v) in r.details { out.append("\(k): \(v)") }
        if !r.operators.isEmpty {
            out.append("operators: " + r.operators.map { "\($0.0) \($0.1)" }.joined(separator: ", "))
        }
        out.append("")
        let nameWidth = min(60, r.tensors.map(\.name.count).max() ?? 4)
        let shapes = r.tensors.map { $0.shape.map(String.init).joined(separator: "x") }
        let shapeWidth = max(5, shapes.map(\.count).max() ?? 5)
        out.append("name".padding(toLength: nameWidth, withPad: " ", startingAt: 0) + "  "
                   + "shape".padding(toLength: shapeWidth, withPad: " ", startingAt: 0) + "  dtype        bytes")
        for (t, shape) in zip(r.tensors, shapes) {
            out.append(t.name.padding(toLength: max(nameWidth, t.name.count), withPad: " ", startingAt: 0) + "  "
                       + shape.padding(toLength: shapeWidth, withPad: " ", startingAt: 0) + "  "
                       + t.dtype.rawValue.padding(toLength: 9, withPad: " ", startingAt: 0)
                       + String(repeating: " ", count: max(0, 12 - grouped(t.byteCount).count)) + grouped(t.byteCount))
        }
        out.append("")
        out.append("\(r.tensors.count) tensors, \(grouped(r.totalElements)) values, \(grouped(r.totalBytes)) bytes")
        return out.map(terminalSafe).joined(separator: "\n") + "\n"
    }

    public static func inspectJSON(_ r: InspectReport) -> String {
        var root: [String: Any] = [
            "file": r.file, "format": r.format.rawValue,
            "tensors": r.tensors.map { ["name": $0.name, "shape": $0.shape, "dtype": $0.dtype.rawValue, "bytes": $0.byteCount] as [String: Any] },
            "tensor_count": r.tensors.count, "total_values": r.totalElements, "total_bytes": r.totalBytes,
        ]
        if let p = r.producer { root["producer"] = p }
        if let o = r.opsetVersion { root["opset"] = o }
        if !r.operators.isEmpty { root["operators"] = Dictionary(uniqueKeysWithValues: r.operators.map { ($0.0, $0.1) }) }
        for (k, v) in r.details { root[k] = v }
        return jsonString(root)
    }

    public static func verifyText(_ r: VerifyReport) -> String {
        var out = ["file: \(r.file)", "format: \(r.format.rawValue) (\(r.convention))"]
        if let p = r.producer { out.append("producer: \(p)") }
        out.append("tensors paired: \(r.pairing.rawValue)")
        if let id = r.architecture, let title = r.title, let variant = r.variant {
            out.append("architecture: \(title) [\(id)], \(variant)")
            if let id = r.preset, id != r.architecture, let preset = WeightsPreset.find(id) {
                out.append("preset: \(id), \(preset.source); \(preset.preprocessing.rawValue) preprocessing")
            }
            out.append("confidence: \(r.confidence.rawValue)" + (r.alsoFits.isEmpty ? "" : " (also fits: \(r.alsoFits.joined(separator: ", ")))"))
        } else {
            out.append("architecture: matches none of `zoo list`")
        }
        if let c = r.classes { out.append("classes: \(c)") } else if r.noTop { out.append("classes: none (no top)") }
        out.append("parameters: \(grouped(r.parameters))" + (r.expectedParameters.map { " (expected \(grouped($0)))" } ?? ""))
        for note in r.notes { out.append("note: \(note)") }
        if r.problems.isEmpty {
            out.append(r.ok ? "verdict: OK, every tensor present, shaped right and finite" : "verdict: NOT OK")
        } else {
            out.append("verdict: NOT OK, \(r.problems.count) problem\(r.problems.count == 1 ? "" : "s"):")
            for p in r.problems.prefix(50) {
                out.append("  \(p.kind.rawValue): \(p.tensor): expected \(p.expected), found \(p.actual)")
            }
            if r.problems.count > 50 { out.append("  ... and \(r.problems.count - 50) more (see --format json)") }
        }
        return out.map(terminalSafe).joined(separator: "\n") + "\n"
    }

    public static func verifyJSON(_ r: VerifyReport) -> String {
        var root: [String: Any] = [
            "file": r.file, "format": r.format.rawValue, "convention": r.convention, "pairing": r.pairing.rawValue,
            "architecture": r.architecture ?? NSNull(), "preset": r.preset ?? NSNull(), "variant": r.variant ?? NSNull(),
            "confidence": r.confidence.rawValue, "ok": r.ok, "parameters": r.parameters,
            "expected_parameters": r.expectedParameters ?? NSNull(), "classes": r.classes ?? NSNull(), "no_top": r.noTop,
            "notes": r.notes, "also_fits": r.alsoFits,
            "problems": r.problems.map { p -> [String: Any] in
                ["tensor": p.tensor, "file_tensor": p.fileTensor ?? NSNull(), "canonical": p.canonical ?? NSNull(),
                 "kind": p.kind.rawValue, "expected": p.expected, "actual": p.actual]
            },
        ]
        if let p = r.producer { root["producer"] = p }
        return jsonString(root)
    }
}
