import Foundation

/// A learnable tensor with its gradient and SGD momentum buffer.
final class TrainableParameter {
    let name: String
    let shape: [Int]
    var value: [Float]
    var gradient: [Float]
    var momentum: [Float]
    /// Weight decay applies to weights, not biases (the usual fine-tuning practice).
    let decays: Bool

    init(name: String, shape: [Int], value: [Float], decays: Bool) {
        self.name = name; self.shape = shape; self.value = value; self.decays = decays
        gradient = [Float](repeating: 0, count: value.count)
        momentum = [Float](repeating: 0, count: value.count)
    }
}

/// One layer of the trained tail, run forward and backward in plain Swift on NCHW batches.
/// Written for clarity and for LeNet-sized layers: the loops are naive (see README for
/// the speed limits); the head alone is a [classes x features] product and is always cheap.
protocol TrainableStage: AnyObject {
    var parameters: [TrainableParameter] { get }
    /// Output for a batch; with `training` the stage keeps what `backward` needs.
    func forward(_ x: [Float], batch: Int, training: Bool) -> [Float]
    /// Accumulates parameter gradients from `gradOutput`; returns the input's gradient
    /// when `needInput` (the first trained layer does not need it).
    func backward(_ gradOutput: [Float], batch: Int, needInput: Bool) -> [Float]
}

/// Applies a layer's activation and its derivative (from the activation's output).
struct ActivationFunction {
    let activation: Activation?

    func apply(_ y: inout [Float]) {
        switch activation {
        case .relu: for i in y.indices where y[i] < 0 { y[i] = 0 }
        case .tanh: for i in y.indices { y[i] = Foundation.tanh(y[i]) }
        case nil: break
        }
    }

    func backward(_ grad: inout [Float], output: [Float]) {
        switch activation {
        case .relu: for i in grad.indices where output[i] <= 0 { grad[i] = 0 }
        case .tanh: for i in grad.indices { grad[i] *= 1 - output[i] * output[i] }
        case nil: break
        }
    }
}

final class LinearStage: TrainableStage {
    let weight: TrainableParameter
    let bias: TrainableParameter?
    let inFeatures: Int, outFeatures: Int
    let activation: ActivationFunction
    private var input: [Float] = []
    private var output: [Float] = []

    init(weight: TrainableParameter, bias: TrainableParameter?, activation: Activation?) {
        self.weight = weight; self.bias = bias
        outFeatures = weight.shape[0]; inFeatures = weight.shape[1]
        self.activation = ActivationFunction(activation: activation)
    }

    var parameters: [TrainableParameter] { [weight] + (bias.map { [$0] } ?? []) }

    func forward(_ x: [Float], batch: Int, training: Bool) -> [Float] {
        let (nIn, nOut) = (inFeatures, outFeatures)
        var y = [Float](repeating: 0, count: batch * nOut)
        x.withUnsafeBufferPointer { xp in
            weight.value.withUnsafeBufferPointer { wp in
                y.withUnsafeMutableBufferPointer { yp in
                    for b in 0..<batch {
                        for o in 0..<nOut {
                            var acc: Float = bias?.value[o] ?? 0
                            let xRow = b * nIn, wRow = o * nIn
                            for i in 0..<nIn { acc += xp[xRow + i] * wp[wRow + i] }
                            yp[b * nOut + o] = acc
                        }
                    }
                }
            }
        }
        activation.apply(&y)
        if training { input = x; output = y }
        return y
    }

    func backward(_ gradOutput: [Float], batch: Int, needInput: Bool) -> [Float] {
        let (nIn, nOut) = (inFeatures, outFeatures)
        var g = gradOutput
        activation.backward(&g, output: output)
        var gradInput = [Float](repeating: 0, count: needInput ? batch * nIn : 0)
        g.withUnsafeBufferPointer { gp in
            input.withUnsafeBufferPointer { xp in
                weight.gradient.withUnsafeMutableBufferPointer { gw in
                    for o in 0..<nOut {
                        for b in 0..<batch {
                            let go = gp[b * nOut + o]
                            if go == 0 { continue }
                            let xRow = b * nIn, wRow = o * nIn
                            for i in 0..<nIn { gw[wRow + i] += go * xp[xRow + i] }
                        }
                    }
                }
                if needInput {
                    weight.value.withUnsafeBufferPointer { wp in
                        gradInput.withUnsafeMutableBufferPointer { gx in
                            for b in 0..<batch {
                                for o in 0..<nOut {
                                    let go = gp[b * nOut + o]
                                    if go == 0 { continue }
                                    let xRow = b * nIn, wRow = o * nIn
                                    for i in 0..<nIn { gx[xRow + i] += go * wp[wRow + i] }
                                }
                            }
                        }
                    }
                }
            }
        }
        if let bias {
            for b in 0..<batch { for o in 0..<nOut { bias.gradient[o] += g[b * nOut + o] } }
        }
        return gradInput
    }
}

final class ConvStage: TrainableStage {
    let weight: TrainableParameter
    let bias: TrainableParameter?
    let spec: ConvSpec
    let inShape: Shape3, outShape: Shape3
    let activation: ActivationFunction
    private var input: [Float] = []
    private var output: [Float] = []

    init(weight: TrainableParameter, bias: TrainableParameter?, spec: ConvSpec, inShape: Shape3, outShape: Shape3,
         activation: Activation?) {
        self.weight = weight; self.bias = bias; self.spec = spec
        self.inShape = inShape; self.outShape = outShape
        self.activation = ActivationFunction(activation: activation)
    }

    var parameters: [TrainableParameter] { [weight] + (bias.map { [$0] } ?? []) }

    func forward(_ x: [Float], batch: Int, training: Bool) -> [Float] {
        let xt = Tensor(shape: [batch, inShape.c, inShape.h, inShape.w], data: x)
        let w = Tensor(shape: weight.shape, data: weight.value)
        let b = bias.map { Tensor(shape: $0.shape, data: $0.value) }
        var y = ReferenceEngine.conv2d(xt, weight: w, bias: b, stride: spec.stride, padding: spec.padding,
                                       groups: spec.groups).data
        activation.apply(&y)
        if training { input = x; output = y }
        return y
    }

    /// Walks every (output position, kernel tap) pair once, as the forward pass does.
    func backward(_ gradOutput: [Float], batch: Int, needInput: Bool) -> [Float] {
        var g = gradOutput
        activation.backward(&g, output: output)
        let (c, h, w) = (inShape.c, inShape.h, inShape.w)
        let (o, oh, ow) = (outShape.c, outShape.h, outShape.w)
        let (kh, kw) = (spec.kernel.h, spec.kernel.w)
        let cg = c / spec.groups, og = o / spec.groups
        var gradInput = [Float](repeating: 0, count: needInput ? batch * c * h * w : 0)
        g.withUnsafeBufferPointer { gp in
            input.withUnsafeBufferPointer { xp in
                weight.value.withUnsafeBufferPointer { wp in
                    weight.gradient.withUnsafeMutableBufferPointer { gw in
                        gradInput.withUnsafeMutableBufferPointer { gx in
                            for b in 0..<batch {
                                for oc in 0..<o {
                                    let group = oc / og
                                    for y in 0..<oh {
                                        for xo in 0..<ow {
                                            let go = gp[((b * o + oc) * oh + y) * ow + xo]
                                            if go == 0 { continue }
                                            for icg in 0..<cg {
                                                let ic = group * cg + icg
                                                for ky in 0..<kh {
                                                    let iy = y * spec.stride.h - spec.padding.top + ky
                                                    if iy < 0 || iy >= h { continue }
                                                    let xRow = ((b * c + ic) * h + iy) * w
                                                    let wRow = ((oc * cg + icg) * kh + ky) * kw
                                                    for kx in 0..<kw {
                                                        let ix = xo * spec.stride.w - spec.padding.left + kx
                                                        if ix < 0 || ix >= w { continue }
                                                        gw[wRow + kx] += go * xp[xRow + ix]
                                                        if needInput { gx[xRow + ix] += go * wp[wRow + kx] }
                                                    }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        if let bias {
            let plane = oh * ow
            for b in 0..<batch { for oc in 0..<o {
                let base = (b * o + oc) * plane
                var sum: Float = 0
                for i in 0..<plane { sum += g[base + i] }
                bias.gradient[oc] += sum
            } }
        }
        return gradInput
    }
}

/// Max or average pooling with the engine's window rules; max pooling routes the gradient
/// to the position that won, average pooling spreads it over the window.
final class PoolStage: TrainableStage {
    let spec: PoolSpec
    let isMax: Bool
    let inShape: Shape3, outShape: Shape3
    /// For max pooling, the input index each output came from.
    private var winners: [Int] = []

    init(spec: PoolSpec, isMax: Bool, inShape: Shape3, outShape: Shape3) {
        self.spec = spec; self.isMax = isMax; self.inShape = inShape; self.outShape = outShape
    }

    var parameters: [TrainableParameter] { [] }

    /// Calls `body(outputIndex, inputIndices, divisor)` for every output cell.
    private func windows(batch: Int, _ body: (Int, [Int], Int) -> Void) {
        let (h, w) = (inShape.h, inShape.w)
        let (oh, ow) = (outShape.h, outShape.w)
        var indices: [Int] = []
        for plane in 0..<(batch * inShape.c) {
            for y in 0..<oh {
                let y0 = y * spec.stride.h - spec.padding.top
                let y1 = min(y0 + spec.kernel.h, h + spec.padding.bottom)
                for xo in 0..<ow {
                    let x0 = xo * spec.stride.w - spec.padding.left
                    let x1 = min(x0 + spec.kernel.w, w + spec.padding.right)
                    indices.removeAll(keepingCapacity: true)
                    for iy in max(y0, 0)..<max(min(y1, h), max(y0, 0)) {
                        for ix in max(x0, 0)..<max(min(x1, w), max(x0, 0)) {
                            indices.append((plane * h + iy) * w + ix)
                        }
                    }
                    let divisor = spec.countIncludePad ? (y1 - y0) * (x1 - x0) : indices.count
                    body((plane * oh + y) * ow + xo, indices, max(divisor, 1))
                }
            }
        }
    }

    func forward(_ x: [Float], batch: Int, training: Bool) -> [Float] {
        var y = [Float](repeating: 0, count: batch * outShape.count)
        if isMax && training { winners = [Int](repeating: -1, count: y.count) }
        windows(batch: batch) { out, inputs, divisor in
            if isMax {
                var best = -Float.infinity, winner = -1
                for i in inputs where x[i] > best { best = x[i]; winner = i }
                y[out] = winner >= 0 ? best : 0
                if training { winners[out] = winner }
            } else {
                var sum: Float = 0
                for i in inputs { sum += x[i] }
                y[out] = sum / Float(divisor)
            }
        }
        return y
    }

    func backward(_ gradOutput: [Float], batch: Int, needInput: Bool) -> [Float] {
        guard needInput else { return [] }
        var gx = [Float](repeating: 0, count: batch * inShape.count)
        if isMax {
            for (out, source) in winners.enumerated() where source >= 0 { gx[source] += gradOutput[out] }
        } else {
            windows(batch: batch) { out, inputs, divisor in
                let share = gradOutput[out] / Float(divisor)
                for i in inputs { gx[i] += share }
            }
        }
        return gx
    }
}

/// Flatten and (at inference and here) dropout: the values pass through unchanged.
/// BatchNorm with its running statistics frozen (inference form, as fine-tuning small
/// batches usually keeps them: batch statistics of a few images are noise), and its scale
/// and shift trained: y = scale * (x - mean) / sqrt(var + eps) + shift, then the activation.
final class BatchNormStage: TrainableStage {
    let scale: TrainableParameter
    let shift: TrainableParameter
    private let mean: [Float]
    private let inverseStd: [Float]
    private let channels: Int, plane: Int
    let activation: ActivationFunction
    private var normalized: [Float] = []
    private var output: [Float] = []

    init(scale: TrainableParameter, shift: TrainableParameter, mean: [Float], variance: [Float], epsilon: Double,
         shape: Shape3, activation: Activation?) {
        self.scale = scale; self.shift = shift; self.mean = mean
        inverseStd = variance.map { 1 / Float((Double($0) + epsilon).squareRoot()) }
        channels = shape.c; plane = shape.h * shape.w
        self.activation = ActivationFunction(activation: activation)
    }

    var parameters: [TrainableParameter] { [scale, shift] }

    func forward(_ x: [Float], batch: Int, training: Bool) -> [Float] {
        var xhat = [Float](repeating: 0, count: x.count)
        var y = [Float](repeating: 0, count: x.count)
        for b in 0..<batch {
            for c in 0..<channels {
                let base = (b * channels + c) * plane
                let (m, s, g, t) = (mean[c], inverseStd[c], scale.value[c], shift.value[c])
                for i in base..<(base + plane) {
                    xhat[i] = (x[i] - m) * s
                    y[i] = g * xhat[i] + t
                }
            }
        }
        activation.apply(&y)
        if training { normalized = xhat; output = y }
        return y
    }

    func backward(_ gradOutput: [Float], batch: Int, needInput: Bool) -> [Float] {
        var g = gradOutput
        activation.backward(&g, output: output)
        var gradInput = [Float](repeating: 0, count: needInput ? g.count : 0)
        for b in 0..<batch {
            for c in 0..<channels {
                let base = (b * channels + c) * plane
                var dScale: Float = 0, dShift: Float = 0
                let factor = scale.value[c] * inverseStd[c]
                for i in base..<(base + plane) {
                    dScale += g[i] * normalized[i]
                    dShift += g[i]
                    if needInput { gradInput[i] = g[i] * factor }
                }
                scale.gradient[c] += dScale
                shift.gradient[c] += dShift
            }
        }
        return gradInput
    }
}

final class IdentityStage: TrainableStage {
    var parameters: [TrainableParameter] { [] }
    func forward(_ x: [Float], batch: Int, training: Bool) -> [Float] { x }
    func backward(_ gradOutput: [Float], batch: Int, needInput: Bool) -> [Float] { needInput ? gradOutput : [] }
}
