import CDNNL
import Foundation

/// A network compiled for CPU inference with oneDNN at a fixed batch size.
///
/// Compilation folds every BatchNorm that follows a convolution into the convolution's
/// weights and bias, fuses activations as post-ops, fuses a residual add into the
/// convolution that feeds it (oneDNN's `sum` post-op writes into the shortcut's buffer),
/// has each inception branch write its slice of the concat's output, reads feature maps
/// into inner products as flat [N, C*H*W] views, runs float32 3x3 stride-1 convolutions
/// by Winograd F(4x4, 3x3) where it measured faster (`ConvolutionAlgorithm`), reorders the
/// weights into the primitives' layouts once, and keeps activations in one layout from layer
/// to layer: 16-channel blocked in float32 (channels-last at batch 1 with direct
/// convolutions and in bfloat16; see `NetworkCompiler`). Reorders happen at the input,
/// wherever two layers disagree on a layout, and at the output.
///
/// OpenMP: see `EngineEnvironment`; without `OMP_WAIT_POLICY=active` at process start the
/// second thread helps little.
///
/// A `Network` owns preallocated buffers: run one `forward` at a time on it (compile one
/// network per thread for concurrent use).
/// The arithmetic a compiled network uses.
public enum Precision: String, Sendable, CaseIterable, Codable {
    /// float32 throughout.
    case fp32
    /// bfloat16 weights and activations, float32 accumulation, float32 classifier.
    case bf16
    /// Post-training quantization: s8 weights (one scale per output channel), u8/s8
    /// activations with scales from an `Int8Calibration`, s32 accumulation (AVX512-VNNI);
    /// layers without int8 kernels (LRN, softmax) and the classifier in float32; the blocks
    /// the calibration kept out of int8 (`Int8Calibration.floatLayers`) in `int8Fallback`.
    case int8
}

extension Precision {
    /// What the blocks an int8 network keeps out of int8 compute in on this processor
    /// (`Int8Calibration.floatLayers`): bf16 with AVX512-BF16, else fp32.
    public static var int8Fallback: Precision { NetworkCompiler.int8FallbackType == dnnl_bf16 ? .bf16 : .fp32 }
}

/// How float32 3x3 stride-1 convolutions are computed (bf16 and int8 always run direct).
public enum ConvolutionAlgorithm: String, Sendable, CaseIterable, Codable {
    /// Winograd F(4x4, 3x3): 2.25x fewer multiplications; logits within about 1e-6
    /// (relative) of the direct kernels'. The default.
    case winograd
    /// The direct kernels everywhere: closest to other engines' float32 rounding.
    case direct
}

public final class Network {
    public let resolved: ResolvedNetwork
    public let precision: Precision
    public let convolutions: ConvolutionAlgorithm
    public let batch: Int
    /// Worker threads every forward pass asks OpenMP for.
    public let threads: Int
    /// The shape `forward` returns: [batch, classes] for a classifier.
    public let outputShape: [Int]
    /// oneDNN's implementation per convolution and inner product (e.g. "brgconv:avx512_core"),
    /// for diagnostics and benchmarks.
    public let kernels: [(layer: String, implementation: String)]

    private let program: CompiledProgram

    public convenience init(_ net: ResolvedNetwork, weights: [String: Tensor], batch: Int, threads: Int? = nil,
                            precision: Precision = .fp32, calibration: Int8Calibration? = nil,
                            convolutions: ConvolutionAlgorithm = .winograd) throws {
        try self.init(net, weights: weights, batch: batch, threads: threads, precision: precision,
                      calibration: calibration, convolutions: convolutions, probing: false)
    }

    /// `probing`: a float32 network that also copies every activation tensor out, plain
    /// NCHW, for `forwardProbing` (what int8 calibration measures).
    init(_ net: ResolvedNetwork, weights: [String: Tensor], batch: Int, threads: Int? = nil,
         precision: Precision = .fp32, calibration: Int8Calibration? = nil,
         convolutions: ConvolutionAlgorithm = .winograd, probing: Bool) throws {
        if precision == .int8 && calibration == nil {
            throw ZooError.invalidArgument("--precision int8 needs activation scales: calibrate with --calibrate DIR")
        }
        guard batch >= 1, batch <= 65536 else {
            throw ZooError.invalidArgument("batch size must be between 1 and 65536, got \(batch)")
        }
        if let threads, threads < 1 {
            throw ZooError.invalidArgument("thread count must be at least 1, got \(threads)")
        }
        try Self.checkMemory(net, batch: batch)
        self.resolved = net
        self.precision = precision
        self.convolutions = convolutions
        self.batch = batch
        self.threads = threads ?? EngineEnvironment.defaultThreads()
        OpenMPRuntime.setThreads(self.threads)
        let compiler = try NetworkCompiler(net: net, weights: weights, batch: batch, precision: precision,
                                           calibration: precision == .int8 ? calibration : nil,
                                           convolutions: convolutions, probing: probing)
        self.program = try compiler.compile()
        self.outputShape = program.outputShape
        self.kernels = compiler.kernels
    }

    /// Refuses a batch whose activations cannot fit before anything is allocated: at least
    /// the largest layer's input and output are alive at once, and a VGG16 batch of 4096
    /// would want hundreds of GiB.
    static func checkMemory(_ net: ResolvedNetwork, batch: Int,
                            available: UInt64 = ProcessInfo.processInfo.physicalMemory) throws {
        let largest = net.layers.map { layer in
            layer.output.count + layer.inputShapes.reduce(0) { $0 + $1.count }
        }.max() ?? 0
        let (values, overflow) = (largest + net.input.count).multipliedReportingOverflow(by: batch)
        let needed = overflow ? UInt64.max : UInt64(values) * 4
        guard needed <= available / 2 else {
            throw ZooError.invalidParameter(name: "batch", message: "batch \(batch) of \(net.architecture.id) needs at least \(gib(needed)) "
                + "for activations; this machine has \(gib(available)): use a smaller {batch}")
        }
    }

    /// "1.5 GiB": memory sizes in the engines' refusals.
    static func gib(_ bytes: UInt64) -> String { String(format: "%.1f GiB", Double(bytes) / 1_073_741_824) }

    /// Runs the network on `input` ([batch, C, H, W], NCHW) and returns the logits.
    public func forward(_ input: Tensor) throws -> Tensor {
        let c = resolved.input
        let expected = [batch, c.c, c.h, c.w]
        guard input.shape == expected, input.data.count == batch * c.count else {
            throw ZooError.engineFailure(
                layer: Layer.networkInput,
                reason: "\(resolved.architecture.id) compiled for input \(expected) (batch, channels, height, width), got \(input.shape)")
        }
        OpenMPRuntime.setThreads(threads)
        return try program.run(input.data)
    }

    /// Runs the network and hands every probed activation tensor (plain NCHW, float32) to
    /// `body` by the name of the layer that wrote it; returns the logits, as `forward` does.
    @discardableResult
    func forwardProbing(_ input: Tensor, _ body: (String, UnsafeBufferPointer<Float>) throws -> Void) throws -> Tensor {
        let output = try forward(input)
        for probe in program.probes {
            try body(probe.name, UnsafeBufferPointer(start: probe.buffer, count: probe.count))
        }
        return output
    }

    /// Bytes of the one buffer all activations share (tensors whose lifetimes do not overlap
    /// reuse the same bytes).
    public var activationMemoryBytes: Int { program.activationBytes }

    /// What each compiled step runs, in order ("conv1: convolution", "input: reorder"...):
    /// shows which layers were fused away and where layouts change.
    public var executionPlan: [String] { program.plan }

    /// Times `iterations` forward passes on random input after `warmup` untimed ones.
    public func benchmark(iterations: Int, warmup: Int) throws -> BenchmarkResult {
        guard iterations >= 1, warmup >= 0 else {
            throw ZooError.invalidArgument("benchmark needs at least one iteration, got \(iterations)")
        }
        let c = resolved.input
        var generator = SplitMix64(seed: 1)
        let input = Tensor(shape: [batch, c.c, c.h, c.w],
                           data: (0..<(batch * c.count)).map { _ in Float(generator.nextUniform() * 2 - 1) })
        for _ in 0..<warmup { _ = try forward(input) }
        var times: [Double] = []
        for _ in 0..<iterations {
            let start = DispatchTime.now().uptimeNanoseconds
            _ = try forward(input)
            times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
        }
        let mean = times.reduce(0, +) / Double(times.count)
        let sorted = times.sorted()
        return BenchmarkResult(batch: batch, threads: threads, iterations: iterations,
                               msPerBatch: mean, minMsPerBatch: sorted[0], medianMsPerBatch: sorted[sorted.count / 2],
                               macsPerImage: resolved.totalMACs)
    }

    /// Looks up one parameter of a layer and checks its shape against the spec.
    static func parameter(_ weights: [String: Tensor], _ layer: ResolvedLayer, _ role: ParameterRole) throws -> Tensor {
        guard let spec = (layer.parameters + layer.buffers).first(where: { $0.role == role }) else {
            throw ZooError.engineFailure(layer: layer.layer.name, reason: "has no \(role.rawValue) parameter")
        }
        guard let tensor = weights[spec.name] else {
            throw ZooError.engineFailure(layer: layer.layer.name, reason: "weight '\(spec.name)' is missing")
        }
        guard tensor.shape == spec.shape else {
            throw ZooError.engineFailure(
                layer: layer.layer.name,
                reason: "weight '\(spec.name)' has shape \(tensor.shape), expected \(spec.shape)")
        }
        return tensor
    }

    /// A classifier's [N, C, 1, 1] output is returned as [N, C].
    static func presentOutput(_ t: Tensor) -> Tensor {
        if t.shape.count == 4, t.shape[2] == 1, t.shape[3] == 1 {
            return Tensor(shape: [t.shape[0], t.shape[1]], data: t.data)
        }
        return t
    }
}

public struct BenchmarkResult: Sendable, CustomStringConvertible {
    public let batch: Int
    public let threads: Int
    public let iterations: Int
    /// Mean wall time of one forward pass of the whole batch.
    public let msPerBatch: Double
    public let minMsPerBatch: Double
    public let medianMsPerBatch: Double
    public let macsPerImage: Int

    public var msPerImage: Double { msPerBatch / Double(batch) }
    public var imagesPerSecond: Double { 1000 * Double(batch) / msPerBatch }
    /// Achieved arithmetic rate, counting a multiply-accumulate as two operations.
    public var gflops: Double { 2 * Double(macsPerImage) * Double(batch) / (medianMsPerBatch * 1e6) }

    public var description: String {
        String(format: "batch %d, %d threads: %.2f ms/batch (median %.2f, min %.2f), %.1f images/s, %.0f GFLOP/s",
               batch, threads, msPerBatch, medianMsPerBatch, minMsPerBatch, imagesPerSecond, gflops)
    }
}

// MARK: - Compiled form

/// The executable result of compilation: a flat list of steps over preallocated buffers.
final class CompiledProgram {
    enum Step {
        case primitive(dnnl_primitive_t, [dnnl_exec_arg_t], layer: String)
        /// Work oneDNN cannot express, run in Swift on plain NCHW buffers.
        case host(layer: String, input: dnnl_memory_t, output: dnnl_memory_t,
                  run: (UnsafePointer<Float>, UnsafeMutablePointer<Float>) -> Void)
    }

    private var resources: DNNLResources?
    let engine: dnnl_engine_t
    let stream: dnnl_stream_t
    let steps: [Step]
    /// Storage of every activation buffer; freed after the oneDNN objects that point into it.
    private var arena: ActivationArena?
    let inputBuffer: UnsafeMutablePointer<Float>
    let inputCount: Int
    let outputBuffer: UnsafeMutablePointer<Float>
    let outputShape: [Int]
    /// Copies of activation tensors a probing network makes (see `Network.forwardProbing`).
    var probes: [(name: String, buffer: UnsafeMutablePointer<Float>, count: Int)] = []

    init(resources: DNNLResources, engine: dnnl_engine_t, stream: dnnl_stream_t, steps: [Step],
         arena: ActivationArena, inputBuffer: UnsafeMutablePointer<Float>, inputCount: Int,
         outputBuffer: UnsafeMutablePointer<Float>, outputShape: [Int]) {
        self.resources = resources; self.engine = engine; self.stream = stream; self.steps = steps
        self.arena = arena
        self.inputBuffer = inputBuffer; self.inputCount = inputCount
        self.outputBuffer = outputBuffer; self.outputShape = outputShape
    }

    var activationBytes: Int { arena?.byteCount ?? 0 }

    var plan: [String] {
        steps.map { step in
            switch step {
            case let .primitive(primitive, _, layer):
                var pd: const_dnnl_primitive_desc_t?
                var kind = dnnl_undefined_primitive
                if dnnl_primitive_get_primitive_desc(primitive, &pd) == dnnl_success, let pd {
                    _ = dnnl_primitive_desc_query(pd, dnnl_query_primitive_kind, 0, &kind)
                }
                return "\(layer): \(Self.kindName(kind))"
            case let .host(layer, _, _, _):
                return "\(layer): swift"
            }
        }
    }

    private static func kindName(_ kind: dnnl_primitive_kind_t) -> String {
        switch kind {
        case dnnl_reorder: return "reorder"
        case dnnl_concat: return "concat"
        case dnnl_sum: return "sum"
        case dnnl_convolution: return "convolution"
        case dnnl_eltwise: return "eltwise"
        case dnnl_softmax: return "softmax"
        case dnnl_pooling, dnnl_pooling_v2: return "pooling"
        case dnnl_lrn: return "lrn"
        case dnnl_batch_normalization: return "batch_norm"
        case dnnl_inner_product: return "inner_product"
        case dnnl_binary: return "binary"
        default: return "primitive \(kind.rawValue)"
        }
    }

    func run(_ input: [Float]) throws -> Tensor {
        input.withUnsafeBufferPointer { source in
            if let base = source.baseAddress { inputBuffer.update(from: base, count: inputCount) }
        }
        for step in steps {
            switch step {
            case let .primitive(primitive, args, layer):
                try DNNL.check(dnnl_primitive_execute(primitive, stream, Int32(args.count), args),
                               layer: layer, "execute")
            case let .host(layer, inMemory, outMemory, run):
                try DNNL.check(dnnl_stream_wait(stream), layer: layer, "stream wait")
                var source: UnsafeMutableRawPointer?
                var destination: UnsafeMutableRawPointer?
                try DNNL.check(dnnl_memory_get_data_handle(inMemory, &source), layer: layer, "data handle")
                try DNNL.check(dnnl_memory_get_data_handle(outMemory, &destination), layer: layer, "data handle")
                guard let source, let destination else {
                    throw ZooError.engineFailure(layer: layer, reason: "buffer without storage")
                }
                run(UnsafePointer(source.assumingMemoryBound(to: Float.self)), destination.assumingMemoryBound(to: Float.self))
            }
        }
        try DNNL.check(dnnl_stream_wait(stream), layer: "output", "stream wait")
        let count = outputShape.reduce(1, *)
        return Tensor(shape: outputShape, data: Array(UnsafeBufferPointer(start: outputBuffer, count: count)))
    }

    deinit {
        // Primitives and memories go first, then the stream and engine they were made on.
        resources = nil
        arena = nil
        dnnl_stream_destroy(stream)
        dnnl_engine_destroy(engine)
    }
}

/// One aligned allocation holding every activation of a compiled network.
final class ActivationArena {
    let base: UnsafeMutableRawPointer
    let byteCount: Int

    init(byteCount: Int, alignment: Int) {
        self.byteCount = byteCount
        base = UnsafeMutableRawPointer.allocate(byteCount: byteCount, alignment: alignment)
    }

    deinit { base.deallocate() }
}
