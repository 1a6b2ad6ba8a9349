/// The building blocks an architecture is declared with. A network is a list of layers in
/// execution order; each names the layers it reads from, so branches (Inception) and
/// shortcuts (ResNet) are plain data too.

/// A pointwise non-linearity applied to a layer's output. Kept on the layer rather than as a
/// layer of its own because that is how the tables print it and how the engine fuses it.
public enum Activation: String, Sendable, Codable {
    case relu, tanh
}

public struct Size2: Equatable, Sendable, Codable, CustomStringConvertible {
    public var h: Int
    public var w: Int
    public init(_ h: Int, _ w: Int) { self.h = h; self.w = w }
    public init(_ both: Int) { self.h = both; self.w = both }
    public var description: String { h == w ? "\(h)" : "\(h)x\(w)" }
}

/// Padding per side. Caffe-made graphs pad asymmetrically (more at the bottom/right), so the
/// four sides are separate.
public struct Padding: Equatable, Sendable, Codable, CustomStringConvertible {
    public var top: Int, left: Int, bottom: Int, right: Int
    public init(top: Int, left: Int, bottom: Int, right: Int) {
        self.top = top; self.left = left; self.bottom = bottom; self.right = right
    }
    public init(_ all: Int) { self.init(top: all, left: all, bottom: all, right: all) }
    public static let zero = Padding(0)
    public var isSymmetric: Bool { top == bottom && left == right && top == left }
    public var description: String {
        isSymmetric ? "\(top)" : "\(top),\(left),\(bottom),\(right)"
    }
}

public struct ConvSpec: Equatable, Sendable {
    public var outChannels: Int
    public var kernel: Size2
    public var stride: Size2
    public var padding: Padding
    public var groups: Int
    public var bias: Bool
}

public struct PoolSpec: Equatable, Sendable {
    public var kernel: Size2
    public var stride: Size2
    public var padding: Padding
    /// Output size rounds up instead of down (Caffe, torchvision GoogLeNet).
    public var ceilMode: Bool
    /// Average pooling only: whether padded zeros count in the divisor.
    public var countIncludePad: Bool
}

/// Local response normalisation across channels in the Caffe/ONNX/PyTorch convention:
/// y = x / (k + alpha / size * sum(x^2 over `size` neighbouring channels))^beta.
/// TensorFlow's form does not divide alpha by size; mappings from it must convert.
public struct LRNSpec: Equatable, Sendable {
    public var size: Int
    public var alpha: Double
    public var beta: Double
    public var k: Double
}

public enum LayerOp: Equatable, Sendable {
    case conv(ConvSpec)
    case batchNorm(epsilon: Double)
    case maxPool(PoolSpec)
    case avgPool(PoolSpec)
    /// torchvision's AdaptiveAvgPool2d: a fixed output size whatever the input.
    case adaptiveAvgPool(Size2)
    case lrn(LRNSpec)
    case flatten
    case linear(outFeatures: Int, bias: Bool)
    case dropout(rate: Double)
    /// Concatenation along channels, of the inputs in order.
    case concat
    /// Elementwise sum of the inputs (residual).
    case add
    case softmax

    /// Short type name used in tables and JSON.
    public var typeName: String {
        switch self {
        case .conv: return "Conv"
        case .batchNorm: return "BatchNorm"
        case .maxPool: return "MaxPool"
        case .avgPool: return "AvgPool"
        case .adaptiveAvgPool: return "AdaptiveAvgPool"
        case .lrn: return "LRN"
        case .flatten: return "Flatten"
        case .linear: return "Linear"
        case .dropout: return "Dropout"
        case .concat: return "Concat"
        case .add: return "Add"
        case .softmax: return "Softmax"
        }
    }
}

public struct Layer: Equatable, Sendable {
    /// Canonical module name; parameters are `name + ".weight"` and so on.
    public var name: String
    public var op: LayerOp
    /// Layers read, by name; `Layer.networkInput` is the image.
    public var inputs: [String]
    public var activation: Activation?

    public static let networkInput = "input"

    public init(name: String, op: LayerOp, inputs: [String], activation: Activation? = nil) {
        self.name = name; self.op = op; self.inputs = inputs; self.activation = activation
    }
}

/// What a parameter or buffer is for, which decides how mappings transform it.
public enum ParameterRole: String, Sendable, Codable {
    case weight, bias
    case runningMean = "running_mean"
    case runningVar = "running_var"

    public var isBuffer: Bool { self == .runningMean || self == .runningVar }
}

/// One named tensor an architecture expects, in the canonical (torchvision) layout:
/// conv weights OIHW, linear [out, in], BatchNorm vectors [C].
public struct ParameterSpec: Equatable, Sendable {
    public var name: String
    public var layer: String
    public var role: ParameterRole
    public var shape: [Int]
    public var count: Int { shape.reduce(1, *) }
}
