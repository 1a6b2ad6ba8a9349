import Foundation

/// Reads every float tensor of a file once, timing it: `zoo inspect --load`, and the
/// figure the reader benchmarks compare with h5py and onnx.load.
public enum LoadTiming {
    public struct Result: Sendable {
        public let tensors: Int
        public let bytes: Int
        public let milliseconds: Double
    }

    public static func measure(_ file: WeightFile) throws -> Result {
        let start = DispatchTime.now().uptimeNanoseconds
        // Kept until the end, as a model load keeps them: peak memory then means something.
        var loaded: [Tensor] = []
        try file.forEachLoadedTensor { loaded.append($1) }
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
        return Result(tensors: loaded.count, bytes: loaded.reduce(0) { $0 + $1.count * 4 }, milliseconds: elapsed)
    }
}
