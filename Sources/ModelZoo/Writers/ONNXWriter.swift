import Foundation

/// Writes a resolved network and its canonical weights as a complete ONNX model that
/// onnxruntime runs as it is: the graph comes from the architecture spec, every weight is
/// an initializer named by its canonical (torchvision) name, the input is `input`
/// [batch, C, H, W] with a symbolic batch, the output is `logits` [batch, classes].
///
/// BatchNorm stays a BatchNormalization node (not folded into the conv), so the file keeps
/// every canonical tensor and reads back as the same weights. Dropout is left out (it is
/// the identity at inference), as is an adaptive pool that is the identity at this input
/// size; other adaptive pools become GlobalAveragePool or an AveragePool whose window
/// divides the input evenly.
///
/// The file is written in one pass without building the ModelProto in memory: the small
/// messages are encoded first, their lengths added up, then the weights stream from the
/// Float arrays to the file behind their length prefixes. Peak memory is the weights the
/// caller already holds plus a few kilobytes.
public enum ONNXWriter {
    public static let opsetVersion = 13
    /// IR version 7 is the one that goes with opset 13.
    public static let irVersion = 7
    public static let producerName = "modelzoo"
    public static let producerVersion = "1.0"
    public static let inputName = "input"
    public static let outputName = "logits"
    public static let batchParameter = "batch"

    /// ONNX TensorProto.DataType values.
    static let float32Type = 1

    /// Writes `path` atomically. `metadata` goes into `metadata_props` (architecture id,
    /// source file, class names...).
    /// `stored`: tensors copied from another file's bytes instead of `weights`.
    public static func write(_ net: ResolvedNetwork, weights: [String: Tensor], metadata: [String: String],
                             to path: String) throws {
        try write(net, weights: weights, stored: [:], metadata: metadata, to: path)
    }

    static func write(_ net: ResolvedNetwork, weights: [String: Tensor], stored: [String: StoredTensor],
                      metadata: [String: String], to path: String, beforeCommit: (() throws -> Void)? = nil) throws {
        var builder = GraphBuilder(net: net, path: path)
        let graph = try builder.build()
        var initializers: [(header: [UInt8], tensor: TensorPayload)] = []
        for spec in net.parameters + net.buffers {
            let tensor: TensorPayload
            if let stored = stored[spec.name], stored.span.byteCount == spec.count * MemoryLayout<Float>.size {
                tensor = .stored(stored)
            } else {
                guard let values = weights[spec.name] else {
                    throw ZooError.badTensor(path: path, tensor: spec.name, reason: "no value to write")
                }
                guard values.shape == spec.shape, values.data.count == spec.count else {
                    throw ZooError.badTensor(path: path, tensor: spec.name,
                                             reason: "has shape \(values.shape), the network needs \(spec.shape)")
                }
                tensor = .values(values.data)
            }
            var header = ProtoEncoder()
            header.packedInts(1, spec.shape)
            header.int(2, float32Type)
            header.string(8, spec.name)
            initializers.append((header.bytes, tensor))
        }

        // GraphProto: nodes (1), name (2), initializers (5), inputs (11), outputs (12).
        var graphHead = ProtoEncoder()
        for node in graph.nodes { graphHead.lengthDelimited(1, node) }
        graphHead.string(2, net.architecture.id)
        var graphTail = ProtoEncoder()
        graphTail.lengthDelimited(11, valueInfo(inputName, dims: [.symbolic(batchParameter), .fixed(net.input.c),
                                                                  .fixed(net.input.h), .fixed(net.input.w)]))
        graphTail.lengthDelimited(12, valueInfo(outputName, dims: graph.outputDims))

        var graphLength = graphHead.bytes.count + graphTail.bytes.count
        var tensorLengths: [Int] = []
        for (header, tensor) in initializers {
            let dataBytes = tensor.byteCount
            let tensorLength = header.count + 1 + ProtoEncoder.varintSize(UInt64(dataBytes)) + dataBytes
            tensorLengths.append(tensorLength)
            graphLength += 1 + ProtoEncoder.varintSize(UInt64(tensorLength)) + tensorLength
        }

        // ModelProto: ir_version (1) first, so readers that sniff it recognise the file.
        var model = ProtoEncoder()
        model.int(1, irVersion)
        model.string(2, producerName)
        model.string(3, producerVersion)
        model.message(8) { opset in
            opset.string(1, "")
            opset.int(2, opsetVersion)
        }
        for (key, value) in metadata.sorted(by: { $0.key < $1.key }) {
            model.message(14) { entry in
                entry.string(1, key)
                entry.string(2, value)
            }
        }
        model.lengthPrefix(7, length: graphLength)

        try AtomicFileWriter.write(to: path, beforeCommit: beforeCommit) { writer in
            var pending = model.bytes + graphHead.bytes
            for ((header, tensor), tensorLength) in zip(initializers, tensorLengths) {
                var prefix = ProtoEncoder()
                prefix.lengthPrefix(5, length: tensorLength)
                pending += prefix.bytes
                pending += header
                var raw = ProtoEncoder()
                raw.lengthPrefix(9, length: tensor.byteCount)
                pending += raw.bytes
                // Small tensors are batched with their headers; big ones go straight from
                // the array (or the input file) to the file.
                if case .values(let data) = tensor, data.count < 16384 {
                    appendLittleEndian(data, to: &pending)
                } else {
                    try writer.write(pending)
                    pending.removeAll(keepingCapacity: true)
                    try tensor.write(to: writer)
                }
            }
            pending += graphTail.bytes
            try writer.write(pending)
        }
    }

    enum Dim {
        case fixed(Int)
        case symbolic(String)
    }

    /// ValueInfoProto { name, type: TypeProto { tensor_type { elem_type, shape } } }.
    static func valueInfo(_ name: String, dims: [Dim]) -> [UInt8] {
        var info = ProtoEncoder()
        info.string(1, name)
        info.message(2) { type in
            type.message(1) { tensorType in
                tensorType.int(1, float32Type)
                tensorType.message(2) { shape in
                    for dim in dims {
                        shape.message(1) { d in
                            switch dim {
                            case .fixed(let value): d.int(1, value)
                            case .symbolic(let name): d.string(2, name)
                            }
                        }
                    }
                }
            }
        }
        return info.bytes
    }

    private static func appendLittleEndian(_ data: [Float], to buffer: inout [UInt8]) {
        data.withUnsafeBytes { raw in
            #if _endian(big)
            for value in data { withUnsafeBytes(of: value.bitPattern.littleEndian) { buffer += $0 } }
            #else
            buffer += raw
            #endif
        }
    }
}

/// Turns the spec's layers into encoded NodeProtos, tracking which value each layer's
/// output is (layers left out, like dropout, stand for their input).
private struct GraphBuilder {
    let net: ResolvedNetwork
    let path: String

    var nodes: [[UInt8]] = []
    var outputDims: [ONNXWriter.Dim] = []
    private var valueOf: [String: String] = [Layer.networkInput: ONNXWriter.inputName]

    init(net: ResolvedNetwork, path: String) {
        self.net = net
        self.path = path
    }

    private enum Attribute {
        case int(Int)
        case float(Float)
        case ints([Int])
    }

    private mutating func node(_ opType: String, name: String, inputs: [String], output: String,
                               _ attributes: [(String, Attribute)] = []) {
        var n = ProtoEncoder()
        for input in inputs { n.string(1, input) }
        n.string(2, output)
        n.string(3, name)
        n.string(4, opType)
        // AttributeProto: name (1), f (2), i (3), ints (8), type (20).
        for (attributeName, value) in attributes {
            n.message(5) { a in
                a.string(1, attributeName)
                switch value {
                case .float(let f): a.float(2, f); a.int(20, 1)
                case .int(let i): a.int(3, i); a.int(20, 2)
                case .ints(let list): a.packedInts(8, list); a.int(20, 7)
                }
            }
        }
        nodes.append(n.bytes)
    }

    private func unsupported(_ layer: ResolvedLayer, _ why: String) -> ZooError {
        .writeFailed(path: path, reason: "\(net.architecture.id) layer '\(layer.layer.name)': \(why)")
    }

    mutating func build() throws -> GraphBuilder {
        var last = ONNXWriter.inputName
        for layer in net.layers {
            let name = layer.layer.name
            let inputs = try layer.layer.inputs.map { input -> String in
                guard let value = valueOf[input] else { throw unsupported(layer, "reads '\(input)', which has no value yet") }
                return value
            }
            guard let x = inputs.first else { throw unsupported(layer, "has no input") }
            var output = name
            switch layer.layer.op {
            case .conv(let c):
                var args = [x, name + ".weight"]
                if c.bias { args.append(name + ".bias") }
                node("Conv", name: name, inputs: args, output: name, [
                    ("group", .int(c.groups)),
                    ("kernel_shape", .ints([c.kernel.h, c.kernel.w])),
                    ("pads", .ints([c.padding.top, c.padding.left, c.padding.bottom, c.padding.right])),
                    ("strides", .ints([c.stride.h, c.stride.w])),
                ])
            case .batchNorm(let epsilon):
                node("BatchNormalization", name: name,
                     inputs: [x, name + ".weight", name + ".bias", name + ".running_mean", name + ".running_var"],
                     output: name, [("epsilon", .float(Float(epsilon)))])
            case .maxPool(let p):
                node("MaxPool", name: name, inputs: [x], output: name, poolAttributes(p))
            case .avgPool(let p):
                node("AveragePool", name: name, inputs: [x], output: name,
                     poolAttributes(p) + [("count_include_pad", .int(p.countIncludePad ? 1 : 0))])
            case .adaptiveAvgPool:
                let input = layer.inputShapes[0]
                let out = layer.output
                if input == out {
                    output = x
                } else if out.h == 1 && out.w == 1 {
                    node("GlobalAveragePool", name: name, inputs: [x], output: name)
                } else if input.h % out.h == 0 && input.w % out.w == 0 {
                    let k = [input.h / out.h, input.w / out.w]
                    node("AveragePool", name: name, inputs: [x], output: name,
                         [("kernel_shape", .ints(k)), ("strides", .ints(k))])
                } else {
                    throw unsupported(layer, "adaptive pooling from \(input.h)x\(input.w) to \(out.h)x\(out.w) has uneven "
                        + "windows, which no single ONNX pooling node computes; use an input size that divides evenly")
                }
            case .lrn(let l):
                node("LRN", name: name, inputs: [x], output: name, [
                    ("alpha", .float(Float(l.alpha))), ("beta", .float(Float(l.beta))),
                    ("bias", .float(Float(l.k))), ("size", .int(l.size)),
                ])
            case .flatten:
                node("Flatten", name: name, inputs: [x], output: name, [("axis", .int(1))])
            case .linear(_, let bias):
                var args = [x, name + ".weight"]
                if bias { args.append(name + ".bias") }
                node("Gemm", name: name, inputs: args, output: name,
                     [("alpha", .float(1)), ("beta", .float(1)), ("transB", .int(1))])
            case .dropout:
                output = x
            case .concat:
                node("Concat", name: name, inputs: inputs, output: name, [("axis", .int(1))])
            case .add:
                node("Add", name: name, inputs: inputs, output: name)
            case .softmax:
                node("Softmax", name: name, inputs: [x], output: name, [("axis", .int(1))])
            }
            if let activation = layer.layer.activation, output == name {
                let activated = name + "." + activation.rawValue
                node(activation == .relu ? "Relu" : "Tanh", name: activated, inputs: [name], output: activated)
                output = activated
            }
            valueOf[name] = output
            last = output
        }
        // The last value is renamed to `logits` through an Identity, so every producing
        // node keeps its own layer name.
        node("Identity", name: ONNXWriter.outputName, inputs: [last], output: ONNXWriter.outputName)
        let final = net.layers.last?.output ?? net.input
        outputDims = final.h == 1 && final.w == 1
            ? [.symbolic(ONNXWriter.batchParameter), .fixed(final.c)]
            : [.symbolic(ONNXWriter.batchParameter), .fixed(final.c), .fixed(final.h), .fixed(final.w)]
        return self
    }

    private func poolAttributes(_ p: PoolSpec) -> [(String, Attribute)] {
        [("ceil_mode", .int(p.ceilMode ? 1 : 0)),
         ("kernel_shape", .ints([p.kernel.h, p.kernel.w])),
         ("pads", .ints([p.padding.top, p.padding.left, p.padding.bottom, p.padding.right])),
         ("strides", .ints([p.stride.h, p.stride.w]))]
    }
}
