/// A volume in canonical order: channels, height, width (the batch is left out).
public struct Shape3: Equatable, Sendable, Codable, CustomStringConvertible {
    public var c: Int, h: Int, w: Int
    public init(_ c: Int, _ h: Int, _ w: Int) { self.c = c; self.h = h; self.w = w }
    public var count: Int { c * h * w }
    public var array: [Int] { [c, h, w] }
    public var description: String { "\(c)x\(h)x\(w)" }
}

/// A layer with everything its input size decides: output volume, parameters with their
/// canonical names and shapes, and the multiply-accumulates of one forward pass.
public struct ResolvedLayer: Sendable {
    public let layer: Layer
    public let inputShapes: [Shape3]
    public let output: Shape3
    /// Learnable tensors (weights, biases, BN scale and shift).
    public let parameters: [ParameterSpec]
    /// BatchNorm running statistics: loaded and checked, but not learnable.
    public let buffers: [ParameterSpec]
    public let macs: Int
    /// Whether the layer writes a new activation tensor. In-place or view layers (dropout,
    /// flatten) and pools that are the identity at this size (torchvision's adaptive pool
    /// at 224) do not, which is how the hand-written tables count memory.
    public let allocatesOutput: Bool

    public var weightCount: Int { parameters.filter { $0.role == .weight }.reduce(0) { $0 + $1.count } }
    public var biasCount: Int { parameters.filter { $0.role == .bias }.reduce(0) { $0 + $1.count } }
    public var parameterCount: Int { parameters.reduce(0) { $0 + $1.count } }
    public var bufferCount: Int { buffers.reduce(0) { $0 + $1.count } }
    public var activationElements: Int { allocatesOutput ? output.count : 0 }
}

/// An architecture at a given class count and input size.
public struct ResolvedNetwork: Sendable {
    public let architecture: Architecture
    public let classes: Int
    public let input: Shape3
    public let layers: [ResolvedLayer]

    public var parameters: [ParameterSpec] { layers.flatMap(\.parameters) }
    public var buffers: [ParameterSpec] { layers.flatMap(\.buffers) }
    public var totalParameters: Int { layers.reduce(0) { $0 + $1.parameterCount } }
    public var totalBuffers: Int { layers.reduce(0) { $0 + $1.bufferCount } }
    public var totalMACs: Int { layers.reduce(0) { $0 + $1.macs } }
    /// Values held for one image in a forward pass: the input plus every new activation.
    public var activationElements: Int { input.count + layers.reduce(0) { $0 + $1.activationElements } }
    /// The seeds' "TOTAL memory ... / image (forward)" figure, in float32 bytes.
    public var forwardMemoryBytes: Int { activationElements * 4 }

    public func layer(named name: String) -> ResolvedLayer? { layers.first { $0.layer.name == name } }
}

extension Architecture {
    /// Runs shape inference over the layer list. Throws, naming the layer, when the volume
    /// shrinks below 1x1 or the inputs of a concat or add do not agree.
    public func resolve(classes: Int? = nil, inputSize: Size2? = nil) throws -> ResolvedNetwork {
        let classes = classes ?? defaultClasses
        guard classes >= 1, classes <= 1_000_000 else {
            throw ZooError.invalidArgument("class count must be between 1 and 1000000, got \(classes)")
        }
        let size = inputSize ?? defaultInputSize
        guard size.h >= 1, size.w >= 1, size.h <= 16384, size.w <= 16384 else {
            throw ZooError.invalidArgument("input size must be between 1 and 16384, got \(size)")
        }
        if size != defaultInputSize && !acceptsOtherInputSizes {
            throw ZooError.invalidInputSize(
                architecture: id, layer: headLayerBeforeFlatten,
                detail: "this network's classifier is sized for \(defaultInputSize)x\(defaultInputSize) input "
                    + "(no adaptive pooling before it); got \(size)")
        }
        let input = Shape3(inputChannels, size.h, size.w)
        var shapes: [String: Shape3] = [Layer.networkInput: input]
        var resolved: [ResolvedLayer] = []
        for layer in layers(classes: classes) {
            let inputShapes = try layer.inputs.map { name -> Shape3 in
                guard let s = shapes[name] else {
                    throw ZooError.invalidInputSize(architecture: id, layer: layer.name,
                                                    detail: "reads '\(name)', which is not defined before it")
                }
                return s
            }
            let r = try resolveLayer(layer, inputShapes)
            shapes[layer.name] = r.output
            resolved.append(r)
        }
        return ResolvedNetwork(architecture: self, classes: classes, input: input, layers: resolved)
    }

    /// The name printed when a fixed-size network is given another size: its first FC.
    private var headLayerBeforeFlatten: String {
        layers().first { if case .linear = $0.op { return true } else { return false } }?.name ?? headLayer
    }

    private func resolveLayer(_ layer: Layer, _ inputs: [Shape3]) throws -> ResolvedLayer {
        let fail = { (detail: String) in
            ZooError.invalidInputSize(architecture: self.id, layer: layer.name, detail: detail)
        }
        let x = inputs[0]
        var params: [ParameterSpec] = []
        var buffers: [ParameterSpec] = []
        var macs = 0
        var allocates = true
        let output: Shape3
        func param(_ role: ParameterRole, _ shape: [Int]) -> ParameterSpec {
            ParameterSpec(name: layer.name + "." + role.rawValue, layer: layer.name, role: role, shape: shape)
        }
        switch layer.op {
        case .conv(let c):
            guard x.c % c.groups == 0, c.outChannels % c.groups == 0 else {
                throw fail("\(x.c) input channels do not split into \(c.groups) groups")
            }
            let h = (x.h + c.padding.top + c.padding.bottom - c.kernel.h) / c.stride.h + 1
            let w = (x.w + c.padding.left + c.padding.right - c.kernel.w) / c.stride.w + 1
            guard x.h + c.padding.top + c.padding.bottom >= c.kernel.h,
                  x.w + c.padding.left + c.padding.right >= c.kernel.w, h >= 1, w >= 1 else {
                throw fail("a \(c.kernel)x\(c.kernel) kernel does not fit a \(x.h)x\(x.w) input")
            }
            output = Shape3(c.outChannels, h, w)
            params.append(param(.weight, [c.outChannels, x.c / c.groups, c.kernel.h, c.kernel.w]))
            if c.bias { params.append(param(.bias, [c.outChannels])) }
            macs = output.count * (x.c / c.groups) * c.kernel.h * c.kernel.w
        case .batchNorm:
            output = x
            params += [param(.weight, [x.c]), param(.bias, [x.c])]
            buffers += [param(.runningMean, [x.c]), param(.runningVar, [x.c])]
        case .maxPool(let p), .avgPool(let p):
            guard let h = Self.pooledSize(x.h, p.kernel.h, p.stride.h, p.padding.top, p.padding.bottom, p.ceilMode),
                  let w = Self.pooledSize(x.w, p.kernel.w, p.stride.w, p.padding.left, p.padding.right, p.ceilMode) else {
                throw fail("a \(p.kernel) pooling window does not fit a \(x.h)x\(x.w) input")
            }
            output = Shape3(x.c, h, w)
        case .adaptiveAvgPool(let s):
            output = Shape3(x.c, s.h, s.w)
            allocates = output != x
        case .lrn, .softmax:
            output = x
        case .flatten:
            output = Shape3(x.count, 1, 1)
            allocates = false
        case .dropout:
            output = x
            allocates = false
        case .linear(let out, let bias):
            output = Shape3(out, 1, 1)
            params.append(param(.weight, [out, x.count]))
            if bias { params.append(param(.bias, [out])) }
            macs = out * x.count
        case .concat:
            guard inputs.allSatisfy({ $0.h == x.h && $0.w == x.w }) else {
                throw fail("concatenated branches differ in size: \(inputs.map(\.description).joined(separator: ", "))")
            }
            output = Shape3(inputs.reduce(0) { $0 + $1.c }, x.h, x.w)
        case .add:
            guard inputs.allSatisfy({ $0 == x }) else {
                throw fail("added tensors differ in shape: \(inputs.map(\.description).joined(separator: ", "))")
            }
            output = x
        }
        return ResolvedLayer(layer: layer, inputShapes: inputs, output: output, parameters: params,
                             buffers: buffers, macs: macs, allocatesOutput: allocates)
    }

    /// Output length of a pooling window, with PyTorch's and Caffe's ceil-mode rule: the
    /// last window must start inside the input or its leading padding.
    static func pooledSize(_ n: Int, _ k: Int, _ s: Int, _ padBegin: Int, _ padEnd: Int, _ ceil: Bool) -> Int? {
        let span = n + padBegin + padEnd - k
        guard span >= 0 else { return nil }
        var out = (ceil ? (span + s - 1) / s : span / s) + 1
        if ceil && (out - 1) * s >= n + padBegin { out -= 1 }
        return out >= 1 ? out : nil
    }
}
