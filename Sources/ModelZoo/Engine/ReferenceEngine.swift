import Foundation

/// A plain Swift forward pass, written for clarity rather than speed: naive loops over NCHW
/// tensors with Double accumulation. Tests use it as the oracle for the oneDNN `Network`,
/// and `Network` borrows its adaptive pooling for output sizes oneDNN cannot express.
public enum ReferenceEngine {
    /// Runs every layer of `net` on `input` ([N, C, H, W]). Returns [N, classes] when the last
    /// layer's output is a vector, [N, C, H, W] otherwise.
    public static func forward(_ net: ResolvedNetwork, weights: [String: Tensor], input: Tensor) throws -> Tensor {
        let expected = net.input
        guard input.shape.count == 4, input.shape[1] == expected.c, input.shape[2] == expected.h,
              input.shape[3] == expected.w, input.shape[0] >= 1 else {
            throw ZooError.engineFailure(
                layer: Layer.networkInput,
                reason: "expected input [N, \(expected.c), \(expected.h), \(expected.w)], got \(input.shape)")
        }
        var values: [String: Tensor] = [Layer.networkInput: input]
        var last = input
        for resolved in net.layers {
            let layer = resolved.layer
            let inputs = try layer.inputs.map { name -> Tensor in
                guard let value = values[name] else {
                    throw ZooError.engineFailure(layer: layer.name, reason: "input '\(name)' is not computed before it")
                }
                return value
            }
            func param(_ role: ParameterRole) throws -> Tensor {
                try Network.parameter(weights, resolved, role)
            }
            func optionalParam(_ role: ParameterRole) throws -> Tensor? {
                resolved.parameters.contains { $0.role == role } ? try param(role) : nil
            }
            var y: Tensor
            switch layer.op {
            case .conv(let spec):
                y = conv2d(inputs[0], weight: try param(.weight), bias: try optionalParam(.bias),
                           stride: spec.stride, padding: spec.padding, groups: spec.groups)
            case .batchNorm(let epsilon):
                y = batchNorm(inputs[0], weight: try param(.weight), bias: try param(.bias),
                              mean: try param(.runningMean), variance: try param(.runningVar), epsilon: epsilon)
            case .maxPool(let spec):
                y = maxPool(inputs[0], spec)
            case .avgPool(let spec):
                y = avgPool(inputs[0], spec)
            case .adaptiveAvgPool(let size):
                y = adaptiveAvgPool(inputs[0], size)
            case .lrn(let spec):
                y = lrn(inputs[0], spec)
            case .flatten:
                let x = inputs[0]
                y = Tensor(shape: [x.shape[0], x.count / x.shape[0], 1, 1], data: x.data)
            case .linear:
                y = linear(inputs[0], weight: try param(.weight), bias: try optionalParam(.bias))
            case .dropout:
                y = inputs[0]
            case .concat:
                y = concat(inputs)
            case .add:
                y = add(inputs)
            case .softmax:
                y = softmax(inputs[0])
            }
            if let activation = layer.activation { y = activate(y, activation) }
            values[layer.name] = y
            last = y
        }
        return Network.presentOutput(last)
    }

    // MARK: - Layers

    /// Convolution of x [N, C, H, W] with weight [O, C/groups, KH, KW].
    public static func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor?, stride: Size2, padding: Padding,
                              groups: Int) -> Tensor {
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (o, cg, kh, kw) = (weight.shape[0], weight.shape[1], weight.shape[2], weight.shape[3])
        let og = o / groups
        let oh = (h + padding.top + padding.bottom - kh) / stride.h + 1
        let ow = (w + padding.left + padding.right - kw) / stride.w + 1
        var out = [Float](repeating: 0, count: n * o * oh * ow)
        x.data.withUnsafeBufferPointer { xp in
            weight.data.withUnsafeBufferPointer { wp in
                out.withUnsafeMutableBufferPointer { yp in
                    for b in 0..<n {
                        for oc in 0..<o {
                            let g = oc / og
                            for y in 0..<oh {
                                for xo in 0..<ow {
                                    var acc = Double(bias?.data[oc] ?? 0)
                                    for icg in 0..<cg {
                                        let ic = g * cg + icg
                                        for ky in 0..<kh {
                                            let iy = y * stride.h - padding.top + ky
                                            if iy < 0 || iy >= h { continue }
                                            let xRow = ((b * c + ic) * h + iy) * w
                                            let wRow = ((oc * cg + icg) * kh + ky) * kw
                                            for kx in 0..<kw {
                                                let ix = xo * stride.w - padding.left + kx
                                                if ix < 0 || ix >= w { continue }
                                                acc += Double(xp[xRow + ix]) * Double(wp[wRow + kx])
                                            }
                                        }
                                    }
                                    yp[((b * o + oc) * oh + y) * ow + xo] = Float(acc)
                                }
                            }
                        }
                    }
                }
            }
        }
        return Tensor(shape: [n, o, oh, ow], data: out)
    }

    /// Inference BatchNorm: (x - mean) / sqrt(var + eps) * weight + bias, per channel.
    public static func batchNorm(_ x: Tensor, weight: Tensor, bias: Tensor, mean: Tensor, variance: Tensor,
                                 epsilon: Double) -> Tensor {
        let (n, c, hw) = (x.shape[0], x.shape[1], x.count / max(1, x.shape[0] * x.shape[1]))
        var out = x.data
        for b in 0..<n {
            for ch in 0..<c {
                let scale = Double(weight.data[ch]) / (Double(variance.data[ch]) + epsilon).squareRoot()
                let shift = Double(bias.data[ch]) - Double(mean.data[ch]) * scale
                let base = (b * c + ch) * hw
                for i in 0..<hw { out[base + i] = Float(Double(out[base + i]) * scale + shift) }
            }
        }
        return Tensor(shape: x.shape, data: out)
    }

    /// Output length of a pooling window along one axis (PyTorch and Caffe ceil-mode rule).
    static func pooledLength(_ n: Int, _ k: Int, _ s: Int, _ before: Int, _ after: Int, _ ceil: Bool) -> Int {
        Architecture.pooledSize(n, k, s, before, after, ceil) ?? 0
    }

    /// Max pooling; padded positions never win (they are not read).
    public static func maxPool(_ x: Tensor, _ p: PoolSpec) -> Tensor {
        pool(x, p) { window, _, _ in window.max() ?? 0 }
    }

    /// Average pooling with PyTorch's and Caffe's divisor: with `countIncludePad` the window
    /// clipped to input plus declared padding (never the extra ceil-mode overhang), without
    /// it only the input positions read.
    public static func avgPool(_ x: Tensor, _ p: PoolSpec) -> Tensor {
        pool(x, p) { window, paddedArea, _ in
            let sum = window.reduce(0.0) { $0 + Double($1) }
            let divisor = p.countIncludePad ? paddedArea : window.count
            return Float(sum / Double(max(divisor, 1)))
        }
    }

    /// Shared window walk: `reduce` gets the input values inside the window, the window's area
    /// clipped to input plus declared padding, and the output index.
    private static func pool(_ x: Tensor, _ p: PoolSpec, _ reduce: ([Float], Int, Int) -> Float) -> Tensor {
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let oh = pooledLength(h, p.kernel.h, p.stride.h, p.padding.top, p.padding.bottom, p.ceilMode)
        let ow = pooledLength(w, p.kernel.w, p.stride.w, p.padding.left, p.padding.right, p.ceilMode)
        var out = [Float](repeating: 0, count: n * c * oh * ow)
        var window: [Float] = []
        window.reserveCapacity(p.kernel.h * p.kernel.w)
        for plane in 0..<(n * c) {
            for y in 0..<oh {
                let y0 = y * p.stride.h - p.padding.top
                let y1 = min(y0 + p.kernel.h, h + p.padding.bottom)
                for xo in 0..<ow {
                    let x0 = xo * p.stride.w - p.padding.left
                    let x1 = min(x0 + p.kernel.w, w + p.padding.right)
                    let paddedArea = (y1 - y0) * (x1 - x0)
                    window.removeAll(keepingCapacity: true)
                    for iy in max(y0, 0)..<max(min(y1, h), max(y0, 0)) {
                        for ix in max(x0, 0)..<max(min(x1, w), max(x0, 0)) {
                            window.append(x.data[(plane * h + iy) * w + ix])
                        }
                    }
                    out[(plane * oh + y) * ow + xo] = reduce(window, paddedArea, y * ow + xo)
                }
            }
        }
        return Tensor(shape: [n, c, oh, ow], data: out)
    }

    /// torchvision's AdaptiveAvgPool2d: output cell i averages input rows
    /// floor(i*H/OH) ..< ceil((i+1)*H/OH), and likewise for columns.
    public static func adaptiveAvgPool(_ x: Tensor, _ size: Size2) -> Tensor {
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        var out = [Float](repeating: 0, count: n * c * size.h * size.w)
        x.data.withUnsafeBufferPointer { xp in
            adaptiveAvgPool(xp.baseAddress, into: &out, planes: n * c, h, w, size)
        }
        return Tensor(shape: [n, c, size.h, size.w], data: out)
    }

    static func adaptiveAvgPool(_ xp: UnsafePointer<Float>?, into out: UnsafeMutablePointer<Float>,
                                planes: Int, _ h: Int, _ w: Int, _ size: Size2) {
        guard let xp else { return }
        for plane in 0..<planes {
            for i in 0..<size.h {
                let y0 = (i * h) / size.h, y1 = ((i + 1) * h + size.h - 1) / size.h
                for j in 0..<size.w {
                    let x0 = (j * w) / size.w, x1 = ((j + 1) * w + size.w - 1) / size.w
                    var sum = 0.0
                    for iy in y0..<y1 { for ix in x0..<x1 { sum += Double(xp[(plane * h + iy) * w + ix]) } }
                    out[(plane * size.h + i) * size.w + j] = Float(sum / Double((y1 - y0) * (x1 - x0)))
                }
            }
        }
    }

    static func adaptiveAvgPool(_ xp: UnsafePointer<Float>?, into out: inout [Float], planes: Int,
                                _ h: Int, _ w: Int, _ size: Size2) {
        out.withUnsafeMutableBufferPointer { op in
            if let base = op.baseAddress { adaptiveAvgPool(xp, into: base, planes: planes, h, w, size) }
        }
    }

    /// LRN across channels, Caffe/ONNX convention: the window spans (size-1)/2 channels
    /// before and size-1-(size-1)/2 after, and alpha is divided by size.
    public static func lrn(_ x: Tensor, _ spec: LRNSpec) -> Tensor {
        let (n, c, hw) = (x.shape[0], x.shape[1], x.count / max(1, x.shape[0] * x.shape[1]))
        let before = (spec.size - 1) / 2
        let after = spec.size - 1 - before
        var out = x.data
        for b in 0..<n {
            for ch in 0..<c {
                for i in 0..<hw {
                    var sum = 0.0
                    for cc in max(0, ch - before)...min(c - 1, ch + after) {
                        let v = Double(x.data[(b * c + cc) * hw + i])
                        sum += v * v
                    }
                    let denominator = Foundation.pow(spec.k + spec.alpha / Double(spec.size) * sum, spec.beta)
                    let index = (b * c + ch) * hw + i
                    out[index] = Float(Double(x.data[index]) / denominator)
                }
            }
        }
        return Tensor(shape: x.shape, data: out)
    }

    /// Fully connected: x is [N, ...] flattened in C,H,W order, weight [out, in].
    /// Returns [N, out, 1, 1] so that every activation stays four-dimensional.
    public static func linear(_ x: Tensor, weight: Tensor, bias: Tensor?) -> Tensor {
        let n = x.shape[0]
        let k = x.count / n
        let o = weight.shape[0]
        var out = [Float](repeating: 0, count: n * o)
        x.data.withUnsafeBufferPointer { xp in
            weight.data.withUnsafeBufferPointer { wp in
                for b in 0..<n {
                    for j in 0..<o {
                        var acc = Double(bias?.data[j] ?? 0)
                        for i in 0..<k { acc += Double(xp[b * k + i]) * Double(wp[j * k + i]) }
                        out[b * o + j] = Float(acc)
                    }
                }
            }
        }
        return Tensor(shape: [n, o, 1, 1], data: out)
    }

    /// Channel concatenation of NCHW tensors of equal N, H, W.
    public static func concat(_ xs: [Tensor]) -> Tensor {
        let n = xs[0].shape[0], h = xs[0].shape[2], w = xs[0].shape[3]
        let c = xs.reduce(0) { $0 + $1.shape[1] }
        var out: [Float] = []
        out.reserveCapacity(n * c * h * w)
        for b in 0..<n {
            for x in xs {
                let plane = x.shape[1] * h * w
                out += x.data[(b * plane)..<((b + 1) * plane)]
            }
        }
        return Tensor(shape: [n, c, h, w], data: out)
    }

    public static func add(_ xs: [Tensor]) -> Tensor {
        var out = xs[0].data
        for x in xs.dropFirst() { for i in out.indices { out[i] += x.data[i] } }
        return Tensor(shape: xs[0].shape, data: out)
    }

    /// Softmax over channels at every position.
    public static func softmax(_ x: Tensor) -> Tensor {
        let (n, c, hw) = (x.shape[0], x.shape[1], x.count / max(1, x.shape[0] * x.shape[1]))
        var out = x.data
        for b in 0..<n {
            for i in 0..<hw {
                var top = -Double.infinity
                for ch in 0..<c { top = max(top, Double(x.data[(b * c + ch) * hw + i])) }
                var sum = 0.0
                for ch in 0..<c { sum += Foundation.exp(Double(x.data[(b * c + ch) * hw + i]) - top) }
                for ch in 0..<c {
                    let index = (b * c + ch) * hw + i
                    out[index] = Float(Foundation.exp(Double(x.data[index]) - top) / sum)
                }
            }
        }
        return Tensor(shape: x.shape, data: out)
    }

    public static func activate(_ x: Tensor, _ activation: Activation) -> Tensor {
        switch activation {
        case .relu: return Tensor(shape: x.shape, data: x.data.map { max($0, 0) })
        case .tanh: return Tensor(shape: x.shape, data: x.data.map { Foundation.tanh($0) })
        }
    }
}
