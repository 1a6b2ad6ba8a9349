/// Every failure the library reports is one of these: a value that names the file, the
/// tensor or the layer involved, what was expected and what was found, so the command line
/// can print it as it is and exit non-zero.
public enum ZooError: Error, CustomStringConvertible, Equatable {
    /// The user named an architecture id that is not in the registry.
    case unknownArchitecture(String, known: [String])
    /// An input size the network cannot take; `layer` is where the volume breaks.
    case invalidInputSize(architecture: String, layer: String, detail: String)
    /// A command-line value that makes no sense (negative class count and the like).
    case invalidArgument(String)
    /// The file cannot be read at all: missing, truncated, not the format it claims.
    case unreadableFile(path: String, reason: String)
    /// One tensor in a readable file is unusable (bad shape, dtype, missing data).
    case badTensor(path: String, tensor: String, reason: String)
    /// A write failed; the target was left as it was.
    case writeFailed(path: String, reason: String)
    /// The inference engine could not build or run a layer (oneDNN refused a descriptor,
    /// a weight is missing or misshapen, an input tensor has the wrong shape).
    case engineFailure(layer: String, reason: String)

    public var description: String {
        switch self {
        case let .unknownArchitecture(id, known):
            return "unknown architecture '\(id)'; known: \(known.joined(separator: ", "))"
        case let .invalidInputSize(arch, layer, detail):
            return "\(arch): input size does not fit at layer '\(layer)': \(detail)"
        case let .invalidArgument(message):
            return message
        case let .unreadableFile(path, reason):
            return "\(path): \(reason)"
        case let .badTensor(path, tensor, reason):
            return "\(path): tensor '\(tensor)': \(reason)"
        case let .writeFailed(path, reason):
            return "\(path): write failed: \(reason)"
        case let .engineFailure(layer, reason):
            return "engine: layer '\(layer)': \(reason)"
        }
    }
}
