import CDNNL
import Foundation

/// Turns a `ResolvedNetwork` and its canonical weights into oneDNN primitives. Used once per
/// `Network`; see `Network` for the optimisations it applies.
final class NetworkCompiler {
    /// One activation tensor as the compiled network holds it.
    struct Value {
        var memory: dnnl_memory_t
        var md: dnnl_memory_desc_t
        /// Per-image logical shape (what the spec says, e.g. after a flatten).
        var shape: Shape3
        /// Whether a layer wrote this buffer itself (not the network input, not a view).
        var ownsBuffer: Bool
        /// Stored value over real value: 1 for floating point, levels / threshold for u8/s8.
        var scale: Float = 1
    }

    /// A convolution whose only reader is a two-input add: it is built when the add is
    /// reached, so that it can accumulate into the other operand's buffer.
    struct DeferredConv {
        let layer: ResolvedLayer
        let spec: ConvSpec
        let source: String
        let weights: [Float]
        let bias: [Float]
    }

    let net: ResolvedNetwork
    let weights: [String: Tensor]
    let batch: Int
    let engine: dnnl_engine_t
    let stream: dnnl_stream_t
    let resources = DNNLResources()
    private var steps: [CompiledProgram.Step] = []
    private var values: [String: Value] = [:]
    /// Reordered copies already made of a buffer, so two readers wanting the same layout
    /// share one reorder.
    private var conversions: [OpaquePointer: [(md: dnnl_memory_desc_t, scale: Float, memory: dnnl_memory_t)]] = [:]
    private var deferred: [String: DeferredConv] = [:]
    /// Every activation buffer and its size in bytes.
    private var activationBytes: [OpaquePointer: Int] = [:]
    /// Memories that read and write another activation's bytes (a concat branch's slice of
    /// the concat, a 2-d view of a plain 4-d tensor): view -> the buffer it lies in. They get
    /// no storage of their own; the buffer lives as long as any of its views is used.
    private var views: [OpaquePointer: OpaquePointer] = [:]
    /// Concat inputs written straight into their slice of the concat's output:
    /// input name -> (concat name, channel offset).
    private var concatSlots: [String: (concat: String, channelOffset: Int)] = [:]
    /// Output buffers of those concats, made when their first branch is compiled.
    private var concatOutputs: [String: Value] = [:]
    private(set) var kernels: [(layer: String, implementation: String)] = []

    /// Layer indices reading each value.
    private var readers: [String: [Int]] = [:]
    /// The step position at which each layer really runs (deferred convs run at their add).
    private var runsAt: [String: Int] = [:]
    /// conv name -> the BatchNorm folded into it.
    private var foldedBatchNorm: [String: ResolvedLayer] = [:]

    let precision: Precision
    /// Whether convolutions keep activations in oneDNN's 16-channel blocked layout (nChw16c)
    /// instead of letting the library choose (channels-last for its brgemm kernels).
    /// Measured per operator on this machine's AVX-512 cores (Tools/bench_engine.py --per-op):
    /// with direct kernels, at batch 1 the brgemm kernels, which split one image's rows
    /// between threads, are 4-14% faster on ResNet and GoogLeNet; from batch 2 the blocked
    /// direct kernels, which split images between threads, are 1-5% faster in float32
    /// (ResNet50's expanding 1x1 convolutions with a residual sum: 20-30%) and 2-9% in
    /// bfloat16 (batch 8). Winograd reads and writes only the blocked layout: with it, blocked
    /// throughout is as fast at batch 1 on every net (ResNet18: 22% faster, its residual
    /// convolutions can then use it too) and saves the reorders around each Winograd layer.
    /// int8 keeps the library's choice, and so does bfloat16 on processors with AMX, whose
    /// tile kernels (brgconv amx_bf16) read channels-last only: ResNet50 at batch 8 ran 414
    /// ms blocked against about 50 channels-last on a Sapphire Rapids Xeon (float32: 210).
    private var blockedActivations: Bool {
        switch precision {
        case .int8: false
        case .bf16: batch >= 2 && !Self.hasAMX
        case .fp32: batch >= 2 || convolutions == .winograd
        }
    }
    /// What convolutions, pools, normalisations and hidden FC layers compute in: bfloat16
    /// activations and weights with float32 accumulation under `.bf16` (AVX512-BF16), float32
    /// otherwise. Biases, BatchNorm statistics and the final classifier stay float32.
    /// Under `.int8`, the layers kept out of int8 (`floatLayers`) compute in
    /// `Self.int8FallbackType`.
    private var activationType: dnnl_data_type_t {
        switch precision {
        case .bf16: dnnl_bf16
        case .int8: Self.int8FallbackType
        case .fp32: dnnl_f32
        }
    }
    /// Whether oneDNN's effective instruction set here includes `isa` (each ISA's value
    /// holds the bits of those it extends).
    static func cpuHas(_ isa: dnnl_cpu_isa_t) -> Bool {
        dnnl_get_effective_cpu_isa().rawValue & isa.rawValue == isa.rawValue
    }
    /// Whether oneDNN may use AMX tiles here.
    static let hasAMX = cpuHas(dnnl_cpu_isa_avx512_core_amx)
    /// bfloat16 where the processor has AVX512-BF16: the blocks int8 would change answers
    /// in then run at about half the float32 time, with logits within about 1% of float32's
    /// (PrecisionTests); float32 elsewhere, where oneDNN would emulate bfloat16 slowly.
    static let int8FallbackType = cpuHas(dnnl_cpu_isa_avx512_core_bf16) ? dnnl_bf16 : dnnl_f32

    /// Clipping threshold per activation tensor under `.int8` (see `Int8Calibration`); a
    /// tensor without one stays float32, and so does every layer reading it until a
    /// convolution or inner product quantizes again.
    private var thresholds: [String: Float] = [:]
    /// Convolutions and inner products kept out of int8 under `.int8` (the blocks the
    /// calibration's agreement tuning chose): they dequantize their input, compute and write
    /// in `int8FallbackType`, which the next int8 layer quantizes again at its own threshold.
    private var floatLayers: Set<String> = []
    private let probing: Bool
    private let convolutions: ConvolutionAlgorithm
    private var probed: Set<String> = []
    private var probes: [(name: String, memory: dnnl_memory_t, count: Int)] = []

    init(net: ResolvedNetwork, weights: [String: Tensor], batch: Int, precision: Precision = .fp32,
         calibration: Int8Calibration? = nil, convolutions: ConvolutionAlgorithm = .winograd,
         probing: Bool = false) throws {
        self.net = net
        self.convolutions = convolutions
        self.weights = weights
        self.batch = batch
        self.precision = precision
        self.thresholds = calibration?.thresholds ?? [:]
        self.floatLayers = Set(calibration?.floatLayers ?? [])
        self.probing = probing
        (engine, stream) = try DNNL.cpuEngineAndStream()
    }

    // MARK: - Planning

    private func plan() {
        let layers = net.layers
        for (index, resolved) in layers.enumerated() {
            for name in resolved.layer.inputs { readers[name, default: []].append(index) }
            runsAt[resolved.layer.name] = index
        }
        let byName = Dictionary(layers.map { ($0.layer.name, $0) }, uniquingKeysWith: { first, _ in first })
        for resolved in layers {
            guard case .batchNorm = resolved.layer.op, resolved.layer.inputs.count == 1,
                  let producer = byName[resolved.layer.inputs[0]], case .conv = producer.layer.op,
                  producer.layer.activation == nil, readers[producer.layer.name]?.count == 1 else { continue }
            foldedBatchNorm[producer.layer.name] = resolved
        }
        // A conv (with its folded BN) whose sole reader is a two-input add, with no activation
        // in between, is deferred to the add.
        for resolved in layers {
            guard case .conv = resolved.layer.op else { continue }
            let bn = foldedBatchNorm[resolved.layer.name]
            let outputName = bn?.layer.name ?? resolved.layer.name
            let activation = bn?.layer.activation ?? resolved.layer.activation
            guard activation == nil, let reading = readers[outputName], reading.count == 1 else { continue }
            let consumer = layers[reading[0]].layer
            guard case .add = consumer.op, consumer.inputs.count == 2, Set(consumer.inputs).count == 2 else { continue }
            runsAt[resolved.layer.name] = reading[0]
            if let bn { runsAt[bn.layer.name] = reading[0] }
        }
        planInPlaceConcats(byName)
        // A branch read only by a concat is quantized with the concat's threshold (which
        // covers every branch), so the concat copies bytes instead of rescaling them.
        for (index, resolved) in layers.enumerated() {
            guard case .concat = resolved.layer.op, let t = thresholds[resolved.layer.name] else { continue }
            for input in resolved.layer.inputs where readers[input] == [index] { thresholds[input] = t }
        }
    }

    /// A concat whose every input is a convolution read by nothing else (an inception
    /// module's branches) has each branch write its slice of the output, so the concat
    /// itself copies nothing. In the blocked layout a slice must start on a 16-channel block.
    /// Under int8 the branches' types and scales are settled later; concat copies there.
    private func planInPlaceConcats(_ byName: [String: ResolvedLayer]) {
        guard precision != .int8 else { return }
        let indexOf = Dictionary(net.layers.enumerated().map { ($0.element.layer.name, $0.offset) },
                                 uniquingKeysWith: { first, _ in first })
        let convOfFoldedBN = Dictionary(foldedBatchNorm.map { ($0.value.layer.name, $0.key) },
                                        uniquingKeysWith: { first, _ in first })
        for (index, resolved) in net.layers.enumerated() {
            guard case .concat = resolved.layer.op,
                  Set(resolved.layer.inputs).count == resolved.layer.inputs.count else { continue }
            var slots: [(String, Int)] = []
            var offset = 0
            for input in resolved.layer.inputs {
                let convName = convOfFoldedBN[input] ?? input
                guard readers[input] == [index], let producer = byName[input], let conv = byName[convName],
                      case .conv = conv.layer.op, runsAt[convName] == indexOf[convName],
                      !blockedActivations || offset % 16 == 0 else { slots = []; break }
                slots.append((input, offset))
                offset += producer.output.c
            }
            guard !slots.isEmpty, offset == resolved.output.c else { continue }
            for (input, channelOffset) in slots { concatSlots[input] = (resolved.layer.name, channelOffset) }
        }
    }

    // MARK: - Compilation

    func compile() throws -> CompiledProgram {
        plan()
        let input = net.input
        let inputMD = try DNNL.desc([batch, input.c, input.h, input.w], dnnl_nchw, layer: Layer.networkInput)
        let inputMemory = try newActivation(inputMD, layer: Layer.networkInput)
        values[Layer.networkInput] = Value(memory: inputMemory, md: inputMD, shape: input, ownsBuffer: false)
        try probe(Layer.networkInput)

        for (index, resolved) in net.layers.enumerated() {
            try compileLayer(resolved, index: index)
            if probing {
                for name in values.keys.sorted() where !probed.contains(name) && values[name]?.ownsBuffer == true {
                    try probe(name)
                }
            }
        }
        guard let last = net.layers.last, let result = values[last.layer.name] else {
            throw ZooError.engineFailure(layer: "output", reason: "the network has no layers")
        }
        let shape = result.shape
        let plainDims = result.md.ndims == 2 ? [batch, shape.count] : [batch, shape.c, shape.h, shape.w]
        let logicalDims = DNNL.dims(of: result.md)
        let outputMD = try DNNL.desc(logicalDims, DNNL.plainTag(rank: logicalDims.count), layer: last.layer.name)
        let outputMemory = try converted(result, to: outputMD, layer: last.layer.name)
        let outputShape = shape.h == 1 && shape.w == 1 ? [batch, shape.c] : plainDims
        let arena = try assignActivationStorage(input: inputMemory, output: outputMemory)
        let program = CompiledProgram(
            resources: resources, engine: engine, stream: stream, steps: steps, arena: arena,
            inputBuffer: try handle(inputMemory, layer: Layer.networkInput), inputCount: batch * input.count,
            outputBuffer: try handle(outputMemory, layer: last.layer.name), outputShape: outputShape)
        program.probes = try probes.map { ($0.name, try handle($0.memory, layer: $0.name), $0.count) }
        return program
    }

    /// Under `probing`, copies the value's tensor out (plain NCHW float32) right after the
    /// step that writes it, before a residual sum may overwrite its buffer.
    private func probe(_ name: String) throws {
        guard probing, !probed.contains(name), let value = values[name] else { return }
        probed.insert(name)
        let dims = DNNL.dims(of: value.md)
        let plain = try DNNL.desc(dims, DNNL.plainTag(rank: dims.count), layer: name)
        let memory = try newMemory(plain, layer: name)
        let reorder = try makeReorder(from: value.md, to: plain, layer: name)
        steps.append(.primitive(reorder, [dnnl_exec_arg_t(arg: DNNL.Arg.src, memory: value.memory),
                                          dnnl_exec_arg_t(arg: DNNL.Arg.dst, memory: memory)], layer: "probe " + name))
        probes.append((name, memory, dims.reduce(1, *)))
    }

    /// Gives every activation buffer storage in one arena. Each buffer lives from the first
    /// step that touches it to the last; buffers whose lives do not overlap share bytes
    /// (greedy first fit over offsets, in order of first use). The network input is live from
    /// before the first step, the output until after the last.
    private func assignActivationStorage(input: dnnl_memory_t, output: dnnl_memory_t) throws -> ActivationArena {
        var firstUse: [OpaquePointer: Int] = [:]
        var lastUse: [OpaquePointer: Int] = [:]
        func touch(_ memory: dnnl_memory_t, _ position: Int) {
            let memory = storageOwner(memory)
            guard activationBytes[memory] != nil else { return }
            firstUse[memory] = min(firstUse[memory] ?? position, position)
            lastUse[memory] = max(lastUse[memory] ?? position, position)
        }
        touch(input, -1)
        for (position, step) in steps.enumerated() {
            switch step {
            case let .primitive(_, args, _):
                for arg in args { if let memory = arg.memory { touch(memory, position) } }
            case let .host(_, inMemory, outMemory, _):
                touch(inMemory, position)
                touch(outMemory, position)
            }
        }
        touch(output, steps.count)
        let alignment = 64
        // Live allocations as (offset, end, lastUse), kept sorted by offset.
        var placed: [(memory: OpaquePointer, offset: Int, end: Int, last: Int)] = []
        var offsets: [OpaquePointer: Int] = [:]
        var arenaSize = 0
        let order = firstUse.keys.sorted { (firstUse[$0] ?? 0, activationBytes[$0] ?? 0) < (firstUse[$1] ?? 0, activationBytes[$1] ?? 0) }
        for memory in order {
            guard let start = firstUse[memory], let end = lastUse[memory], let bytes = activationBytes[memory] else { continue }
            let size = (bytes + alignment - 1) / alignment * alignment
            // Blocks still alive when this buffer is first written stay where they are.
            let alive = placed.filter { $0.last >= start }.sorted { $0.offset < $1.offset }
            var candidate = 0
            for block in alive {
                if candidate + size <= block.offset { break }
                candidate = max(candidate, block.end)
            }
            offsets[memory] = candidate
            placed.append((memory, candidate, candidate + size, end))
            arenaSize = max(arenaSize, candidate + size)
        }
        let arena = ActivationArena(byteCount: max(arenaSize, alignment), alignment: alignment)
        for (memory, offset) in offsets {
            try DNNL.check(dnnl_memory_set_data_handle(memory, arena.base + offset), layer: "activations", "set data handle")
        }
        // A view's descriptor carries its offset into the buffer (a sub-memory's channel
        // offset), so it takes the buffer's own address.
        for view in views.keys {
            guard let offset = offsets[storageOwner(view)] else { continue }
            try DNNL.check(dnnl_memory_set_data_handle(view, arena.base + offset), layer: "activations", "set data handle")
        }
        return arena
    }

    private func value(_ name: String, for layer: String) throws -> Value {
        guard let value = values[name] else {
            throw ZooError.engineFailure(layer: layer, reason: "reads '\(name)', which is not computed before it")
        }
        return value
    }

    private func compileLayer(_ resolved: ResolvedLayer, index: Int) throws {
        let layer = resolved.layer
        let name = layer.name
        switch layer.op {
        case .conv(let spec):
            let bn = foldedBatchNorm[name]
            let (weights, bias) = try convParameters(resolved, spec, foldingInto: bn)
            let outputName = bn?.layer.name ?? name
            let activation = bn?.layer.activation ?? layer.activation
            if runsAt[name] != index {
                deferred[outputName] = DeferredConv(layer: resolved, spec: spec, source: layer.inputs[0],
                                                    weights: weights, bias: bias)
                return
            }
            let source = try value(layer.inputs[0], for: name)
            let output = bn?.output ?? resolved.output
            values[outputName] = try buildConv(resolved, spec, source: source, sourceName: layer.inputs[0],
                                               output: output, outputName: outputName, weights: weights,
                                               bias: bias, activation: activation, accumulateInto: nil,
                                               concatSlot: concatSlots[outputName])
        case .batchNorm(let epsilon):
            if values[name] != nil || deferred[name] != nil { return }  // folded into its conv
            values[name] = try buildBatchNorm(resolved, epsilon: epsilon,
                                              source: try floatValue(try value(layer.inputs[0], for: name), layer: name))
        case .maxPool(let spec), .avgPool(let spec):
            var isMax = false
            if case .maxPool = layer.op { isMax = true }
            values[name] = try buildPool(resolved, spec, max: isMax, source: try value(layer.inputs[0], for: name))
        case .adaptiveAvgPool(let size):
            values[name] = try buildAdaptivePool(resolved, size, source: try value(layer.inputs[0], for: name))
        case .lrn(let spec):
            values[name] = try buildLRN(resolved, spec, source: try floatValue(try value(layer.inputs[0], for: name), layer: name))
        case .flatten:
            var view = try value(layer.inputs[0], for: name)
            view.shape = resolved.output
            view.ownsBuffer = false
            values[name] = view
        case .dropout:
            var view = try value(layer.inputs[0], for: name)
            view.ownsBuffer = false
            values[name] = view
        case .linear:
            values[name] = try buildInnerProduct(resolved, source: try value(layer.inputs[0], for: name),
                                                 sourceName: layer.inputs[0])
        case .concat:
            values[name] = try buildConcat(resolved, sources: try layer.inputs.map { try value($0, for: name) })
        case .add:
            values[name] = try buildAdd(resolved, index: index)
        case .softmax:
            values[name] = try buildSoftmax(resolved, source: try floatValue(try value(layer.inputs[0], for: name), layer: name))
        }
        if let activation = layer.activation, var produced = values[name], !activationFused(layer) {
            if Self.isInteger(produced.md) {
                produced = try floatValue(produced, layer: name)
                values[name] = produced
            }
            try appendEltwise(activation, on: produced, layer: name)
        }
    }

    /// Layers whose activation is applied inside their own primitive.
    private func activationFused(_ layer: Layer) -> Bool {
        switch layer.op {
        case .conv, .linear, .add: return true
        case .batchNorm: return layer.activation == .relu  // dnnl_fuse_norm_relu
        default: return false
        }
    }

    // MARK: - Memory helpers

    private func newMemory(_ md: dnnl_memory_desc_t, layer: String) throws -> dnnl_memory_t {
        var md = md
        var memory: dnnl_memory_t?
        try DNNL.check(dnnl_memory_create(&memory, &md, engine, DNNL.allocate), layer: layer, "memory allocation")
        guard let memory else { throw ZooError.engineFailure(layer: layer, reason: "memory allocation returned nothing") }
        resources.keep(memory: memory)
        return memory
    }

    /// An activation buffer: created without storage, which `assignActivationStorage` gives
    /// it once every step is known, sharing storage between tensors whose lifetimes do not
    /// overlap.
    private func newActivation(_ md: dnnl_memory_desc_t, layer: String) throws -> dnnl_memory_t {
        var md = md
        var memory: dnnl_memory_t?
        try DNNL.check(dnnl_memory_create(&memory, &md, engine, nil), layer: layer, "memory creation")
        guard let memory else { throw ZooError.engineFailure(layer: layer, reason: "memory creation returned nothing") }
        resources.keep(memory: memory)
        activationBytes[memory] = dnnl_memory_desc_get_size(&md)
        return memory
    }

    /// A memory over bytes of `buffer` described by `md` (a sub-memory or a reshape of it).
    private func newView(of buffer: dnnl_memory_t, _ md: dnnl_memory_desc_t, layer: String) throws -> dnnl_memory_t {
        var md = md
        var memory: dnnl_memory_t?
        try DNNL.check(dnnl_memory_create(&memory, &md, engine, nil), layer: layer, "view creation")
        guard let memory else { throw ZooError.engineFailure(layer: layer, reason: "view creation returned nothing") }
        resources.keep(memory: memory)
        views[memory] = buffer
        return memory
    }

    /// The activation buffer whose storage `memory` uses (itself unless it is a view).
    private func storageOwner(_ memory: dnnl_memory_t) -> dnnl_memory_t {
        var memory = memory
        while let buffer = views[memory] { memory = buffer }
        return memory
    }

    private func handle(_ memory: dnnl_memory_t, layer: String) throws -> UnsafeMutablePointer<Float> {
        var pointer: UnsafeMutableRawPointer?
        try DNNL.check(dnnl_memory_get_data_handle(memory, &pointer), layer: layer, "data handle")
        guard let pointer else { throw ZooError.engineFailure(layer: layer, reason: "memory has no buffer") }
        return pointer.assumingMemoryBound(to: Float.self)
    }

    /// A buffer holding `data` (plain layout `dims`) reordered into `target`, done now, once.
    /// The reorder reads the Swift array in place, so a large weight is never held three
    /// times over (array, plain copy, blocked copy).
    /// `scales`/`mask` quantize on the way (int8 weights: one scale per output channel).
    private func constantMemory(_ data: [Float], dims: [Int], target: dnnl_memory_desc_t,
                                scales: [Float] = [1], mask: Int32 = 0, layer: String) throws -> dnnl_memory_t {
        var plainMD = try DNNL.desc(dims, DNNL.plainTag(rank: dims.count), layer: layer)
        let placed = try newMemory(target, layer: layer)
        let reorder = try makeReorder(from: plainMD, to: target, scales: scales, mask: mask, layer: layer)
        try data.withUnsafeBytes { bytes in
            // oneDNN takes a mutable handle, but a reorder only reads its source.
            let handle = bytes.baseAddress.map { UnsafeMutableRawPointer(mutating: $0) }
            var view: dnnl_memory_t?
            try DNNL.check(dnnl_memory_create(&view, &plainMD, engine, handle), layer: layer, "weight view")
            guard let view else { throw ZooError.engineFailure(layer: layer, reason: "no weight view") }
            defer { dnnl_memory_destroy(view) }
            let args = [dnnl_exec_arg_t(arg: DNNL.Arg.src, memory: view), dnnl_exec_arg_t(arg: DNNL.Arg.dst, memory: placed)]
            try DNNL.check(dnnl_primitive_execute(reorder, stream, 2, args), layer: layer, "weight reorder")
            try DNNL.check(dnnl_stream_wait(stream), layer: layer, "stream wait")
        }
        return placed
    }

    /// A reorder that also multiplies by `scales` (one for all, or one per index of the
    /// dimensions in `mask`): how values enter and leave int8.
    private func makeReorder(from source: dnnl_memory_desc_t, to target: dnnl_memory_desc_t,
                             scales: [Float] = [1], mask: Int32 = 0, layer: String) throws -> dnnl_primitive_t {
        var source = source, target = target
        var pd: dnnl_primitive_desc_t?
        var attributes: dnnl_primitive_attr_t?
        if scales != [1] {
            try DNNL.check(dnnl_primitive_attr_create(&attributes), layer: layer, "attributes")
            guard let attributes else { throw ZooError.engineFailure(layer: layer, reason: "no attributes") }
            resources.keep(attribute: attributes)
            try DNNL.check(dnnl_primitive_attr_set_output_scales(attributes, Int64(scales.count), mask, scales),
                           layer: layer, "reorder scales")
        }
        try DNNL.check(dnnl_reorder_primitive_desc_create(&pd, &source, engine, &target, engine, attributes),
                       layer: layer, "reorder descriptor")
        guard let pd else { throw ZooError.engineFailure(layer: layer, reason: "no reorder descriptor") }
        resources.keep(descriptor: pd)
        return try makePrimitive(pd, layer: layer)
    }

    private func makePrimitive(_ pd: dnnl_primitive_desc_t, layer: String) throws -> dnnl_primitive_t {
        try resources.primitive(pd, layer: layer)
    }

    private func describe<Descriptor>(_ descriptor: inout Descriptor, attributes: dnnl_primitive_attr_t? = nil,
                                      layer: String, _ what: String) throws -> dnnl_primitive_desc_t {
        try resources.describe(&descriptor, engine: engine, attributes: attributes, layer: layer, what)
    }

    /// The value's buffer in layout `md`, adding a reorder step the first time it is needed.
    /// `scale` is the stored/real ratio wanted (see `Value.scale`): 1 for float32.
    private func converted(_ value: Value, to md: dnnl_memory_desc_t, scale: Float = 1,
                           layer: String) throws -> dnnl_memory_t {
        if DNNL.equal(value.md, md) && value.scale == scale { return value.memory }
        if let cached = conversions[value.memory]?.first(where: { DNNL.equal($0.md, md) && $0.scale == scale }) {
            return cached.memory
        }
        let memory = try newActivation(md, layer: layer)
        let reorder = try makeReorder(from: value.md, to: md, scales: [scale / value.scale], layer: layer)
        steps.append(.primitive(reorder, [dnnl_exec_arg_t(arg: DNNL.Arg.src, memory: value.memory),
                                          dnnl_exec_arg_t(arg: DNNL.Arg.dst, memory: memory)], layer: layer))
        conversions[value.memory, default: []].append((md, scale, memory))
        return memory
    }

    static func isInteger(_ md: dnnl_memory_desc_t) -> Bool { md.data_type == dnnl_u8 || md.data_type == dnnl_s8 }

    /// Quantization levels on each side of zero.
    static func levels(_ type: dnnl_data_type_t) -> Float { type == dnnl_u8 ? 255 : 127 }

    /// The value in float32 (same layout), for layers without int8 kernels.
    private func floatValue(_ value: Value, layer: String) throws -> Value {
        guard Self.isInteger(value.md) else { return value }
        var md = value.md
        md.data_type = dnnl_f32
        let memory = try converted(value, to: md, scale: 1, layer: layer)
        return Value(memory: memory, md: md, shape: value.shape, ownsBuffer: true, scale: 1)
    }

    /// A new float32 buffer holding `value` (same layout), which the caller may overwrite:
    /// unlike `floatValue`, never a cached conversion another reader shares.
    private func floatCopy(_ value: Value, layer: String) throws -> Value {
        var md = value.md
        md.data_type = dnnl_f32
        let memory = try newActivation(md, layer: layer)
        let reorder = try makeReorder(from: value.md, to: md, scales: [1 / value.scale], layer: layer)
        steps.append(.primitive(reorder, [dnnl_exec_arg_t(arg: DNNL.Arg.src, memory: value.memory),
                                          dnnl_exec_arg_t(arg: DNNL.Arg.dst, memory: memory)], layer: layer))
        return Value(memory: memory, md: md, shape: value.shape, ownsBuffer: true, scale: 1)
    }

    /// How an int8 convolution or inner product reads `source`: its own type and scale when it
    /// is already u8/s8, else s8 at the calibrated threshold of `name`; nil when the layer
    /// stays float32 (not int8, or no threshold measured).
    private func int8Input(_ source: Value, name: String) -> (type: dnnl_data_type_t, scale: Float)? {
        guard precision == .int8 else { return nil }
        if Self.isInteger(source.md) { return (source.md.data_type, source.scale) }
        guard let t = thresholds[name] else { return nil }
        return (dnnl_s8, 127 / t)
    }

    /// One scale per output channel (first dimension of the canonical weight): 127 over the
    /// channel's largest |w|.
    static func channelScales(_ weights: [Float], channels: Int) -> [Float] {
        let per = weights.count / max(channels, 1)
        return (0..<channels).map { o in
            var m: Float = 0
            for i in (o * per)..<((o + 1) * per) { m = max(m, abs(weights[i])) }
            return m > 0 && m.isFinite ? 127 / m : 1
        }
    }

    /// Primitive attributes carrying post-ops: an optional in-place accumulation (residual
    /// sum) followed by an optional activation.
    /// Under int8, `outputScales` (per output channel, dimension 1 of the destination) take
    /// the s32 accumulator to the destination's scale, and `sumScale` the old destination.
    private func postOps(activation: Activation?, accumulate: Bool, sumScale: Float = 1,
                         outputScales: [Float]? = nil, layer: String) throws -> dnnl_primitive_attr_t? {
        guard activation != nil || accumulate || outputScales != nil else { return nil }
        var ops: dnnl_post_ops_t?
        try DNNL.check(dnnl_post_ops_create(&ops), layer: layer, "post-ops")
        guard let ops else { return nil }
        resources.keep(postOps: ops)
        if accumulate { try DNNL.check(dnnl_post_ops_append_sum(ops, sumScale), layer: layer, "sum post-op") }
        if let activation {
            try DNNL.check(dnnl_post_ops_append_eltwise(ops, 1, Self.algorithm(activation), 0, 0),
                           layer: layer, "activation post-op")
        }
        var attributes: dnnl_primitive_attr_t?
        try DNNL.check(dnnl_primitive_attr_create(&attributes), layer: layer, "attributes")
        guard let attributes else { return nil }
        resources.keep(attribute: attributes)
        try DNNL.check(dnnl_primitive_attr_set_post_ops(attributes, ops), layer: layer, "set post-ops")
        if let outputScales {
            try DNNL.check(dnnl_primitive_attr_set_output_scales(attributes, Int64(outputScales.count),
                                                                 outputScales.count == 1 ? 0 : 1 << 1, outputScales),
                           layer: layer, "output scales")
        }
        return attributes
    }

    private static func algorithm(_ activation: Activation) -> dnnl_alg_kind_t {
        switch activation {
        case .relu: return dnnl_eltwise_relu
        case .tanh: return dnnl_eltwise_tanh
        }
    }

    private func appendEltwise(_ activation: Activation, on value: Value, layer: String) throws {
        var md = value.md
        var descriptor = dnnl_eltwise_desc_t()
        try DNNL.check(dnnl_eltwise_forward_desc_init(&descriptor, dnnl_forward_inference,
                                                      Self.algorithm(activation), &md, 0, 0),
                       layer: layer, "activation descriptor")
        let pd = try describe(&descriptor, layer: layer, "activation")
        let primitive = try makePrimitive(pd, layer: layer)
        steps.append(.primitive(primitive, [dnnl_exec_arg_t(arg: DNNL.Arg.src, memory: value.memory),
                                            dnnl_exec_arg_t(arg: DNNL.Arg.dst, memory: value.memory)], layer: layer))
    }

    /// A descriptor whose layout the primitive chooses, in float32 or in the compute type.
    private func anyDesc(_ dims: [Int], computeType: Bool = false, layer: String) throws -> dnnl_memory_desc_t {
        try DNNL.desc(dims, dnnl_format_tag_any, type: computeType ? activationType : dnnl_f32, layer: layer)
    }

    /// A convolution's source or destination: 16-channel blocked when `blockedActivations`
    /// and the channels fill whole blocks, else the primitive's choice.
    private func activationDesc(_ dims: [Int], layer: String) throws -> dnnl_memory_desc_t {
        if blockedActivations && dims.count == 4 && dims[1] % 16 == 0 {
            return try DNNL.desc(dims, dnnl_nChw16c, type: activationType, layer: layer)
        }
        return try anyDesc(dims, computeType: true, layer: layer)
    }

    /// The slice of a 4-d tensor `md` holding channels from `channelOffset` on.
    private func subMemory(of md: dnnl_memory_desc_t, dims: [Int], channelOffset: Int,
                           layer: String) throws -> dnnl_memory_desc_t {
        var parent = md
        var slice = dnnl_memory_desc_t()
        let sliceDims = dims.map { Int64($0) }
        let offsets: [Int64] = [0, Int64(channelOffset), 0, 0]
        try DNNL.check(dnnl_memory_desc_init_submemory(&slice, &parent, sliceDims, offsets), layer: layer, "concat slice")
        return slice
    }

    /// The output buffer of an in-place concat (see `planInPlaceConcats`), made by its first
    /// branch: blocked or channels-last, the layouts whose channel slices kernels can write.
    private func concatOutput(_ concat: String, batch n: Int, layer: String) throws -> Value {
        if let made = concatOutputs[concat] { return made }
        guard let resolved = net.layers.first(where: { $0.layer.name == concat }) else {
            throw ZooError.engineFailure(layer: layer, reason: "concat '\(concat)' is not in the network")
        }
        let shape = resolved.output
        let md = try DNNL.desc([n, shape.c, shape.h, shape.w], blockedActivations ? dnnl_nChw16c : dnnl_nhwc,
                               type: activationType, layer: concat)
        let made = Value(memory: try newActivation(md, layer: concat), md: md, shape: shape, ownsBuffer: true)
        concatOutputs[concat] = made
        return made
    }

    /// Whether a convolution runs oneDNN's Winograd F(4x4, 3x3) kernel: float32 3x3
    /// stride-1 convolutions without groups (the shapes it has), unless direct convolutions
    /// were asked for. It multiplies 2.25x less than a direct convolution; per layer on this
    /// machine's AVX-512 cores (`Tools/bench_engine.py --per-op`, oneDNN's timings) it ran
    /// 0.32-0.65x the direct kernels' time on feature maps of 14x14 and more at batch 8
    /// (0.37-0.83x at batch 1), 0.6-0.8x on 7x7 maps with 512 channels, and lost on the two
    /// kinds of layer it is kept off: an RGB input (3 channels padded to a block of 16: 2.1x
    /// slower) and small layers on 7x7 maps (GoogLeNet's last branches: 1.0-1.2x). Logits
    /// stay within about 1e-6 (relative) of the direct kernels'.
    private func usesWinograd(_ spec: ConvSpec, inputChannels: Int, output: Shape3) -> Bool {
        guard convolutions == .winograd, precision == .fp32, spec.groups == 1,
              spec.kernel == Size2(3), spec.stride == Size2(1), inputChannels >= 16 else { return false }
        return output.h * output.w >= 14 * 14 || inputChannels * spec.outChannels >= 256 * 256
    }

    /// `md` itself when its layout is settled, else the 16-channel blocked layout.
    private func blocked(_ md: dnnl_memory_desc_t, layer: String) throws -> dnnl_memory_desc_t {
        guard md.format_kind == dnnl_format_kind_any else { return md }
        return try DNNL.desc(DNNL.dims(of: md), dnnl_nChw16c, type: md.data_type, layer: layer)
    }

    private func fourDimensional(_ value: Value, layer: String) throws -> [Int] {
        let dims = DNNL.dims(of: value.md)
        guard dims.count == 4 else {
            throw ZooError.engineFailure(layer: layer, reason: "needs a [N, C, H, W] input, got a \(dims.count)-d tensor \(dims)")
        }
        return dims
    }

    // MARK: - Convolution

    /// Canonical weights and bias, with a following BatchNorm folded in:
    /// w' = w * gamma / sqrt(var + eps), b' = (b - mean) * gamma / sqrt(var + eps) + beta.
    private func convParameters(_ resolved: ResolvedLayer, _ spec: ConvSpec,
                                foldingInto bn: ResolvedLayer?) throws -> ([Float], [Float]) {
        var weights = try Network.parameter(self.weights, resolved, .weight).data
        var bias = spec.bias ? try Network.parameter(self.weights, resolved, .bias).data
                             : [Float](repeating: 0, count: spec.outChannels)
        guard let bn, case .batchNorm(let epsilon) = bn.layer.op else { return (weights, bias) }
        let gamma = try Network.parameter(self.weights, bn, .weight).data
        let beta = try Network.parameter(self.weights, bn, .bias).data
        let mean = try Network.parameter(self.weights, bn, .runningMean).data
        let variance = try Network.parameter(self.weights, bn, .runningVar).data
        let perChannel = weights.count / spec.outChannels
        for o in 0..<spec.outChannels {
            let scale = Double(gamma[o]) / (Double(variance[o]) + epsilon).squareRoot()
            for i in (o * perChannel)..<((o + 1) * perChannel) { weights[i] = Float(Double(weights[i]) * scale) }
            bias[o] = Float((Double(bias[o]) - Double(mean[o])) * scale + Double(beta[o]))
        }
        return (weights, bias)
    }

    /// `sourceName` and `outputName` name the tensors whose int8 thresholds apply (the add's
    /// output when accumulating into `target`).
    private func buildConv(_ resolved: ResolvedLayer, _ spec: ConvSpec, source: Value, sourceName: String,
                           output: Shape3, outputName: String,
                           weights: [Float], bias: [Float], activation: Activation?,
                           accumulateInto target: Value?,
                           concatSlot: (concat: String, channelOffset: Int)? = nil) throws -> Value {
        let name = resolved.layer.name
        let input = try fourDimensional(source, layer: name)
        let (n, c) = (input[0], input[1])
        let g = spec.groups
        let plainWeightDims = g > 1
            ? [g, spec.outChannels / g, c / g, spec.kernel.h, spec.kernel.w]
            : [spec.outChannels, c, spec.kernel.h, spec.kernel.w]
        let outputDims = [n, output.c, output.h, output.w]
        var srcMD = try activationDesc(input, layer: name)
        var weightMD = try anyDesc(plainWeightDims, computeType: true, layer: name)
        var biasMD = try anyDesc([spec.outChannels], layer: name)
        // int8: s8 weights with a scale per output channel, the source as u8/s8 at its
        // scale, the bias pre-multiplied into the accumulator's scale (oneDNN adds it before
        // the output scales), the output scales taking the accumulator to the destination's.
        let quantized = floatLayers.contains(name) ? nil : int8Input(source, name: sourceName)
        var target = target
        if quantized == nil, let integer = target, Self.isInteger(integer.md) {
            // A convolution kept out of int8 cannot add into an int8 shortcut: the sum is
            // made in a float32 copy of it.
            target = try floatCopy(integer, layer: name)
        }
        var dstMD = try target?.md ?? activationDesc(outputDims, layer: name)
        var srcScale: Float = 1, dstScale: Float = 1, sumScale: Float = 1
        var weightScales: [Float] = [1]
        var bias = bias
        var outputScales: [Float]?
        if let quantized {
            srcScale = quantized.scale
            weightScales = Self.channelScales(weights, channels: spec.outChannels)
            srcMD = try DNNL.desc(input, dnnl_format_tag_any, type: quantized.type, layer: name)
            weightMD = try DNNL.desc(plainWeightDims, dnnl_format_tag_any, type: dnnl_s8, layer: name)
            if let target {
                if Self.isInteger(target.md) {
                    if target.md.data_type == dnnl_u8 && activation != .relu {
                        throw ZooError.engineFailure(layer: name, reason: "a u8 sum without ReLU would clip negatives")
                    }
                    dstScale = thresholds[outputName].map { Self.levels(target.md.data_type) / $0 } ?? target.scale
                    sumScale = dstScale / target.scale
                }
            } else if let t = thresholds[outputName] {
                let type = activation == .relu ? dnnl_u8 : dnnl_s8
                dstScale = Self.levels(type) / t
                dstMD = try DNNL.desc([n, output.c, output.h, output.w], dnnl_format_tag_any, type: type, layer: name)
            } else {
                dstMD = try anyDesc([n, output.c, output.h, output.w], layer: name)
            }
            for o in 0..<spec.outChannels { bias[o] *= srcScale * weightScales[o] }
            outputScales = weightScales.map { dstScale / (srcScale * $0) }
        }
        let strides: [Int64] = [Int64(spec.stride.h), Int64(spec.stride.w)]
        let padBefore: [Int64] = [Int64(spec.padding.top), Int64(spec.padding.left)]
        let padAfter: [Int64] = [Int64(spec.padding.bottom), Int64(spec.padding.right)]
        let attributes = try postOps(activation: activation, accumulate: target != nil, sumScale: sumScale,
                                     outputScales: outputScales, layer: name)
        let winograd = quantized == nil && usesWinograd(spec, inputChannels: c, output: output)
        func describeConvolution(writing dstMD: dnnl_memory_desc_t) throws -> dnnl_primitive_desc_t {
            // oneDNN's Winograd kernel reads and writes the 16-channel blocked layout only;
            // where it refuses (a destination it cannot write), the direct kernels run.
            if winograd, let pd = try? describeConvolution(dnnl_convolution_winograd, source: blocked(srcMD, layer: name),
                                                           destination: blocked(dstMD, layer: name)) {
                return pd
            }
            return try describeConvolution(dnnl_convolution_direct, source: srcMD, destination: dstMD)
        }
        func describeConvolution(_ algorithm: dnnl_alg_kind_t, source: dnnl_memory_desc_t,
                                 destination: dnnl_memory_desc_t) throws -> dnnl_primitive_desc_t {
            var (srcMD, dstMD) = (source, destination)
            var descriptor = dnnl_convolution_desc_t()
            try DNNL.check(dnnl_convolution_forward_desc_init(&descriptor, dnnl_forward_inference, algorithm,
                                                              &srcMD, &weightMD, &biasMD, &dstMD,
                                                              strides, padBefore, padAfter),
                           layer: name, "convolution descriptor")
            return try describe(&descriptor, attributes: attributes, layer: name, "convolution")
        }
        // A concat branch writes its slice of the concat's output when a fast kernel can
        // write that strided layout; otherwise it writes its own buffer and the concat copies.
        var slice: (pd: dnnl_primitive_desc_t, memory: dnnl_memory_t)?
        if target == nil, quantized == nil, let concatSlot {
            let whole = try concatOutput(concatSlot.concat, batch: n, layer: name)
            let sliceMD = try subMemory(of: whole.md, dims: outputDims, channelOffset: concatSlot.channelOffset, layer: name)
            if let pd = try? describeConvolution(writing: sliceMD), !DNNL.implementationName(pd).hasPrefix("ref") {
                slice = (pd, try newView(of: whole.memory, sliceMD, layer: name))
            }
        }
        let pd = try slice?.pd ?? describeConvolution(writing: dstMD)
        kernels.append((name, DNNL.implementationName(pd)))
        guard let chosenSrc = DNNL.queryMD(pd, dnnl_query_src_md), let chosenWeights = DNNL.queryMD(pd, dnnl_query_weights_md),
              let chosenBias = DNNL.queryMD(pd, dnnl_query_weights_md, 1), let chosenDst = DNNL.queryMD(pd, dnnl_query_dst_md) else {
            throw ZooError.engineFailure(layer: name, reason: "convolution did not report its layouts")
        }
        let srcMemory = try converted(source, to: chosenSrc, scale: srcScale, layer: name)
        let weightMemory = try constantMemory(weights, dims: plainWeightDims, target: chosenWeights, scales: weightScales,
                                              mask: weightScales.count == 1 ? 0 : (g > 1 ? 3 : 1), layer: name)
        let biasMemory = try constantMemory(bias, dims: [spec.outChannels], target: chosenBias, layer: name)
        let dstMemory = try target?.memory ?? slice?.memory ?? newActivation(chosenDst, layer: name)
        let primitive = try makePrimitive(pd, layer: name)
        steps.append(.primitive(primitive, [
            dnnl_exec_arg_t(arg: DNNL.Arg.src, memory: srcMemory),
            dnnl_exec_arg_t(arg: DNNL.Arg.weights, memory: weightMemory),
            dnnl_exec_arg_t(arg: DNNL.Arg.bias, memory: biasMemory),
            dnnl_exec_arg_t(arg: DNNL.Arg.dst, memory: dstMemory),
        ], layer: name))
        return Value(memory: dstMemory, md: chosenDst, shape: output, ownsBuffer: true, scale: dstScale)
    }

    // MARK: - Residual add

    private func buildAdd(_ resolved: ResolvedLayer, index: Int) throws -> Value {
        let layer = resolved.layer
        let name = layer.name
        if layer.inputs.count == 2 {
            let pendingNames = layer.inputs.filter { deferred[$0] != nil }
            // Build every deferred operand except the one that will accumulate.
            var accumulating: (String, DeferredConv)?
            for operand in pendingNames {
                guard let conv = deferred[operand] else { continue }
                if accumulating == nil { accumulating = (operand, conv); continue }
                values[operand] = try buildDeferred(conv, outputName: operand, accumulateInto: nil, activation: nil)
                try probe(operand)
                deferred[operand] = nil
            }
            if let (operand, conv) = accumulating {
                deferred[operand] = nil
                let otherName = layer.inputs[0] == operand ? layer.inputs[1] : layer.inputs[0]
                let other = try value(otherName, for: name)
                // A convolution that cannot write the other operand's layout (oneDNN refuses
                // the descriptor before anything is recorded) falls back to a separate add.
                if canOverwrite(otherName, other, at: index, readBy: conv),
                   var sum = try? buildDeferred(conv, outputName: name, accumulateInto: other,
                                                activation: layer.activation) {
                    // The other operand's buffer now holds the sum: earlier reorders of it are stale.
                    conversions[other.memory] = nil
                    sum.shape = resolved.output
                    return sum
                }
                values[operand] = try buildDeferred(conv, outputName: operand, accumulateInto: nil, activation: nil)
                try probe(operand)
            }
        }
        let sources = try layer.inputs.map { try floatValue(try value($0, for: name), layer: name) }
        return try buildElementwiseSum(resolved, sources: sources)
    }

    /// Whether the residual conv may write its sum into `other`'s buffer: nobody reads that
    /// buffer after the add, it is a real layer output (not the input or a view), and the conv
    /// does not read it itself.
    private func canOverwrite(_ otherName: String, _ other: Value, at index: Int, readBy conv: DeferredConv) -> Bool {
        guard other.ownsBuffer, DNNL.dims(of: other.md).count == 4, conv.source != otherName else { return false }
        if let source = values[conv.source], source.memory == other.memory { return false }
        for reader in readers[otherName] ?? [] {
            let readerLayer = net.layers[reader].layer
            switch readerLayer.op {
            case .flatten, .dropout, .adaptiveAvgPool: return false  // views would outlive the add
            default: break
            }
            guard let position = runsAt[readerLayer.name], position <= index else { return false }
        }
        return true
    }

    private func buildDeferred(_ conv: DeferredConv, outputName: String, accumulateInto target: Value?,
                               activation: Activation?) throws -> Value {
        let source = try value(conv.source, for: conv.layer.layer.name)
        return try buildConv(conv.layer, conv.spec, source: source, sourceName: conv.source, output: conv.layer.output,
                             outputName: outputName, weights: conv.weights, bias: conv.bias, activation: activation,
                             accumulateInto: target)
    }

    private func buildElementwiseSum(_ resolved: ResolvedLayer, sources: [Value]) throws -> Value {
        let name = resolved.layer.name
        let first = sources[0]
        let attributes = try postOps(activation: resolved.layer.activation, accumulate: false, layer: name)
        if sources.count == 2 {
            var src0 = first.md
            var src1 = first.md
            var dst = try anyDesc(DNNL.dims(of: first.md), layer: name)
            var descriptor = dnnl_binary_desc_t()
            try DNNL.check(dnnl_binary_desc_init(&descriptor, dnnl_binary_add, &src0, &src1, &dst),
                           layer: name, "add descriptor")
            let pd = try describe(&descriptor, attributes: attributes, layer: name, "add")
            guard let chosenDst = DNNL.queryMD(pd, dnnl_query_dst_md) else {
                throw ZooError.engineFailure(layer: name, reason: "add did not report its layout")
            }
            let second = try converted(sources[1], to: first.md, layer: name)
            let dstMemory = try newActivation(chosenDst, layer: name)
            steps.append(.primitive(try makePrimitive(pd, layer: name), [
                dnnl_exec_arg_t(arg: DNNL.Arg.src, memory: first.memory),
                dnnl_exec_arg_t(arg: DNNL.Arg.src1, memory: second),
                dnnl_exec_arg_t(arg: DNNL.Arg.dst, memory: dstMemory),
            ], layer: name))
            return Value(memory: dstMemory, md: chosenDst, shape: resolved.output, ownsBuffer: true)
        }
        // Three or more operands: oneDNN's sum primitive, activation as a separate step.
        var mds = sources.map { _ in first.md }
        let scales = [Float](repeating: 1, count: sources.count)
        var pd: dnnl_primitive_desc_t?
        var dst = first.md
        try DNNL.check(dnnl_sum_primitive_desc_create(&pd, &dst, Int32(sources.count), scales, &mds, nil, engine),
                       layer: name, "sum descriptor")
        guard let pd else { throw ZooError.engineFailure(layer: name, reason: "no sum descriptor") }
        resources.keep(descriptor: pd)
        var args: [dnnl_exec_arg_t] = []
        for (i, source) in sources.enumerated() {
            args.append(dnnl_exec_arg_t(arg: DNNL.Arg.multipleSrc + Int32(i),
                                        memory: try converted(source, to: first.md, layer: name)))
        }
        let dstMemory = try newActivation(first.md, layer: name)
        args.append(dnnl_exec_arg_t(arg: DNNL.Arg.dst, memory: dstMemory))
        steps.append(.primitive(try makePrimitive(pd, layer: name), args, layer: name))
        let result = Value(memory: dstMemory, md: first.md, shape: resolved.output, ownsBuffer: true)
        if let activation = resolved.layer.activation { try appendEltwise(activation, on: result, layer: name) }
        return result
    }

    // MARK: - Other layers

    private func buildBatchNorm(_ resolved: ResolvedLayer, epsilon: Double, source: Value) throws -> Value {
        let name = resolved.layer.name
        _ = try fourDimensional(source, layer: name)
        var md = source.md
        var flags = dnnl_use_global_stats.rawValue | dnnl_use_scale.rawValue | dnnl_use_shift.rawValue
        if resolved.layer.activation == .relu { flags |= dnnl_fuse_norm_relu.rawValue }
        var descriptor = dnnl_batch_normalization_desc_t()
        try DNNL.check(dnnl_batch_normalization_forward_desc_init(&descriptor, dnnl_forward_inference, &md,
                                                                  Float(epsilon), UInt32(flags)),
                       layer: name, "batch normalization descriptor")
        let pd = try describe(&descriptor, layer: name, "batch normalization")
        let c = source.shape.c
        let vectorMD = try DNNL.desc([c], dnnl_a, layer: name)
        func vector(_ role: ParameterRole) throws -> dnnl_memory_t {
            try constantMemory(try Network.parameter(weights, resolved, role).data, dims: [c], target: vectorMD, layer: name)
        }
        let dstMemory = try newActivation(source.md, layer: name)
        steps.append(.primitive(try makePrimitive(pd, layer: name), [
            dnnl_exec_arg_t(arg: DNNL.Arg.src, memory: source.memory),
            dnnl_exec_arg_t(arg: DNNL.Arg.mean, memory: try vector(.runningMean)),
            dnnl_exec_arg_t(arg: DNNL.Arg.variance, memory: try vector(.runningVar)),
            dnnl_exec_arg_t(arg: DNNL.Arg.scale, memory: try vector(.weight)),
            dnnl_exec_arg_t(arg: DNNL.Arg.shift, memory: try vector(.bias)),
            dnnl_exec_arg_t(arg: DNNL.Arg.dst, memory: dstMemory),
        ], layer: name))
        return Value(memory: dstMemory, md: source.md, shape: resolved.output, ownsBuffer: true)
    }

    private func buildPool(_ resolved: ResolvedLayer, _ spec: PoolSpec, max isMax: Bool, source: Value) throws -> Value {
        let name = resolved.layer.name
        let input = try fourDimensional(source, layer: name)
        let (h, w) = (input[2], input[3])
        let output = resolved.output
        // Ceil mode is expressed as extra bottom/right padding: just enough for the last
        // window the spec's rule keeps.
        let padBottom = Swift.max(spec.padding.bottom, (output.h - 1) * spec.stride.h + spec.kernel.h - h - spec.padding.top)
        let padRight = Swift.max(spec.padding.right, (output.w - 1) * spec.stride.w + spec.kernel.w - w - spec.padding.left)
        let overhang = padBottom > spec.padding.bottom || padRight > spec.padding.right
        var algorithm = dnnl_pooling_max
        if !isMax {
            let declaredPadding = spec.padding != .zero
            if spec.countIncludePad && overhang && declaredPadding {
                // PyTorch and Caffe count declared padding but not the ceil overhang in the
                // divisor; oneDNN can only count both or neither.
                return try hostLayer(resolved, source: source) { ReferenceEngine.avgPool($0, spec) }
            }
            // Without declared padding, "include padding" means "the input positions read".
            algorithm = spec.countIncludePad && declaredPadding ? dnnl_pooling_avg_include_padding
                                                                : dnnl_pooling_avg_exclude_padding
        }
        var srcMD = source.md
        // int8 pools read and write the source's type at the source's scale (and so do the
        // float32 or bfloat16 islands of an int8 network).
        var dstMD = Self.isInteger(source.md) || precision == .int8
            ? try DNNL.desc([input[0], output.c, output.h, output.w], dnnl_format_tag_any, type: source.md.data_type, layer: name)
            : try anyDesc([input[0], output.c, output.h, output.w], computeType: true, layer: name)
        let strides: [Int64] = [Int64(spec.stride.h), Int64(spec.stride.w)]
        let kernel: [Int64] = [Int64(spec.kernel.h), Int64(spec.kernel.w)]
        let padBefore: [Int64] = [Int64(spec.padding.top), Int64(spec.padding.left)]
        let padAfter: [Int64] = [Int64(padBottom), Int64(padRight)]
        var descriptor = dnnl_pooling_desc_t()
        try DNNL.check(dnnl_pooling_forward_desc_init(&descriptor, dnnl_forward_inference, algorithm, &srcMD, &dstMD,
                                                      strides, kernel, padBefore, padAfter),
                       layer: name, "pooling descriptor")
        let pd = try describe(&descriptor, layer: name, "pooling")
        var pooled = try appendOneToOne(pd, source: source, shape: output, layer: name, "pooling")
        pooled.scale = source.scale
        return pooled
    }

    private func buildAdaptivePool(_ resolved: ResolvedLayer, _ size: Size2, source: Value) throws -> Value {
        let name = resolved.layer.name
        let input = try fourDimensional(source, layer: name)
        let (h, w) = (input[2], input[3])
        if h == size.h && w == size.w {
            var view = source
            view.ownsBuffer = false
            return view
        }
        if h % size.h == 0 && w % size.w == 0 {
            // Even split: every window is the same plain average pool.
            let spec = PoolSpec(kernel: Size2(h / size.h, w / size.w), stride: Size2(h / size.h, w / size.w),
                                padding: .zero, ceilMode: false, countIncludePad: false)
            return try buildPool(resolved, spec, max: false, source: source)
        }
        return try hostLayer(resolved, source: source) { ReferenceEngine.adaptiveAvgPool($0, size) }
    }

    private func buildLRN(_ resolved: ResolvedLayer, _ spec: LRNSpec, source: Value) throws -> Value {
        let name = resolved.layer.name
        _ = try fourDimensional(source, layer: name)
        var md = source.md
        var descriptor = dnnl_lrn_desc_t()
        // oneDNN divides alpha by local_size, as Caffe and the spec do.
        try DNNL.check(dnnl_lrn_forward_desc_init(&descriptor, dnnl_forward_inference, dnnl_lrn_across_channels, &md,
                                                  Int64(spec.size), Float(spec.alpha), Float(spec.beta), Float(spec.k)),
                       layer: name, "LRN descriptor")
        let pd = try describe(&descriptor, layer: name, "LRN")
        return try appendOneToOne(pd, source: source, shape: resolved.output, layer: name, "LRN")
    }

    private func buildInnerProduct(_ resolved: ResolvedLayer, source: Value, sourceName: String) throws -> Value {
        let name = resolved.layer.name
        guard case .linear(let outFeatures, let hasBias) = resolved.layer.op else {
            throw ZooError.engineFailure(layer: name, reason: "not a linear layer")
        }
        let input = DNNL.dims(of: source.md)
        let n = input[0]
        // The classifier computes in float32: its logits are what users compare and rank.
        let compute = resolved.layer.name != net.architecture.headLayer
        // int8 hidden layers (VGG's and AlexNet's fc6/fc7: a quarter of the weight bytes to
        // stream), quantized as convolutions are; the classifier stays float32.
        let quantized = compute && !floatLayers.contains(name) ? int8Input(source, name: sourceName) : nil
        let srcScale = quantized?.scale ?? 1
        let srcType = quantized?.type ?? (compute ? activationType : dnnl_f32)
        // A 4-d source is read through a plain NCHW copy viewed as [N, C*H*W]: flattened in
        // C,H,W order, the canonical order of the weight's columns. oneDNN runs a 4-d inner
        // product as a plain GEMM and a 2-d one with its brgemm kernels, about twice as fast
        // on AlexNet's fc6 (256x6x6 inputs).
        let flatDims = input.count == 4 ? [n, input[1] * input[2] * input[3]] : input
        var srcMD = try DNNL.desc(flatDims, input.count == 4 ? dnnl_ab : dnnl_format_tag_any, type: srcType, layer: name)
        var flattened: dnnl_memory_t?
        if input.count == 4 {
            let plain = try DNNL.desc(input, dnnl_nchw, type: srcType, layer: name)
            flattened = try newView(of: try converted(source, to: plain, scale: srcScale, layer: name), srcMD, layer: name)
        }
        let weightDims = [outFeatures, flatDims[1]]
        var weightMD = try DNNL.desc(weightDims, dnnl_format_tag_any, type: quantized == nil ? srcType : dnnl_s8, layer: name)
        if n == 1 && srcType == dnnl_f32 && quantized == nil {
            // One image is a matrix-vector product, bound by streaming the weights: rows
            // stored one output after another let oneDNN's GEMM kernel read them in order,
            // 1.3-1.5x faster than the blocked layout its brgemm kernel wants (AlexNet's fc6:
            // 4.7 against 6-7 ms; onnxruntime 4.5). From two images on, brgemm is faster.
            weightMD = try DNNL.desc(weightDims, dnnl_ab, type: srcType, layer: name)
        }
        var biasMD = try anyDesc([outFeatures], layer: name)
        var dstMD = try anyDesc([n, outFeatures], computeType: compute, layer: name)
        var weights = try Network.parameter(self.weights, resolved, .weight).data
        var bias = hasBias ? try Network.parameter(self.weights, resolved, .bias).data
                           : [Float](repeating: 0, count: outFeatures)
        var dstScale: Float = 1
        var weightScales: [Float] = [1]
        var outputScales: [Float]?
        if quantized != nil {
            weightScales = Self.channelScales(weights, channels: outFeatures)
            if let t = thresholds[name] {
                let type = resolved.layer.activation == .relu ? dnnl_u8 : dnnl_s8
                dstScale = Self.levels(type) / t
                dstMD = try DNNL.desc([n, outFeatures], dnnl_format_tag_any, type: type, layer: name)
            }
            for o in 0..<outFeatures { bias[o] *= srcScale * weightScales[o] }
            outputScales = weightScales.map { dstScale / (srcScale * $0) }
        }
        var descriptor = dnnl_inner_product_desc_t()
        try DNNL.check(dnnl_inner_product_forward_desc_init(&descriptor, dnnl_forward_inference,
                                                            &srcMD, &weightMD, &biasMD, &dstMD),
                       layer: name, "inner product descriptor")
        let attributes = try postOps(activation: resolved.layer.activation, accumulate: false,
                                     outputScales: outputScales, layer: name)
        let pd = try describe(&descriptor, attributes: attributes, layer: name, "inner product")
        kernels.append((name, DNNL.implementationName(pd)))
        guard let chosenSrc = DNNL.queryMD(pd, dnnl_query_src_md), let chosenWeights = DNNL.queryMD(pd, dnnl_query_weights_md),
              let chosenBias = DNNL.queryMD(pd, dnnl_query_weights_md, 1), let chosenDst = DNNL.queryMD(pd, dnnl_query_dst_md) else {
            throw ZooError.engineFailure(layer: name, reason: "inner product did not report its layouts")
        }
        let srcMemory = try flattened ?? converted(source, to: chosenSrc, scale: srcScale, layer: name)
        let weightMemory = try constantMemory(weights, dims: weightDims, target: chosenWeights, scales: weightScales,
                                              mask: weightScales.count == 1 ? 0 : 1, layer: name)
        weights = []
        let biasMemory = try constantMemory(bias, dims: [outFeatures], target: chosenBias, layer: name)
        let dstMemory = try newActivation(chosenDst, layer: name)
        steps.append(.primitive(try makePrimitive(pd, layer: name), [
            dnnl_exec_arg_t(arg: DNNL.Arg.src, memory: srcMemory),
            dnnl_exec_arg_t(arg: DNNL.Arg.weights, memory: weightMemory),
            dnnl_exec_arg_t(arg: DNNL.Arg.bias, memory: biasMemory),
            dnnl_exec_arg_t(arg: DNNL.Arg.dst, memory: dstMemory),
        ], layer: name))
        return Value(memory: dstMemory, md: chosenDst, shape: resolved.output, ownsBuffer: true, scale: dstScale)
    }

    private func buildConcat(_ resolved: ResolvedLayer, sources: [Value]) throws -> Value {
        let name = resolved.layer.name
        for source in sources { _ = try fourDimensional(source, layer: name) }
        if let whole = concatOutputs[name] {
            // Branches already wrote their slices; one that could not is copied into it.
            for (input, source) in zip(resolved.layer.inputs, sources) where views[source.memory] != whole.memory {
                guard let slot = concatSlots[input] else {
                    throw ZooError.engineFailure(layer: name, reason: "input '\(input)' has no slice in the output")
                }
                let sliceMD = try subMemory(of: whole.md, dims: DNNL.dims(of: source.md), channelOffset: slot.channelOffset,
                                            layer: name)
                let slice = try newView(of: whole.memory, sliceMD, layer: name)
                let reorder = try makeReorder(from: source.md, to: sliceMD, layer: name)
                steps.append(.primitive(reorder, [dnnl_exec_arg_t(arg: DNNL.Arg.src, memory: source.memory),
                                                  dnnl_exec_arg_t(arg: DNNL.Arg.dst, memory: slice)], layer: name))
            }
            return whole
        }
        var sources = sources
        var scale: Float = 1
        // oneDNN concatenates bytes: every int8 source must share one type and one scale
        // (branches read only by the concat already do, see `plan`); a float32 source makes
        // the whole concat float32.
        if sources.allSatisfy({ Self.isInteger($0.md) }) {
            let type = sources.allSatisfy { $0.md.data_type == dnnl_u8 } ? dnnl_u8 : dnnl_s8
            scale = thresholds[name].map { Self.levels(type) / $0 } ?? sources[0].scale
            sources = try sources.map { source in
                var md = source.md
                md.data_type = type
                let memory = try converted(source, to: md, scale: scale, layer: name)
                return Value(memory: memory, md: md, shape: source.shape, ownsBuffer: true, scale: scale)
            }
        } else {
            sources = try sources.map { try floatValue($0, layer: name) }
        }
        var mds = sources.map(\.md)
        var pd: dnnl_primitive_desc_t?
        try DNNL.check(dnnl_concat_primitive_desc_create(&pd, nil, Int32(sources.count), 1, &mds, nil, engine),
                       layer: name, "concat descriptor")
        guard let pd else { throw ZooError.engineFailure(layer: name, reason: "no concat descriptor") }
        resources.keep(descriptor: pd)
        guard let chosenDst = DNNL.queryMD(pd, dnnl_query_dst_md) else {
            throw ZooError.engineFailure(layer: name, reason: "concat did not report its layout")
        }
        var args = sources.enumerated().map {
            dnnl_exec_arg_t(arg: DNNL.Arg.multipleSrc + Int32($0.offset), memory: $0.element.memory)
        }
        let dstMemory = try newActivation(chosenDst, layer: name)
        args.append(dnnl_exec_arg_t(arg: DNNL.Arg.dst, memory: dstMemory))
        steps.append(.primitive(try makePrimitive(pd, layer: name), args, layer: name))
        return Value(memory: dstMemory, md: chosenDst, shape: resolved.output, ownsBuffer: true, scale: scale)
    }

    private func buildSoftmax(_ resolved: ResolvedLayer, source: Value) throws -> Value {
        let name = resolved.layer.name
        var md = source.md
        var descriptor = dnnl_softmax_desc_t()
        try DNNL.check(dnnl_softmax_forward_desc_init(&descriptor, dnnl_forward_inference, &md, 1),
                       layer: name, "softmax descriptor")
        let pd = try describe(&descriptor, layer: name, "softmax")
        return try appendOneToOne(pd, source: source, shape: resolved.output, layer: name, "softmax")
    }

    /// Appends a primitive that reads `source` and writes a new activation in the layout
    /// its descriptor chose: the common tail of pooling, LRN and softmax.
    private func appendOneToOne(_ pd: dnnl_primitive_desc_t, source: Value, shape: Shape3, layer name: String,
                                _ what: String) throws -> Value {
        guard let chosenDst = DNNL.queryMD(pd, dnnl_query_dst_md) else {
            throw ZooError.engineFailure(layer: name, reason: "\(what) did not report its layout")
        }
        let dstMemory = try newActivation(chosenDst, layer: name)
        steps.append(.primitive(try makePrimitive(pd, layer: name), [
            dnnl_exec_arg_t(arg: DNNL.Arg.src, memory: source.memory),
            dnnl_exec_arg_t(arg: DNNL.Arg.dst, memory: dstMemory),
        ], layer: name))
        return Value(memory: dstMemory, md: chosenDst, shape: shape, ownsBuffer: true)
    }

    /// A layer computed in Swift on plain NCHW buffers (rare shapes oneDNN cannot express).
    private func hostLayer(_ resolved: ResolvedLayer, source: Value,
                           _ body: @escaping (Tensor) -> Tensor) throws -> Value {
        let name = resolved.layer.name
        let input = try fourDimensional(source, layer: name)
        let plainIn = try DNNL.desc(input, dnnl_nchw, layer: name)
        let inMemory = try converted(source, to: plainIn, layer: name)
        let output = resolved.output
        let outDims = [input[0], output.c, output.h, output.w]
        let plainOut = try DNNL.desc(outDims, dnnl_nchw, layer: name)
        let outMemory = try newActivation(plainOut, layer: name)
        let inCount = input.reduce(1, *)
        let outCount = outDims.reduce(1, *)
        steps.append(.host(layer: name, input: inMemory, output: outMemory) { inPointer, outPointer in
            let x = Tensor(shape: input, data: Array(UnsafeBufferPointer(start: inPointer, count: inCount)))
            let y = body(x)
            y.data.withUnsafeBufferPointer { result in
                if let base = result.baseAddress, result.count == outCount { outPointer.update(from: base, count: outCount) }
            }
        })
        return Value(memory: outMemory, md: plainOut, shape: output, ownsBuffer: true)
    }
}
