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

    public static func inspectJSON(_ r: InspectReport) -> String { encodeJSON(r) }

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

    public static func verifyJSON(_ r: VerifyReport) -> String { encodeJSON(r) }
}

/// Keys spelt at run time: the details a file adds to `inspect` (`entry epoch`, `layout`).
struct JSONKey: CodingKey {
    let stringValue: String
    var intValue: Int? { nil }
    init(_ name: String) { stringValue = name }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

extension InspectReport: Encodable {
    public func encode(to encoder: Encoder) throws {
        var root = encoder.container(keyedBy: JSONKey.self)
        // Details first: the fixed keys below win over a detail that happens to share a name.
        for (key, value) in details { try root.encode(value, forKey: JSONKey(key)) }
        try root.encode(file, forKey: JSONKey("file"))
        try root.encode(format.rawValue, forKey: JSONKey("format"))
        var list = root.nestedUnkeyedContainer(forKey: JSONKey("tensors"))
        for t in tensors {
            var row = list.nestedContainer(keyedBy: JSONKey.self)
            try row.encode(t.name, forKey: JSONKey("name"))
            try row.encode(t.shape, forKey: JSONKey("shape"))
            try row.encode(t.dtype.rawValue, forKey: JSONKey("dtype"))
            try row.encode(t.byteCount, forKey: JSONKey("bytes"))
        }
        try root.encode(tensors.count, forKey: JSONKey("tensor_count"))
        try root.encode(totalElements, forKey: JSONKey("total_values"))
        try root.encode(totalBytes, forKey: JSONKey("total_bytes"))
        try root.encodeIfPresent(producer, forKey: JSONKey("producer"))
        try root.encodeIfPresent(opsetVersion, forKey: JSONKey("opset"))
        if !operators.isEmpty {
            try root.encode(Dictionary(operators, uniquingKeysWith: { $1 }), forKey: JSONKey("operators"))
        }
    }
}

extension VerifyReport: Encodable {
    private enum Keys: String, CodingKey {
        case file, format, convention, pairing, architecture, preset, variant, confidence, ok, parameters
        case expectedParameters = "expected_parameters", classes, noTop = "no_top", notes, alsoFits = "also_fits"
        case problems, producer
        case tensor, fileTensor = "file_tensor", canonical, kind, expected, actual
    }

    /// Absent values are written as null, so every report has the same keys.
    public func encode(to encoder: Encoder) throws {
        var root = encoder.container(keyedBy: Keys.self)
        try root.encode(file, forKey: .file)
        try root.encode(format.rawValue, forKey: .format)
        try root.encode(convention, forKey: .convention)
        try root.encode(pairing.rawValue, forKey: .pairing)
        try root.encode(architecture, forKey: .architecture)
        try root.encode(preset, forKey: .preset)
        try root.encode(variant, forKey: .variant)
        try root.encode(confidence.rawValue, forKey: .confidence)
        try root.encode(ok, forKey: .ok)
        try root.encode(parameters, forKey: .parameters)
        try root.encode(expectedParameters, forKey: .expectedParameters)
        try root.encode(classes, forKey: .classes)
        try root.encode(noTop, forKey: .noTop)
        try root.encode(notes, forKey: .notes)
        try root.encode(alsoFits, forKey: .alsoFits)
        var list = root.nestedUnkeyedContainer(forKey: .problems)
        for p in problems {
            var row = list.nestedContainer(keyedBy: Keys.self)
            try row.encode(p.tensor, forKey: .tensor)
            try row.encode(p.fileTensor, forKey: .fileTensor)
            try row.encode(p.canonical, forKey: .canonical)
            try row.encode(p.kind.rawValue, forKey: .kind)
            try row.encode(p.expected, forKey: .expected)
            try row.encode(p.actual, forKey: .actual)
        }
        try root.encodeIfPresent(producer, forKey: .producer)
    }
}
