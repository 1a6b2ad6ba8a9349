import Foundation
/// Every failure the library reports is one of these: a value that names the file, the
/// tensor or the layer involved, what was expected and what was found, so the command line
/// can print it as it is and exit non-zero.
public enum ZooError: Error, CustomStringConvertible, Equatable {
    /// The user named an architecture id that is not in the registry.
    case unknownArchitecture(String, known: [String])
    /// An input size the network cannot take; `layer` is where the volume breaks.
    case invalidInputSize(architecture: String, layer: String, detail: String)
    /// A value that makes no sense (negative class count and the like).
    case invalidArgument(String)
    /// A value given to a library parameter that it cannot use. `message` names parameters
    /// as `{name}` (the library's own names: `trainLast`, `outputPath`); `description`
    /// shows them as they are, and the command line shows each as its flag
    /// (`rendered(naming:)`), so the library never speaks in flags.
    case invalidParameter(name: String, message: String)
    /// The file cannot be read at all: missing, truncated, not the format it claims.
    case unreadableFile(path: String, reason: String)
    /// One tensor in a readable file is unusable (bad shape, dtype, missing data).
    case badTensor(path: String, tensor: String, reason: String)
    /// A write failed; the target was left as it was.
    case writeFailed(path: String, reason: String)
    /// The inference engine could not build or run a layer (oneDNN refused a descriptor,
    /// a weight is missing or misshapen, an input tensor has the wrong shape).
    case engineFailure(layer: String, reason: String)

    /// One line, whatever the file put in its names and headers: control bytes are shown as
    /// `\xNN` and each piece is cut at a length a terminal line can hold.
    public var description: String {
        let line = ZooError.oneLine
        switch self {
        case let .unknownArchitecture(id, known):
            return "unknown architecture '\(line(id, 100))'; known: \(known.joined(separator: ", "))"
        case let .invalidInputSize(arch, layer, detail):
            return "\(arch): input size does not fit at layer '\(layer)': \(line(detail, 400))"
        case let .invalidArgument(message):
            return line(message, 1000)
        case .invalidParameter:
            return rendered { $0 }
        case let .unreadableFile(path, reason):
            return "\(line(path, 300)): \(line(reason, 600))"
        case let .badTensor(path, tensor, reason):
            return "\(line(path, 300)): tensor '\(line(tensor, 200))': \(line(reason, 600))"
        case let .writeFailed(path, reason):
            return "\(line(path, 300)): write failed: \(line(reason, 600))"
        case let .engineFailure(layer, reason):
            return "engine: layer '\(line(layer, 200))': \(line(reason, 600))"
        }
    }

    /// The description with each `{parameter}` of an `invalidParameter` message written as
    /// `naming` names it (the command line passes its flags).
    public func rendered(naming: (String) -> String) -> String {
        guard case let .invalidParameter(_, message) = self else { return description }
        var out = ""
        var rest = Substring(message)
        while let open = rest.firstIndex(of: "{"), let close = rest[open...].firstIndex(of: "}") {
            out += rest[..<open]
            out += naming(String(rest[rest.index(after: open)..<close]))
            rest = rest[rest.index(after: close)...]
        }
        return ZooError.oneLine(out + rest, 1000)
    }

    /// `text` with control characters escaped, cut to `limit` characters.
    public static func oneLine(_ text: String, _ limit: Int) -> String {
        var out = ""
        var length = 0
        for scalar in text.unicodeScalars {
            if length >= limit { return out + "..." }
            if scalar.value < 0x20 || scalar.value == 0x7f || (0x80..<0xa0).contains(scalar.value) {
                out += "\\x" + String(format: "%02X", scalar.value)
            } else {
                out.unicodeScalars.append(scalar)
            }
            length += 1
        }
        return out
    }
}
