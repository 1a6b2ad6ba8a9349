import CDNNL
import Foundation

/// A learnable tensor with its gradient and SGD momentum buffer. The three buffers are
/// owned here rather than in Swift arrays because oneDNN primitives read and write them
/// in place across calls (an array's storage may move).
final class TrainableParameter {
    let name: String
    let shape: [Int]
    let value: UnsafeMutableBufferPointer<Float>
    let gradient: UnsafeMutableBufferPointer<Float>
    let momentum: UnsafeMutableBufferPointer<Float>
    /// Weight decay applies to conv and linear weights, not to biases or BatchNorm's scale.
    let decays: Bool

    init(name: String, shape: [Int], value: [Float], decays: Bool) {
        self.name = name; self.shape = shape; self.decays = decays
        let count = value.count
        self.value = .allocate(capacity: max(count, 1))
        gradient = .allocate(capacity: max(count, 1))
        momentum = .allocate(capacity: max(count, 1))
        for k in 0..<count { self.value[k] = value[k] }
        gradient.initialize(repeating: 0)
        momentum.initialize(repeating: 0)
    }

    var count: Int { shape.reduce(1, *) }
    var values: [Float] { Array(value.prefix(count)) }
    var momenta: [Float] { Array(momentum.prefix(count)) }

    func set(values: [Float], momenta: [Float]) {
        for k in 0..<count { value[k] = values[k]; momentum[k] = momenta[k] }
    }

    deinit {
        value.deallocate(); gradient.deallocate(); momentum.deallocate()
    }
}

/// A BatchNorm running statistic (mean or variance) in storage shared by the training
/// program that updates it (live statistics) and the programs that read it (frozen
/// statistics, evaluation), so an evaluation pass sees the values training left.
final class RunningStatistic {
    let name: String
    let shape: [Int]
    let value: UnsafeMutableBufferPointer<Float>

    init(name: String, shape: [Int], value: [Float]) {
        self.name = name; self.shape = shape
        self.value = .allocate(capacity: max(value.count, 1))
        self.value.initialize(repeating: 0)
        for k in value.indices { self.value[k] = value[k] }
    }

    var count: Int { shape.reduce(1, *) }
    var values: [Float] { Array(value.prefix(count)) }
    func set(_ values: [Float]) { for k in 0..<count { value[k] = values[k] } }

    deinit { value.deallocate() }
}

/// How the trained BatchNorm layers normalise while training.
public enum BatchNormStatistics: String, Sendable, Equatable, CaseIterable {
    /// With the pretrained running statistics, unchanged (torch's `model.eval()`).
    case frozen
    /// With each batch's mean and biased variance, the running statistics updated from
    /// them with momentum 0.1 (torch's `model.train()`).
    case live
}

/// A float32 buffer of `count` values, freed with the program.
private final class Buffer {
    let pointer: UnsafeMutablePointer<Float>
    let count: Int
    init(count: Int) {
        self.count = count
        pointer = .allocate(capacity: max(count, 1))
        pointer.initialize(repeating: 0, count: max(count, 1))
    }
    deinit { pointer.deallocate() }
}

/// The trained tail of a network (the layers after a transfer cut) compiled for one batch
/// size as oneDNN forward-training and backward primitives on plain NCHW float32 buffers:
/// convolution backward data and weights, BatchNorm backward with its running statistics
/// frozen or with live batch statistics, max pooling through its workspace, average pooling, ReLU/tanh from their output,
/// LRN, inner product. Residual adds copy the gradient to both operands and concats split
/// it; a value read by several layers sums their gradients.
final class TrainingProgram {
    private enum Step {
        case primitive(dnnl_primitive_t, [dnnl_exec_arg_t], layer: String)
        case host(() -> Void)
    }

    let batch: Int
    let inputShape: Shape3
    private let engine: dnnl_engine_t
    private let stream: dnnl_stream_t
    private let resources = DNNLResources()
    private var buffers: [Buffer] = []
    private var forwardSteps: [Step] = []
    private var backwardSteps: [Step] = []
    private var data: [String: Buffer] = [:]
    private var shapes: [String: Shape3] = [:]
    private var diff: [String: Buffer] = [:]
    /// Whether a value's gradient is wanted: it depends on some trained parameter.
    private var needsDiff: Set<String> = []
    private let inputName: String
    private let outputName: String
    /// One buffer a reader writes its gradient contribution into before it is summed in.
    private var scratch: Buffer
    /// Values whose gradient already has a contribution, while the backward steps are built.
    private var contributed: Set<String> = []
    /// Bytes of the program's buffers and oneDNN-owned memories, and the most they may take
    /// (see `account`).
    private(set) var allocatedBytes: UInt64 = 0
    private let memoryBudget: UInt64
    /// The most a trainer's programs take together unless told otherwise: 3/4 of the machine.
    static var defaultMemoryBudget: UInt64 { ProcessInfo.processInfo.physicalMemory / 4 * 3 }

    /// The network input of the tail (`batch` rows of `inputShape`).
    var input: UnsafeMutablePointer<Float> { plainInput.pointer }
    private let plainInput: Buffer
    /// Whether 4-d values are held in nChw16c (see `act4`).
    private(set) var blocked = false
    /// Values held as 4-d feature maps (in `act4`'s layout).
    private var fourD: Set<String> = []
    /// Logits after `forward`, `batch` rows.
    var output: UnsafeMutablePointer<Float> { data[outputName]!.pointer }
    /// Where the caller writes d(loss)/d(logits) before `backward`.
    var outputGradient: UnsafeMutablePointer<Float> { diff[outputName]!.pointer }

    /// The running statistics the BatchNorm steps point into, kept alive with the program.
    let statistics: [String: RunningStatistic]
    /// Whether BatchNorm normalises with batch statistics and updates the running ones.
    let live: Bool
    /// torch.nn.BatchNorm2d's default: running = (1 - m) * running + m * batch statistic.
    static let statisticsMomentum: Float = 0.1

    /// `frozen`: BatchNorm running statistics by canonical name, copied into storage of
    /// the program's own (tests and one-off programs).
    convenience init(layers: [ResolvedLayer], inputName: String, inputShape: Shape3, parameters: [String: TrainableParameter],
                     frozen: [String: Tensor], batch: Int, live: Bool = false,
                     memoryBudget: UInt64 = TrainingProgram.defaultMemoryBudget) throws {
        let statistics = frozen.mapValues { RunningStatistic(name: "", shape: $0.shape, value: $0.data) }
        try self.init(layers: layers, inputName: inputName, inputShape: inputShape, parameters: parameters,
                      statistics: statistics, batch: batch, live: live, memoryBudget: memoryBudget)
    }

    /// `layers`: the tail in execution order, reading `inputName` (shape `inputShape`) and
    /// values they produce; `parameters`: the trained tensors by canonical name;
    /// `statistics`: BatchNorm running statistics by canonical name, read (frozen) or read
    /// and updated on every forward pass (`live`, which normalises with batch statistics);
    /// `backward: false` compiles the forward pass alone (evaluation: about half the memory);
    /// `memoryBudget`: bytes this program may allocate (see `account`).
    init(layers: [ResolvedLayer], inputName: String, inputShape: Shape3, parameters: [String: TrainableParameter],
         statistics: [String: RunningStatistic], batch: Int, live: Bool = false, backward: Bool = true,
         memoryBudget: UInt64 = TrainingProgram.defaultMemoryBudget) throws {
        guard let last = layers.last else { throw ZooError.engineFailure(layer: "tail", reason: "no layers to train") }
        self.batch = batch
        self.memoryBudget = memoryBudget
        self.live = live
        self.statistics = statistics
        self.inputShape = inputShape
        self.inputName = inputName
        self.outputName = last.layer.name
        (engine, stream) = try DNNL.cpuEngineAndStream()
        let largest = max(inputShape.count, layers.map { $0.output.count }.max() ?? 1)
        scratch = Buffer(count: batch * largest)

        // 4-d values: the outputs of layers that make feature maps, and the tail's input
        // when such a layer reads it.
        var fourD: [Shape3] = []
        var fourDNames: Set<String> = []
        for resolved in layers {
            switch resolved.layer.op {
            case .conv, .batchNorm, .maxPool, .avgPool, .adaptiveAvgPool, .lrn, .concat, .add:
                fourD.append(resolved.output)
                fourDNames.insert(resolved.layer.name)
                if resolved.layer.inputs.contains(inputName) { fourDNames.insert(inputName); fourD.append(inputShape) }
            case .dropout:
                if fourDNames.contains(resolved.layer.inputs[0]) { fourDNames.insert(resolved.layer.name) }
            default: break
            }
        }
        blocked = !fourD.isEmpty && fourD.allSatisfy { $0.c % 16 == 0 }
        self.fourD = fourDNames
        plainInput = Buffer(count: batch * inputShape.count)
        try account(UInt64(scratch.count + plainInput.count) * 4)
        shapes[inputName] = inputShape
        if blocked && fourDNames.contains(inputName) {
            // The cache holds plain NCHW features: reorder them in once per step.
            let placed = try newBuffer(batch * inputShape.count)
            let plainMD = try nchw(inputShape, layer: inputName)
            let blockedMD = try act4(inputShape, layer: inputName)
            forwardSteps.append(try reorder(try memory(plainMD, plainInput.pointer, layer: inputName), plainMD,
                                            to: try memory(blockedMD, placed.pointer, layer: inputName), blockedMD,
                                            layer: inputName))
            data[inputName] = placed
        } else {
            data[inputName] = plainInput
        }
        // A value needs a gradient when a trained parameter lies on a path to it (none
        // without a backward pass).
        if backward {
            for resolved in layers where !resolved.parameters.isEmpty || resolved.layer.inputs.contains(where: needsDiff.contains) {
                needsDiff.insert(resolved.layer.name)
            }
        }
        for resolved in layers { try compileForward(resolved, parameters: parameters, statistics: statistics) }
        // Backward is built in reverse so that each value's first contributor (in backward
        // order) writes its gradient and later ones add to it.
        if backward {
            for resolved in layers.reversed() { backwardSteps += try compileBackward(resolved, parameters: parameters) }
        }
    }

    deinit {
        dnnl_stream_destroy(stream)
        dnnl_engine_destroy(engine)
    }

    // MARK: - Running

    func forward() throws { try run(forwardSteps) }

    /// Fills every parameter's gradient from `outputGradient` (overwriting, not adding).
    func backward() throws { try run(backwardSteps) }

    private func run(_ steps: [Step]) throws {
        for step in steps {
            switch step {
            case let .primitive(primitive, args, layer):
                try DNNL.check(dnnl_primitive_execute(primitive, stream, Int32(args.count), args), layer: layer, "execute")
            case let .host(body):
                try DNNL.check(dnnl_stream_wait(stream), layer: "stream", "wait")
                body()
            }
        }
        try DNNL.check(dnnl_stream_wait(stream), layer: "stream", "wait")
    }

    // MARK: - Helpers

    private func newBuffer(_ count: Int) throws -> Buffer {
        try account(UInt64(count) * 4)
        let buffer = Buffer(count: count)
        buffers.append(buffer)
        return buffer
    }

    /// Every activation and gradient of the trained tail stays allocated for the backward
    /// pass, so memory grows with the batch and the number of trained blocks (all of
    /// ResNet50 at batch 8 takes about 11.7 GB with its evaluation programs): a program over
    /// its budget is refused while it compiles, before any step runs, instead of allocating
    /// until the system kills the process.
    private func account(_ bytes: UInt64) throws {
        allocatedBytes += bytes
        guard allocatedBytes <= memoryBudget else {
            throw ZooError.invalidParameter(
                name: "batch", message: "training these layers needs more memory for activations and gradients than "
                    + "3/4 of this machine's \(Network.gib(ProcessInfo.processInfo.physicalMemory)) (\(Network.gib(memoryBudget)) "
                    + "left for the tail compiled for \(batch) rows): use a smaller {batch} or train fewer blocks")
        }
    }

    private func memory(_ md: dnnl_memory_desc_t, _ pointer: UnsafeMutableRawPointer?, layer: String) throws -> dnnl_memory_t {
        var md = md
        if pointer == nil { try account(UInt64(dnnl_memory_desc_get_size(&md))) }
        var memory: dnnl_memory_t?
        try DNNL.check(dnnl_memory_create(&memory, &md, engine, pointer ?? DNNL.allocate), layer: layer, "memory creation")
        guard let memory else { throw ZooError.engineFailure(layer: layer, reason: "memory creation returned nothing") }
        resources.keep(memory: memory)
        return memory
    }

    private func describe<Descriptor>(_ descriptor: inout Descriptor, hint: dnnl_primitive_desc_t? = nil,
                                      layer: String, _ what: String) throws -> dnnl_primitive_desc_t {
        try resources.describe(&descriptor, engine: engine, hint: hint, layer: layer, what)
    }

    private func primitive(_ pd: dnnl_primitive_desc_t, layer: String) throws -> dnnl_primitive_t {
        try resources.primitive(pd, layer: layer)
    }

    /// A convolution's memory descriptors, the same for its forward and backward
    /// primitives: the plain layouts its buffers are kept in, and `any` layouts for oneDNN
    /// to choose from.
    private struct ConvolutionLayouts {
        let plainSrc, plainWeights, plainDst: dnnl_memory_desc_t
        let src, weights, bias, dst: dnnl_memory_desc_t
        let strides, padL, padR: [Int64]
    }

    private func convolutionLayouts(_ spec: ConvSpec, input inShape: Shape3, output: Shape3,
                                    layer name: String) throws -> ConvolutionLayouts {
        let g = spec.groups
        let weightDims = g > 1
            ? [g, spec.outChannels / g, inShape.c / g, spec.kernel.h, spec.kernel.w]
            : [spec.outChannels, inShape.c, spec.kernel.h, spec.kernel.w]
        return ConvolutionLayouts(
            plainSrc: try act4(inShape, layer: name),
            plainWeights: try DNNL.desc(weightDims, g > 1 ? dnnl_goihw : dnnl_oihw, layer: name),
            plainDst: try act4(output, layer: name),
            src: try DNNL.desc([batch, inShape.c, inShape.h, inShape.w], dnnl_format_tag_any, layer: name),
            weights: try DNNL.desc(weightDims, dnnl_format_tag_any, layer: name),
            bias: try DNNL.desc([spec.outChannels], dnnl_a, layer: name),
            dst: try DNNL.desc([batch, output.c, output.h, output.w], dnnl_format_tag_any, layer: name),
            strides: [Int64(spec.stride.h), Int64(spec.stride.w)],
            padL: [Int64(spec.padding.top), Int64(spec.padding.left)],
            padR: [Int64(spec.padding.bottom), Int64(spec.padding.right)])
    }

    /// A forward-training step from one buffer to another (LRN, pooling), with the memories
    /// and the workspace its backward step reads kept under the layer's name.
    private func appendForward(_ pd: dnnl_primitive_desc_t, layer name: String,
                               source: (md: dnnl_memory_desc_t, buffer: Buffer),
                               destination: (md: dnnl_memory_desc_t, buffer: Buffer)) throws {
        var keep = ["src": try memory(source.md, source.buffer.pointer, layer: name),
                    "dst": try memory(destination.md, destination.buffer.pointer, layer: name)]
        var args = [arg(DNNL.Arg.src, keep["src"]!), arg(DNNL.Arg.dst, keep["dst"]!)]
        if let ws = try queried(pd, dnnl_query_workspace_md, layer: name) {
            keep["workspace"] = ws
            args.append(arg(DNNL.Arg.workspace, ws))
        }
        forwardSteps.append(.primitive(try primitive(pd, layer: name), args, layer: name))
        saved[name] = keep
        forwardPD[name] = pd
    }

    /// A memory for the primitive's scratch needs (workspace), owned by oneDNN.
    private func queried(_ pd: dnnl_primitive_desc_t, _ what: dnnl_query_t, layer: String) throws -> dnnl_memory_t? {
        guard let md = DNNL.queryMD(pd, what) else { return nil }
        var copy = md
        guard dnnl_memory_desc_get_size(&copy) > 0 else { return nil }
        return try memory(md, nil, layer: layer)
    }

    private func nchw(_ shape: Shape3, layer: String) throws -> dnnl_memory_desc_t {
        try DNNL.desc([batch, shape.c, shape.h, shape.w], dnnl_nchw, layer: layer)
    }

    /// The layout every 4-d activation and its gradient is kept in between layers:
    /// nChw16c when every such tensor's channels fill whole blocks of 16 (then convolution,
    /// BatchNorm, pooling and LRN read and write it without reorders, and concat and add,
    /// which work per image on contiguous channel ranges or elementwise, are unaffected);
    /// plain NCHW otherwise.
    private func act4(_ shape: Shape3, layer: String) throws -> dnnl_memory_desc_t {
        try DNNL.desc([batch, shape.c, shape.h, shape.w], blocked ? dnnl_nChw16c : dnnl_nchw, layer: layer)
    }

    private func source(_ name: String, for layer: String) throws -> (Buffer, Shape3) {
        guard let buffer = data[name], let shape = shapes[name] else {
            throw ZooError.engineFailure(layer: layer, reason: "reads '\(name)', which the trained tail does not compute before it")
        }
        return (buffer, shape)
    }

    private func arg(_ tag: Int32, _ memory: dnnl_memory_t) -> dnnl_exec_arg_t { dnnl_exec_arg_t(arg: tag, memory: memory) }

    private func reorder(_ from: dnnl_memory_t, _ fromMD: dnnl_memory_desc_t, to: dnnl_memory_t, _ toMD: dnnl_memory_desc_t,
                         layer: String) throws -> Step {
        var source = fromMD, target = toMD
        var pd: dnnl_primitive_desc_t?
        try DNNL.check(dnnl_reorder_primitive_desc_create(&pd, &source, engine, &target, engine, nil),
                       layer: layer, "reorder descriptor")
        guard let pd else { throw ZooError.engineFailure(layer: layer, reason: "no reorder descriptor") }
        resources.keep(descriptor: pd)
        return .primitive(try primitive(pd, layer: layer), [arg(DNNL.Arg.src, from), arg(DNNL.Arg.dst, to)], layer: layer)
    }

    /// Buffers stay in plain layouts between layers (concat, add, the cache and the SGD step
    /// read them as such); a primitive that is faster in a blocked layout gets its input
    /// reordered in (`input`) and its output reordered out (`output`). The reorders cost a
    /// pass over the tensor; the blocked convolution and BatchNorm kernels save far more.
    private func input(_ plain: dnnl_memory_t, _ plainMD: dnnl_memory_desc_t, as md: dnnl_memory_desc_t,
                       into steps: inout [Step], layer: String) throws -> dnnl_memory_t {
        if DNNL.equal(plainMD, md) { return plain }
        let placed = try memory(md, nil, layer: layer)
        steps.append(try reorder(plain, plainMD, to: placed, md, layer: layer))
        return placed
    }

    /// The memory a primitive writes in layout `md`, and the reorder (if any) that copies it
    /// to the plain memory afterwards.
    private func output(_ plain: dnnl_memory_t, _ plainMD: dnnl_memory_desc_t, as md: dnnl_memory_desc_t,
                        layer: String) throws -> (dnnl_memory_t, Step?) {
        if DNNL.equal(plainMD, md) { return (plain, nil) }
        let placed = try memory(md, nil, layer: layer)
        return (placed, try reorder(placed, md, to: plain, plainMD, layer: layer))
    }

    /// nChw16c where the channels fill whole blocks (the layout oneDNN's AVX-512 BatchNorm
    /// kernels run in), otherwise the plain layout.
    private func blockedBatchNormMD(_ shape: Shape3, layer: String) throws -> dnnl_memory_desc_t {
        shape.c % 16 == 0 ? try DNNL.desc([batch, shape.c, shape.h, shape.w], dnnl_nChw16c, layer: layer)
                          : try act4(shape, layer: layer)
    }

    // MARK: - Forward

    /// Per layer, what backward needs: the memories of the forward primitive.
    private var saved: [String: [String: dnnl_memory_t]] = [:]
    private var forwardPD: [String: dnnl_primitive_desc_t] = [:]

    private func compileForward(_ resolved: ResolvedLayer, parameters: [String: TrainableParameter],
                                statistics: [String: RunningStatistic]) throws {
        let layer = resolved.layer
        let name = layer.name
        let output = resolved.output
        func param(_ role: ParameterRole) throws -> TrainableParameter? {
            guard let spec = resolved.parameters.first(where: { $0.role == role }) else { return nil }
            guard let p = parameters[spec.name] else {
                throw ZooError.engineFailure(layer: name, reason: "no trained tensor '\(spec.name)'")
            }
            return p
        }
        var produced: Buffer? = nil
        switch layer.op {
        case .conv(let spec):
            let (x, inShape) = try source(layer.inputs[0], for: name)
            guard let weight = try param(.weight) else { throw ZooError.engineFailure(layer: name, reason: "has no weight") }
            let bias = try param(.bias)
            let c = try convolutionLayouts(spec, input: inShape, output: output, layer: name)
            let (plainSrc, plainWeights, plainDst) = (c.plainSrc, c.plainWeights, c.plainDst)
            var (srcMD, weightMD, biasMD, dstMD) = (c.src, c.weights, c.bias, c.dst)
            let (strides, padL, padR) = (c.strides, c.padL, c.padR)
            var d = dnnl_convolution_desc_t()
            try DNNL.check(withUnsafePointer(to: &biasMD) { biasPointer in
                dnnl_convolution_forward_desc_init(&d, dnnl_forward_training, dnnl_convolution_direct, &srcMD, &weightMD,
                                                   bias == nil ? nil : biasPointer, &dstMD, strides, padL, padR)
            }, layer: name, "convolution descriptor")
            let pd = try describe(&d, layer: name, "conv forward")
            guard let chosenSrc = DNNL.queryMD(pd, dnnl_query_src_md), let chosenWeights = DNNL.queryMD(pd, dnnl_query_weights_md),
                  let chosenDst = DNNL.queryMD(pd, dnnl_query_dst_md) else {
                throw ZooError.engineFailure(layer: name, reason: "convolution did not report its layouts")
            }
            let y = try newBuffer(batch * output.count)
            // Weights change every step, so their blocked copy is remade every forward pass.
            let mSrc = try input(try memory(plainSrc, x.pointer, layer: name), plainSrc, as: chosenSrc,
                                 into: &forwardSteps, layer: name)
            let mW = try input(try memory(plainWeights, weight.value.baseAddress, layer: name), plainWeights,
                               as: chosenWeights, into: &forwardSteps, layer: name)
            let (mDst, after) = try self.output(try memory(plainDst, y.pointer, layer: name), plainDst, as: chosenDst, layer: name)
            var args = [arg(DNNL.Arg.src, mSrc), arg(DNNL.Arg.weights, mW), arg(DNNL.Arg.dst, mDst)]
            var keep = ["src": mSrc, "weights": mW]
            if let bias {
                let mB = try memory(biasMD, bias.value.baseAddress, layer: name)
                args.append(arg(DNNL.Arg.bias, mB))
                keep["bias"] = mB
            }
            forwardSteps.append(.primitive(try primitive(pd, layer: name), args, layer: name))
            if let after { forwardSteps.append(after) }
            convLayouts[name] = (chosenSrc, chosenWeights)
            saved[name] = keep
            forwardPD[name] = pd
            produced = y
        case .batchNorm(let epsilon):
            let (x, shape) = try source(layer.inputs[0], for: name)
            guard let scale = try param(.weight), let shift = try param(.bias),
                  let mean = resolved.buffers.first(where: { $0.role == .runningMean }).flatMap({ statistics[$0.name] }),
                  let variance = resolved.buffers.first(where: { $0.role == .runningVar }).flatMap({ statistics[$0.name] }),
                  mean.count == shape.c, variance.count == shape.c else {
                throw ZooError.engineFailure(layer: name, reason: "BatchNorm parameters or statistics are missing")
            }
            let plain = try act4(shape, layer: name)
            var md = try blockedBatchNormMD(shape, layer: name)
            // Live: oneDNN computes the batch mean and biased variance and writes them out
            // (no use_global_stats); frozen: it reads the running ones.
            var flags = dnnl_use_scale.rawValue | dnnl_use_shift.rawValue
            if !live { flags |= dnnl_use_global_stats.rawValue }
            // A following ReLU runs inside the BatchNorm (its mask kept in the workspace):
            // one pass over the tensor instead of two, each way.
            if layer.activation == .relu { flags |= dnnl_fuse_norm_relu.rawValue }
            var d = dnnl_batch_normalization_desc_t()
            try DNNL.check(dnnl_batch_normalization_forward_desc_init(&d, dnnl_forward_training, &md, Float(epsilon),
                                                                      UInt32(flags)), layer: name, "BatchNorm descriptor")
            let pd = try describe(&d, layer: name, "BatchNorm forward")
            let vectorMD = try DNNL.desc([shape.c], dnnl_a, layer: name)
            // Frozen: the shared running statistics themselves; live: the batch's, which
            // backward needs as they were in this forward pass.
            let meanPointer = try live ? newBuffer(shape.c).pointer : mean.value.baseAddress!
            let varPointer = try live ? newBuffer(shape.c).pointer : variance.value.baseAddress!
            let y = try newBuffer(batch * output.count)
            let mSrc = try input(try memory(plain, x.pointer, layer: name), plain, as: md, into: &forwardSteps, layer: name)
            let (mDst, after) = try self.output(try memory(plain, y.pointer, layer: name), plain, as: md, layer: name)
            var keep = [
                "src": mSrc,
                "mean": try memory(vectorMD, meanPointer, layer: name),
                "variance": try memory(vectorMD, varPointer, layer: name),
                "scale": try memory(vectorMD, scale.value.baseAddress, layer: name),
                "shift": try memory(vectorMD, shift.value.baseAddress, layer: name),
            ]
            var args = [
                arg(DNNL.Arg.src, mSrc), arg(DNNL.Arg.mean, keep["mean"]!), arg(DNNL.Arg.variance, keep["variance"]!),
                arg(DNNL.Arg.scale, keep["scale"]!), arg(DNNL.Arg.shift, keep["shift"]!), arg(DNNL.Arg.dst, mDst),
            ]
            if let ws = try queried(pd, dnnl_query_workspace_md, layer: name) {
                keep["workspace"] = ws
                args.append(arg(DNNL.Arg.workspace, ws))
            }
            forwardSteps.append(.primitive(try primitive(pd, layer: name), args, layer: name))
            if let after { forwardSteps.append(after) }
            if live {
                // As torch updates them: the mean directly, the variance from the unbiased
                // batch variance (n / (n - 1) times oneDNN's biased one), n values per channel.
                let n = batch * shape.h * shape.w
                let unbias: Float = n > 1 ? Float(n) / Float(n - 1) : 1
                let m = Self.statisticsMomentum, channels = shape.c
                let runningMean = mean.value.baseAddress!, runningVar = variance.value.baseAddress!
                forwardSteps.append(.host {
                    for k in 0..<channels {
                        runningMean[k] = (1 - m) * runningMean[k] + m * meanPointer[k]
                        runningVar[k] = (1 - m) * runningVar[k] + m * unbias * varPointer[k]
                    }
                })
            }
            saved[name] = keep
            forwardPD[name] = pd
            produced = y
        case .maxPool(let spec), .avgPool(let spec):
            var isMax = false
            if case .maxPool = layer.op { isMax = true }
            produced = try pool(resolved, spec, isMax: isMax)
        case .adaptiveAvgPool(let size):
            let (x, shape) = try source(layer.inputs[0], for: name)
            if shape.h == size.h && shape.w == size.w {
                produced = x
                aliases.insert(name)
            } else if shape.h % size.h == 0 && shape.w % size.w == 0 {
                let k = Size2(shape.h / size.h, shape.w / size.w)
                produced = try pool(resolved, PoolSpec(kernel: k, stride: k, padding: .zero, ceilMode: false,
                                                       countIncludePad: false), isMax: false)
            } else {
                throw ZooError.invalidArgument("layer '\(name)': adaptive pooling from \(shape.h)x\(shape.w) to \(size) "
                                               + "has uneven windows, which the trainer does not run backward")
            }
        case .lrn(let spec):
            let (x, shape) = try source(layer.inputs[0], for: name)
            var md = try act4(shape, layer: name)
            var d = dnnl_lrn_desc_t()
            try DNNL.check(dnnl_lrn_forward_desc_init(&d, dnnl_forward_training, dnnl_lrn_across_channels, &md,
                                                      Int64(spec.size), Float(spec.alpha), Float(spec.beta), Float(spec.k)),
                           layer: name, "LRN descriptor")
            let pd = try describe(&d, layer: name, "LRN forward")
            let y = try newBuffer(batch * output.count)
            try appendForward(pd, layer: name, source: (md, x), destination: (md, y))
            produced = y
        case .linear(let outFeatures, _):
            let (x, inShape) = try source(layer.inputs[0], for: name)
            if blocked, fourD.contains(layer.inputs[0]), inShape.h * inShape.w > 1 {
                throw ZooError.engineFailure(layer: name, reason: "reads a feature map without a flatten before it")
            }
            guard let weight = try param(.weight) else { throw ZooError.engineFailure(layer: name, reason: "has no weight") }
            let bias = try param(.bias)
            var srcMD = try DNNL.desc([batch, inShape.count], dnnl_ab, layer: name)
            var weightMD = try DNNL.desc([outFeatures, inShape.count], dnnl_ab, layer: name)
            var biasMD = try DNNL.desc([outFeatures], dnnl_a, layer: name)
            var dstMD = try DNNL.desc([batch, outFeatures], dnnl_ab, layer: name)
            var d = dnnl_inner_product_desc_t()
            try DNNL.check(withUnsafePointer(to: &biasMD) { biasPointer in
                dnnl_inner_product_forward_desc_init(&d, dnnl_forward_training, &srcMD, &weightMD,
                                                     bias == nil ? nil : biasPointer, &dstMD)
            }, layer: name, "inner product descriptor")
            let pd = try describe(&d, layer: name, "inner product forward")
            let y = try newBuffer(batch * outFeatures)
            var keep = ["src": try memory(srcMD, x.pointer, layer: name),
                        "weights": try memory(weightMD, weight.value.baseAddress, layer: name),
                        "dst": try memory(dstMD, y.pointer, layer: name)]
            var args = [arg(DNNL.Arg.src, keep["src"]!), arg(DNNL.Arg.weights, keep["weights"]!),
                        arg(DNNL.Arg.dst, keep["dst"]!)]
            if let bias {
                keep["bias"] = try memory(biasMD, bias.value.baseAddress, layer: name)
                args.append(arg(DNNL.Arg.bias, keep["bias"]!))
            }
            forwardSteps.append(.primitive(try primitive(pd, layer: name), args, layer: name))
            saved[name] = keep
            forwardPD[name] = pd
            produced = y
        case .flatten, .dropout:
            // Dropout is the identity here, as in evaluation: the trainer runs the network
            // as it will be used, and its frozen BatchNorm statistics assume the same.
            let (x, shape) = try source(layer.inputs[0], for: name)
            if case .flatten = layer.op, blocked, fourD.contains(layer.inputs[0]), shape.h * shape.w > 1 {
                // Flattening is in C,H,W order: out of the blocked layout first.
                let y = try newBuffer(batch * shape.count)
                let blockedMD = try act4(shape, layer: name), plainMD = try nchw(shape, layer: name)
                forwardSteps.append(try reorder(try memory(blockedMD, x.pointer, layer: name), blockedMD,
                                                to: try memory(plainMD, y.pointer, layer: name), plainMD, layer: name))
                produced = y
            } else {
                produced = x
                aliases.insert(name)
            }
        case .concat:
            let sources = try layer.inputs.map { try source($0, for: name) }
            let y = try newBuffer(batch * output.count)
            let parts = sources.map { ($0.0.pointer, $0.1.count) }
            let total = output.count, n = batch
            forwardSteps.append(.host {
                for b in 0..<n {
                    var offset = 0
                    for (pointer, count) in parts {
                        (y.pointer + b * total + offset).update(from: pointer + b * count, count: count)
                        offset += count
                    }
                }
            })
            produced = y
        case .add:
            let sources = try layer.inputs.map { try source($0, for: name).0.pointer }
            let y = try newBuffer(batch * output.count)
            let count = batch * output.count
            forwardSteps.append(.host {
                let out = y.pointer
                out.update(from: sources[0], count: count)
                for s in sources.dropFirst() { for i in 0..<count { out[i] += s[i] } }
            })
            produced = y
        case .softmax:
            throw ZooError.invalidArgument("layer '\(name)': a softmax inside the trained tail is not supported")
        }
        guard let produced else { return }
        data[name] = produced
        shapes[name] = output
        var fusedReLU = false
        if case .batchNorm = layer.op, layer.activation == .relu { fusedReLU = true }
        if let activation = layer.activation, !fusedReLU {
            guard !aliases.contains(name) else {
                throw ZooError.engineFailure(layer: name, reason: "an activation on a view layer is not supported")
            }
            var md = try DNNL.desc([batch, output.count], dnnl_ab, layer: name)
            var d = dnnl_eltwise_desc_t()
            let algorithm = activation == .relu ? dnnl_eltwise_relu_use_dst_for_bwd : dnnl_eltwise_tanh_use_dst_for_bwd
            try DNNL.check(dnnl_eltwise_forward_desc_init(&d, dnnl_forward_training, algorithm, &md, 0, 0),
                           layer: name, "activation descriptor")
            let pd = try describe(&d, layer: name, "activation forward")
            let m = try memory(md, produced.pointer, layer: name)
            forwardSteps.append(.primitive(try primitive(pd, layer: name), [arg(DNNL.Arg.src, m), arg(DNNL.Arg.dst, m)],
                                           layer: name))
            activationPD[name] = (pd, m, md)
        }
    }

    private var aliases: Set<String> = []
    /// The layouts a convolution's forward pass holds its input and weights in.
    private var convLayouts: [String: (src: dnnl_memory_desc_t, weights: dnnl_memory_desc_t)] = [:]
    private var activationPD: [String: (pd: dnnl_primitive_desc_t, data: dnnl_memory_t, md: dnnl_memory_desc_t)] = [:]

    /// Pooling in the engine's window rules: ceil mode as extra bottom/right padding.
    private func pool(_ resolved: ResolvedLayer, _ spec: PoolSpec, isMax: Bool) throws -> Buffer {
        let name = resolved.layer.name
        let (x, shape) = try source(resolved.layer.inputs[0], for: name)
        let output = resolved.output
        let padBottom = max(spec.padding.bottom, (output.h - 1) * spec.stride.h + spec.kernel.h - shape.h - spec.padding.top)
        let padRight = max(spec.padding.right, (output.w - 1) * spec.stride.w + spec.kernel.w - shape.w - spec.padding.left)
        let overhang = padBottom > spec.padding.bottom || padRight > spec.padding.right
        var algorithm = dnnl_pooling_max
        if !isMax {
            let declared = spec.padding != .zero
            if spec.countIncludePad && overhang && declared {
                throw ZooError.invalidArgument("layer '\(name)': average pooling that counts declared padding but not "
                                               + "the ceil-mode overhang is not run backward")
            }
            algorithm = spec.countIncludePad && declared ? dnnl_pooling_avg_include_padding : dnnl_pooling_avg_exclude_padding
        }
        var srcMD = try act4(shape, layer: name)
        var dstMD = try act4(output, layer: name)
        let strides: [Int64] = [Int64(spec.stride.h), Int64(spec.stride.w)]
        let kernel: [Int64] = [Int64(spec.kernel.h), Int64(spec.kernel.w)]
        let padL: [Int64] = [Int64(spec.padding.top), Int64(spec.padding.left)]
        let padR: [Int64] = [Int64(padBottom), Int64(padRight)]
        var d = dnnl_pooling_desc_t()
        try DNNL.check(dnnl_pooling_forward_desc_init(&d, dnnl_forward_training, algorithm, &srcMD, &dstMD,
                                                      strides, kernel, padL, padR), layer: name, "pooling descriptor")
        let pd = try describe(&d, layer: name, "pooling forward")
        let y = try newBuffer(batch * output.count)
        try appendForward(pd, layer: name, source: (srcMD, x), destination: (dstMD, y))
        poolGeometry[name] = (algorithm, strides, kernel, padL, padR)
        return y
    }

    private var poolGeometry: [String: (dnnl_alg_kind_t, [Int64], [Int64], [Int64], [Int64])] = [:]

    // MARK: - Backward

    /// The gradient buffer of `name`, made on first use.
    private func gradient(_ name: String) throws -> Buffer {
        if let buffer = diff[name] { return buffer }
        let buffer = try newBuffer(batch * (shapes[name]?.count ?? 0))
        diff[name] = buffer
        return buffer
    }

    /// Where a reader writes its contribution to `name`'s gradient, and the step (if any)
    /// that sums it in: the first contributor writes the gradient itself.
    private func contribution(to name: String, by reader: String) throws -> (Buffer, Step?) {
        let key = name
        let target = try gradient(name)
        if !contributed.contains(key) {
            contributed.insert(key)
            return (target, nil)
        }
        let s = scratch
        let count = batch * (shapes[name]?.count ?? 0)
        return (s, .host {
            let t = target.pointer, p = s.pointer
            for i in 0..<count { t[i] += p[i] }
        })
    }

    private func compileBackward(_ resolved: ResolvedLayer, parameters: [String: TrainableParameter]) throws -> [Step] {
        let layer = resolved.layer
        let name = layer.name
        guard needsDiff.contains(name) else { return [] }
        var steps: [Step] = []
        // The last layer's gradient is written by the caller.
        let dy = try gradient(name)
        if name == outputName { contributed.insert(name) }
        guard contributed.contains(name) else {
            // Nothing downstream reads this value: its gradient is zero.
            return []
        }
        if let (pd, dataMemory, md) = activationPD[name] {
            var d = dnnl_eltwise_desc_t()
            var mdCopy = md, dataMD = md
            let algorithm = layer.activation == .relu ? dnnl_eltwise_relu_use_dst_for_bwd : dnnl_eltwise_tanh_use_dst_for_bwd
            try DNNL.check(dnnl_eltwise_backward_desc_init(&d, algorithm, &mdCopy, &dataMD, 0, 0),
                           layer: name, "activation backward descriptor")
            let bpd = try describe(&d, hint: pd, layer: name, "activation backward")
            let g = try memory(md, dy.pointer, layer: name)
            steps.append(.primitive(try primitive(bpd, layer: name), [
                arg(DNNL.Arg.dst, dataMemory), arg(DNNL.Arg.diffDst, g), arg(DNNL.Arg.diffSrc, g),
            ], layer: name))
        }
        func wantsInput(_ index: Int) -> Bool { needsDiff.contains(layer.inputs[index]) }
        func param(_ role: ParameterRole) -> TrainableParameter? {
            resolved.parameters.first(where: { $0.role == role }).flatMap { parameters[$0.name] }
        }
        let saved = self.saved[name] ?? [:]
        switch layer.op {
        case .conv(let spec):
            guard let fpd = forwardPD[name], let weight = param(.weight), let inShape = shapes[layer.inputs[0]] else {
                throw ZooError.engineFailure(layer: name, reason: "forward pass not compiled")
            }
            let bias = param(.bias)
            let output = resolved.output
            guard let (forwardSrc, forwardWeights) = convLayouts[name], let x = data[layer.inputs[0]] else {
                throw ZooError.engineFailure(layer: name, reason: "forward pass not compiled")
            }
            let c = try convolutionLayouts(spec, input: inShape, output: output, layer: name)
            let (plainSrc, plainWeights, plainDst) = (c.plainSrc, c.plainWeights, c.plainDst)
            var (srcMD, weightMD, biasMD, dstMD) = (c.src, c.weights, c.bias, c.dst)
            let (strides, padL, padR) = (c.strides, c.padL, c.padR)
            let plainDiffDst = try memory(plainDst, dy.pointer, layer: name)
            var wd = dnnl_convolution_desc_t()
            try DNNL.check(withUnsafePointer(to: &biasMD) { biasPointer in
                dnnl_convolution_backward_weights_desc_init(&wd, dnnl_convolution_direct, &srcMD, &weightMD,
                                                            bias == nil ? nil : biasPointer, &dstMD, strides, padL, padR)
            }, layer: name, "convolution backward weights descriptor")
            let wpd = try describe(&wd, hint: fpd, layer: name, "conv backward weights")
            guard let wSrc = DNNL.queryMD(wpd, dnnl_query_src_md), let wDiffWeights = DNNL.queryMD(wpd, dnnl_query_diff_weights_md),
                  let wDiffDst = DNNL.queryMD(wpd, dnnl_query_diff_dst_md) else {
                throw ZooError.engineFailure(layer: name, reason: "convolution backward did not report its layouts")
            }
            let mSrc = DNNL.equal(wSrc, forwardSrc)
                ? saved["src"]!
                : try input(try memory(plainSrc, x.pointer, layer: name), plainSrc, as: wSrc, into: &steps, layer: name)
            let mDiffDst = try input(plainDiffDst, plainDst, as: wDiffDst, into: &steps, layer: name)
            let (mDiffWeights, afterWeights) = try self.output(try memory(plainWeights, weight.gradient.baseAddress, layer: name),
                                                          plainWeights, as: wDiffWeights, layer: name)
            var args = [arg(DNNL.Arg.src, mSrc), arg(DNNL.Arg.diffDst, mDiffDst), arg(DNNL.Arg.diffWeights, mDiffWeights)]
            if let bias { args.append(arg(DNNL.Arg.diffBias, try memory(biasMD, bias.gradient.baseAddress, layer: name))) }
            steps.append(.primitive(try primitive(wpd, layer: name), args, layer: name))
            if let afterWeights { steps.append(afterWeights) }
            if wantsInput(0) {
                let (target, sum) = try contribution(to: layer.inputs[0], by: name)
                var dd = dnnl_convolution_desc_t()
                try DNNL.check(dnnl_convolution_backward_data_desc_init(&dd, dnnl_convolution_direct, &srcMD, &weightMD,
                                                                        &dstMD, strides, padL, padR),
                               layer: name, "convolution backward data descriptor")
                let dpd = try describe(&dd, hint: fpd, layer: name, "conv backward data")
                guard let dDiffSrc = DNNL.queryMD(dpd, dnnl_query_diff_src_md), let dWeights = DNNL.queryMD(dpd, dnnl_query_weights_md),
                      let dDiffDst = DNNL.queryMD(dpd, dnnl_query_diff_dst_md) else {
                    throw ZooError.engineFailure(layer: name, reason: "convolution backward did not report its layouts")
                }
                let mWeights = DNNL.equal(dWeights, forwardWeights)
                    ? saved["weights"]!
                    : try input(try memory(plainWeights, weight.value.baseAddress, layer: name), plainWeights, as: dWeights,
                                into: &steps, layer: name)
                let mDataDiffDst = DNNL.equal(dDiffDst, wDiffDst)
                    ? mDiffDst : try input(plainDiffDst, plainDst, as: dDiffDst, into: &steps, layer: name)
                let (mDiffSrc, afterData) = try self.output(try memory(plainSrc, target.pointer, layer: name), plainSrc,
                                                       as: dDiffSrc, layer: name)
                steps.append(.primitive(try primitive(dpd, layer: name), [
                    arg(DNNL.Arg.diffDst, mDataDiffDst), arg(DNNL.Arg.weights, mWeights), arg(DNNL.Arg.diffSrc, mDiffSrc),
                ], layer: name))
                if let afterData { steps.append(afterData) }
                if let sum { steps.append(sum) }
            }
        case .batchNorm(let epsilon):
            guard let fpd = forwardPD[name], let scale = param(.weight), let shift = param(.bias),
                  let shape = shapes[layer.inputs[0]] else {
                throw ZooError.engineFailure(layer: name, reason: "forward pass not compiled")
            }
            let plain = try act4(shape, layer: name)
            var md = try blockedBatchNormMD(shape, layer: name)
            var dataMD = md
            // Live: the full gradient, through the batch mean and variance as well.
            var flags = dnnl_use_scale.rawValue | dnnl_use_shift.rawValue
            if !live { flags |= dnnl_use_global_stats.rawValue }
            if layer.activation == .relu { flags |= dnnl_fuse_norm_relu.rawValue }
            var d = dnnl_batch_normalization_desc_t()
            try DNNL.check(dnnl_batch_normalization_backward_desc_init(&d, dnnl_backward, &md, &dataMD, Float(epsilon),
                                                                       UInt32(flags)),
                           layer: name, "BatchNorm backward descriptor")
            let bpd = try describe(&d, hint: fpd, layer: name, "BatchNorm backward")
            // oneDNN always writes diff_src here; when nothing upstream wants it, it lands in scratch.
            let (target, sum): (Buffer, Step?) = try wantsInput(0) ? contribution(to: layer.inputs[0], by: name) : (scratch, nil)
            let vectorMD = try DNNL.desc([shape.c], dnnl_a, layer: name)
            let mDiffDst = try input(try memory(plain, dy.pointer, layer: name), plain, as: md, into: &steps, layer: name)
            let (mDiffSrc, after) = try self.output(try memory(plain, target.pointer, layer: name), plain, as: md, layer: name)
            var args = [
                arg(DNNL.Arg.src, saved["src"]!), arg(DNNL.Arg.mean, saved["mean"]!), arg(DNNL.Arg.variance, saved["variance"]!),
                // oneDNN 2.6 lists the shift as an input of the backward pass too.
                arg(DNNL.Arg.scale, saved["scale"]!), arg(DNNL.Arg.shift, saved["shift"]!),
                arg(DNNL.Arg.diffDst, mDiffDst), arg(DNNL.Arg.diffSrc, mDiffSrc),
                arg(DNNL.Arg.diffScale, try memory(vectorMD, scale.gradient.baseAddress, layer: name)),
                arg(DNNL.Arg.diffShift, try memory(vectorMD, shift.gradient.baseAddress, layer: name)),
            ]
            if let ws = saved["workspace"] { args.append(arg(DNNL.Arg.workspace, ws)) }
            steps.append(.primitive(try primitive(bpd, layer: name), args, layer: name))
            // Nothing upstream wants the input's gradient: skip copying it out.
            if let after, wantsInput(0) { steps.append(after) }
            if let sum { steps.append(sum) }
        case .maxPool, .avgPool, .adaptiveAvgPool:
            guard wantsInput(0) else { break }
            if aliases.contains(name) {
                steps += try copyGradient(from: dy, count: batch * resolved.output.count, to: layer.inputs[0], by: name)
                break
            }
            guard let fpd = forwardPD[name], let (algorithm, strides, kernel, padL, padR) = poolGeometry[name],
                  let shape = shapes[layer.inputs[0]] else {
                throw ZooError.engineFailure(layer: name, reason: "forward pass not compiled")
            }
            var srcMD = try act4(shape, layer: name)
            var dstMD = try act4(resolved.output, layer: name)
            var d = dnnl_pooling_desc_t()
            try DNNL.check(dnnl_pooling_backward_desc_init(&d, algorithm, &srcMD, &dstMD, strides, kernel, padL, padR),
                           layer: name, "pooling backward descriptor")
            let bpd = try describe(&d, hint: fpd, layer: name, "pooling backward")
            let (target, sum) = try contribution(to: layer.inputs[0], by: name)
            var args = [arg(DNNL.Arg.diffDst, try memory(dstMD, dy.pointer, layer: name)),
                        arg(DNNL.Arg.diffSrc, try memory(srcMD, target.pointer, layer: name))]
            if let ws = saved["workspace"] { args.append(arg(DNNL.Arg.workspace, ws)) }
            steps.append(.primitive(try primitive(bpd, layer: name), args, layer: name))
            if let sum { steps.append(sum) }
        case .lrn(let spec):
            guard wantsInput(0) else { break }
            guard let fpd = forwardPD[name], let shape = shapes[layer.inputs[0]] else {
                throw ZooError.engineFailure(layer: name, reason: "forward pass not compiled")
            }
            var md = try act4(shape, layer: name)
            var dataMD = md
            var d = dnnl_lrn_desc_t()
            try DNNL.check(dnnl_lrn_backward_desc_init(&d, dnnl_lrn_across_channels, &md, &dataMD, Int64(spec.size),
                                                       Float(spec.alpha), Float(spec.beta), Float(spec.k)),
                           layer: name, "LRN backward descriptor")
            let bpd = try describe(&d, hint: fpd, layer: name, "LRN backward")
            let (target, sum) = try contribution(to: layer.inputs[0], by: name)
            var args = [arg(DNNL.Arg.src, saved["src"]!), arg(DNNL.Arg.diffDst, try memory(md, dy.pointer, layer: name)),
                        arg(DNNL.Arg.diffSrc, try memory(md, target.pointer, layer: name))]
            if let ws = saved["workspace"] { args.append(arg(DNNL.Arg.workspace, ws)) }
            steps.append(.primitive(try primitive(bpd, layer: name), args, layer: name))
            if let sum { steps.append(sum) }
        case .linear(let outFeatures, _):
            guard let fpd = forwardPD[name], let weight = param(.weight), let inShape = shapes[layer.inputs[0]] else {
                throw ZooError.engineFailure(layer: name, reason: "forward pass not compiled")
            }
            let bias = param(.bias)
            var srcMD = try DNNL.desc([batch, inShape.count], dnnl_ab, layer: name)
            var weightMD = try DNNL.desc([outFeatures, inShape.count], dnnl_ab, layer: name)
            var biasMD = try DNNL.desc([outFeatures], dnnl_a, layer: name)
            var dstMD = try DNNL.desc([batch, outFeatures], dnnl_ab, layer: name)
            let mDiffDst = try memory(dstMD, dy.pointer, layer: name)
            var wd = dnnl_inner_product_desc_t()
            try DNNL.check(withUnsafePointer(to: &biasMD) { biasPointer in
                dnnl_inner_product_backward_weights_desc_init(&wd, &srcMD, &weightMD, bias == nil ? nil : biasPointer, &dstMD)
            }, layer: name, "inner product backward weights descriptor")
            let wpd = try describe(&wd, hint: fpd, layer: name, "inner product backward weights")
            var args = [arg(DNNL.Arg.src, saved["src"]!), arg(DNNL.Arg.diffDst, mDiffDst),
                        arg(DNNL.Arg.diffWeights, try memory(weightMD, weight.gradient.baseAddress, layer: name))]
            if let bias { args.append(arg(DNNL.Arg.diffBias, try memory(biasMD, bias.gradient.baseAddress, layer: name))) }
            steps.append(.primitive(try primitive(wpd, layer: name), args, layer: name))
            if wantsInput(0) {
                let (target, sum) = try contribution(to: layer.inputs[0], by: name)
                var dd = dnnl_inner_product_desc_t()
                try DNNL.check(dnnl_inner_product_backward_data_desc_init(&dd, &srcMD, &weightMD, &dstMD),
                               layer: name, "inner product backward data descriptor")
                let dpd = try describe(&dd, hint: fpd, layer: name, "inner product backward data")
                steps.append(.primitive(try primitive(dpd, layer: name), [
                    arg(DNNL.Arg.diffDst, mDiffDst), arg(DNNL.Arg.weights, saved["weights"]!),
                    arg(DNNL.Arg.diffSrc, try memory(srcMD, target.pointer, layer: name)),
                ], layer: name))
                if let sum { steps.append(sum) }
            }
        case .flatten, .dropout:
            guard wantsInput(0) else { break }
            if aliases.contains(name) {
                steps += try copyGradient(from: dy, count: batch * resolved.output.count, to: layer.inputs[0], by: name)
            } else if let shape = shapes[layer.inputs[0]] {
                let (target, sum) = try contribution(to: layer.inputs[0], by: name)
                let blockedMD = try act4(shape, layer: name), plainMD = try nchw(shape, layer: name)
                steps.append(try reorder(try memory(plainMD, dy.pointer, layer: name), plainMD,
                                         to: try memory(blockedMD, target.pointer, layer: name), blockedMD, layer: name))
                if let sum { steps.append(sum) }
            }
        case .add:
            for (index, input) in layer.inputs.enumerated() where wantsInput(index) {
                steps += try copyGradient(from: dy, count: batch * resolved.output.count, to: input, by: name)
            }
        case .concat:
            let total = resolved.output.count, n = batch
            var offset = 0
            for (index, input) in layer.inputs.enumerated() {
                let count = shapes[input]?.count ?? 0
                defer { offset += count }
                guard wantsInput(index) else { continue }
                let (target, sum) = try contribution(to: input, by: name)
                let start = offset
                steps.append(.host {
                    for b in 0..<n { (target.pointer + b * count).update(from: dy.pointer + b * total + start, count: count) }
                })
                if let sum { steps.append(sum) }
            }
        case .softmax:
            break
        }
        return steps
    }

    /// A gradient passed on unchanged (residual add, flatten, dropout, identity pool).
    private func copyGradient(from dy: Buffer, count: Int, to input: String, by reader: String) throws -> [Step] {
        let (target, sum) = try contribution(to: input, by: reader)
        let copy = Step.host { target.pointer.update(from: dy.pointer, count: count) }
        return sum.map { [copy, $0] } ?? [copy]
    }
}
