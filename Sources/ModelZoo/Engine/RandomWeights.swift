import Foundation

/// A small deterministic generator (SplitMix64), so tests and benchmarks get the same
/// weights on every machine without depending on the platform's random number generator.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1), 53 bits.
    public mutating func nextUniform() -> Double {
        Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0)
    }

    /// Standard normal (Box-Muller).
    public mutating func nextNormal() -> Double {
        let u1 = Swift.max(nextUniform(), 1e-300)
        let u2 = nextUniform()
        return (-2 * Foundation.log(u1)).squareRoot() * Foundation.cos(2 * Double.pi * u2)
    }
}

/// Canonical weights filled with random values for tests and benchmarks: He-scaled normal
/// weights (std sqrt(2 / fan_in)), small biases, BatchNorm statistics near the identity with
/// positive variances. Not for training: just values that keep activations in range.
public enum RandomWeights {
    public static func make(_ net: ResolvedNetwork, seed: UInt64) -> [String: Tensor] {
        var generator = SplitMix64(seed: seed)
        var weights: [String: Tensor] = [:]
        for layer in net.layers {
            for spec in layer.parameters + layer.buffers {
                let count = spec.count
                var data = [Float](repeating: 0, count: count)
                switch (layer.layer.op, spec.role) {
                case (.batchNorm, .weight):
                    for i in 0..<count { data[i] = Float(1 + 0.1 * generator.nextNormal()) }
                case (.batchNorm, .runningVar):
                    for i in 0..<count { data[i] = Float(0.5 + generator.nextUniform()) }
                case (.batchNorm, _), (_, .bias):
                    for i in 0..<count { data[i] = Float(0.1 * generator.nextNormal()) }
                default:
                    let fanIn = spec.shape.dropFirst().reduce(1, *)
                    let std = (2.0 / Double(Swift.max(fanIn, 1))).squareRoot()
                    for i in 0..<count { data[i] = Float(std * generator.nextNormal()) }
                }
                weights[spec.name] = Tensor(shape: spec.shape, data: data)
            }
        }
        return weights
    }

    /// A random input batch [batch, C, H, W] with values in [-1, 1).
    public static func input(_ net: ResolvedNetwork, batch: Int, seed: UInt64) -> Tensor {
        var generator = SplitMix64(seed: seed)
        let shape = [batch, net.input.c, net.input.h, net.input.w]
        let count = shape.reduce(1, *)
        return Tensor(shape: shape, data: (0..<count).map { _ in Float(generator.nextUniform() * 2 - 1) })
    }
}
