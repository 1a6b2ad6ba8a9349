import Foundation

/// The state after a finished epoch: trained tensors, momentum buffers, and the best epoch
/// so far with its tensors. Stored as safetensors (`value/<name>`, `momentum/<name>`,
/// `best/<name>`) with the epoch counters and a fingerprint of the run's settings in the
/// metadata, so `--resume` refuses a checkpoint made by a different run.
public struct TrainingCheckpoint {
    public let finishedEpochs: Int
    public let values: [String: [Float]]
    public let momentum: [String: [Float]]
    public let bestEpoch: Int
    public let bestAccuracy: Double
    public let best: [String: [Float]]

    static let fingerprintKey = "zoo.checkpoint.fingerprint"

    public func write(to path: String, shapes: [String: [Int]], fingerprint: String) throws {
        var tensors: [(name: String, tensor: Tensor)] = []
        for name in shapes.keys.sorted() {
            guard let shape = shapes[name], let value = values[name], let m = momentum[name], let b = best[name] else {
                throw ZooError.writeFailed(path: path, reason: "checkpoint lacks '\(name)'")
            }
            tensors += [("value/" + name, Tensor(shape: shape, data: value)),
                        ("momentum/" + name, Tensor(shape: shape, data: m)),
                        ("best/" + name, Tensor(shape: shape, data: b))]
        }
        let metadata = ["zoo.checkpoint.finished_epochs": String(finishedEpochs),
                        "zoo.checkpoint.best_epoch": String(bestEpoch),
                        "zoo.checkpoint.best_accuracy": String(bestAccuracy),
                        Self.fingerprintKey: fingerprint]
        try SafetensorsWriter.write(tensors, metadata: metadata, to: path)
    }

    /// Reads a checkpoint written by `write`; throws when it is unreadable or was made by a
    /// run with another fingerprint.
    public static func read(path: String, fingerprint: String) throws -> TrainingCheckpoint {
        let file = try SafetensorsFile(path: path)
        guard file.metadata[fingerprintKey] == fingerprint else {
            throw ZooError.invalidArgument(
                "\(path): checkpoint was made with other weights, data or settings; delete it or run without --resume")
        }
        guard let epochs = file.metadata["zoo.checkpoint.finished_epochs"].flatMap({ Int($0) }),
              let bestEpoch = file.metadata["zoo.checkpoint.best_epoch"].flatMap({ Int($0) }),
              let bestAccuracy = file.metadata["zoo.checkpoint.best_accuracy"].flatMap({ Double($0) }),
              epochs >= 1 else {
            throw ZooError.unreadableFile(path: path, reason: "checkpoint metadata is missing or malformed")
        }
        var values: [String: [Float]] = [:], momentum: [String: [Float]] = [:], best: [String: [Float]] = [:]
        for record in file.tensors {
            let data = try file.load(record.name).data
            if record.name.hasPrefix("value/") { values[String(record.name.dropFirst(6))] = data }
            else if record.name.hasPrefix("momentum/") { momentum[String(record.name.dropFirst(9))] = data }
            else if record.name.hasPrefix("best/") { best[String(record.name.dropFirst(5))] = data }
        }
        return TrainingCheckpoint(finishedEpochs: epochs, values: values, momentum: momentum,
                                  bestEpoch: bestEpoch, bestAccuracy: bestAccuracy, best: best)
    }
}
