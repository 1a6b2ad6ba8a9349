import Foundation

/// Writes a Keras 3 `.keras` archive: `metadata.json`, `config.json` and
/// `model.weights.h5`, all stored, which `keras.models.load_model(path)` opens with no
/// custom code.
///
/// The config is the functional model Keras itself would serialize for the network:
/// keras.applications' VGG16/VGG19 (their layer names, "same" padding), or the model
/// Tools/keras_models.py builds (auto-names, ZeroPadding2D before padded convs). Only the
/// fields that differ from Keras's defaults are written; `load_model` fills in the rest.
/// Chains of layers only: the residual networks (their `Add` merges and keras.applications'
/// ResNet50 layer order) are refused rather than written approximately.
public enum KerasArchiveWriter {
    /// The Keras version written in metadata.json: the layout is Keras 3's.
    static let kerasVersion = "3.15.1"

    public static let supportedArchitectures: [String] = [
        "lenet5", "lenet5-classic", "alexnet", "vgg11", "vgg13", "vgg16", "vgg19",
        "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn",
    ]

    /// Checks that `net` has a `.keras` form before anything is written.
    public static func check(_ net: ResolvedNetwork) throws {
        let plan = try KerasLayout.plan(net)
        _ = try config(net, plan: plan)
    }

    public static func write(_ net: ResolvedNetwork, weights: [String: Tensor], attributes: [String: String],
                             to path: String) throws -> KerasLayout {
        let plan = try KerasLayout.plan(net)
        let configJSON = try config(net, plan: plan)
        let metadata = try json(["keras_version": kerasVersion, "date_saved": "zoo convert"])
        // The weights go through the .weights.h5 writer into a scratch file beside the
        // target, then into the archive, stored so readers can read tensors in place.
        let scratch = AtomicRename.temporaryPath(beside: path) + ".weights.h5"
        defer { unlink(scratch) }
        try KerasWriter.write(net, weights: weights, plan: plan, layout: .keras3, attributes: attributes, to: scratch)
        let inner = try ReadOnlyFile(path: scratch)
        try AtomicFileWriter.write(to: path) { writer in
            var zip = AlignedZipWriter(writer)
            try zip.add(KerasArchive.metadataEntryName, bytes: Array(metadata.utf8))
            try zip.add(KerasArchive.configEntryName, bytes: Array(configJSON.utf8))
            let chunk = 1 << 24
            var crc: UInt32 = 0
            try forEachChunk(of: inner, chunk: chunk) { crc = zipCRC32($0, previous: crc) }
            try zip.add(KerasArchive.weightsEntryName, size: inner.size, crc: crc) {
                try forEachChunk(of: inner, chunk: chunk) { try writer.write($0) }
            }
            try zip.finish()
        }
        return plan
    }

    private static func forEachChunk(of file: ReadOnlyFile, chunk: Int, _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        var offset = 0
        while offset < file.size {
            let bytes = try file.bytes(at: offset, count: min(chunk, file.size - offset))
            guard !bytes.isEmpty else {
                throw ZooError.writeFailed(path: file.path, reason: "the weights file ended early at \(offset) bytes")
            }
            try bytes.withUnsafeBytes(body)
            offset += bytes.count
        }
    }

    // MARK: - config.json

    private struct Emitted {
        var layers: [[String: Any]] = []
        var counters: [String: Int] = [:]
        /// The Keras layer holding the current output, and its NHWC (or flat) shape.
        var current = "input_layer"
        var shape: [Int] = []

        mutating func autoName(_ base: String) -> String {
            let n = counters[base, default: 0]
            counters[base] = n + 1
            return n == 0 ? base : "\(base)_\(n)"
        }

        mutating func add(_ className: String, name: String, config: [String: Any], output: [Int]) {
            var full = config
            full["name"] = name
            full["trainable"] = true
            full["dtype"] = "float32"
            let input: [String: Any] = [
                "class_name": "__keras_tensor__",
                "config": ["shape": [NSNull()] + shape.map { $0 as Any }, "dtype": "float32",
                           "keras_history": [current, 0, 0]] as [String: Any],
            ]
            layers.append([
                "module": "keras.layers", "class_name": className, "config": full, "registered_name": NSNull(),
                "name": name, "inbound_nodes": [["args": [input], "kwargs": [String: Any]()]],
            ])
            current = name
            shape = output
        }
    }

    static func config(_ net: ResolvedNetwork, plan: KerasLayout) throws -> String {
        let id = net.architecture.id
        func refuse(_ why: String) -> ZooError { .invalidArgument("cannot write \(id) as a .keras archive: \(why)") }
        guard supportedArchitectures.contains(id) else {
            throw refuse(net.architecture.family == .resnet
                ? "its Keras model merges branches (Add), and only chains of layers get a config.json here; write "
                    + ".weights.h5 or .h5 and load it into the Tools/keras_models.py or keras.applications model"
                : "there is no Keras model for it to describe in config.json")
        }
        let applications = id == "vgg16" || id == "vgg19"
        // Weighted layers keep the names KerasLayout gives them (and the .weights.h5 holds).
        var weightedNames: [String: String] = [:]
        for layer in plan.layers { if let canonical = layer.weights.first?.canonical.layer { weightedNames[canonical] = layer.name } }

        var e = Emitted()
        let input = net.input
        e.shape = [input.h, input.w, input.c]
        e.layers.append([
            "module": "keras.layers", "class_name": "InputLayer", "registered_name": NSNull(), "name": "input_layer",
            "config": ["batch_shape": [NSNull(), input.h, input.w, input.c], "dtype": "float32", "sparse": false,
                       "name": "input_layer"] as [String: Any],
            "inbound_nodes": [Any](),
        ])
        var block = 1
        func activationName(_ a: Activation?) -> String {
            switch a { case .relu?: return "relu"; case .tanh?: return "tanh"; case nil: return "linear" }
        }
        var previous = Layer.networkInput
        for layer in net.layers {
            guard layer.layer.inputs == [previous] else {
                throw refuse("layer '\(layer.layer.name)' does not read the layer before it: not a chain")
            }
            previous = layer.layer.name
            let out = layer.output
            let nhwc = [out.h, out.w, out.c]
            switch layer.layer.op {
            case .conv(let c):
                guard c.groups == 1, c.padding.isSymmetric, c.kernel.h == c.kernel.w, c.stride.h == c.stride.w else {
                    throw refuse("conv '\(layer.layer.name)' has groups, asymmetric padding or a non-square kernel")
                }
                var padding = "valid"
                if c.padding.top > 0 {
                    if net.architecture.family == .vgg && c.stride.h == 1 && c.padding.top * 2 + 1 == c.kernel.h {
                        padding = "same"
                    } else {
                        let padded = [e.shape[0] + 2 * c.padding.top, e.shape[1] + 2 * c.padding.left, e.shape[2]]
                        e.add("ZeroPadding2D", name: e.autoName("zero_padding2d"),
                              config: ["padding": [[c.padding.top, c.padding.bottom], [c.padding.left, c.padding.right]],
                                       "data_format": "channels_last"], output: padded)
                    }
                }
                guard let name = weightedNames[layer.layer.name] else { throw refuse("conv '\(layer.layer.name)' has no Keras name") }
                _ = e.autoName("conv2d")
                e.add("Conv2D", name: name, config: [
                    "filters": c.outChannels, "kernel_size": [c.kernel.h, c.kernel.w], "strides": [c.stride.h, c.stride.w],
                    "padding": padding, "data_format": "channels_last", "dilation_rate": [1, 1], "groups": 1,
                    "activation": activationName(layer.layer.activation), "use_bias": c.bias,
                ], output: nhwc)
            case .batchNorm(let epsilon):
                guard let name = weightedNames[layer.layer.name] else { throw refuse("BatchNorm '\(layer.layer.name)' has no Keras name") }
                _ = e.autoName("batch_normalization")
                e.add("BatchNormalization", name: name, config: ["axis": -1, "epsilon": epsilon, "momentum": 0.99,
                                                                  "center": true, "scale": true], output: nhwc)
                switch layer.layer.activation {
                case .relu?: e.add("ReLU", name: e.autoName("re_lu"), config: [:], output: nhwc)
                case .tanh?: e.add("Activation", name: e.autoName("activation"), config: ["activation": "tanh"], output: nhwc)
                case nil: break
                }
            case .maxPool(let p), .avgPool(let p):
                guard p.padding == .zero, !p.ceilMode else {
                    throw refuse("pooling '\(layer.layer.name)' pads or rounds up")
                }
                let isMax: Bool
                if case .maxPool = layer.layer.op { isMax = true } else { isMax = false }
                let name = applications ? "block\(block)_pool" : e.autoName(isMax ? "max_pooling2d" : "average_pooling2d")
                block += 1
                e.add(isMax ? "MaxPooling2D" : "AveragePooling2D", name: name, config: [
                    "pool_size": [p.kernel.h, p.kernel.w], "strides": [p.stride.h, p.stride.w], "padding": "valid",
                    "data_format": "channels_last",
                ], output: nhwc)
                if layer.layer.activation != nil { throw refuse("pooling '\(layer.layer.name)' has an activation") }
            case .adaptiveAvgPool:
                // KerasLayout.plan accepted it: the identity at this input size.
                guard layer.inputShapes.first == out else { throw refuse("adaptive pooling '\(layer.layer.name)' is not the identity") }
            case .flatten:
                e.add("Flatten", name: applications ? "flatten" : e.autoName("flatten"),
                      config: ["data_format": "channels_last"], output: [out.count])
            case .dropout(let rate):
                // keras.applications' VGG has no dropout; at inference it is the identity.
                if applications { continue }
                e.add("Dropout", name: e.autoName("dropout"), config: ["rate": rate, "seed": NSNull(), "noise_shape": NSNull()],
                      output: e.shape)
            case .linear(let units, let bias):
                guard let name = weightedNames[layer.layer.name] else { throw refuse("dense '\(layer.layer.name)' has no Keras name") }
                _ = e.autoName("dense")
                e.add("Dense", name: name, config: ["units": units, "activation": activationName(layer.layer.activation),
                                                    "use_bias": bias], output: [units])
            default:
                throw refuse("layer '\(layer.layer.name)' (\(layer.layer.op.typeName)) has no Keras layer written here")
            }
        }
        let modelName = applications ? id : id.replacingOccurrences(of: "-", with: "_")
        let root: [String: Any] = [
            "module": "keras.src.models.functional", "class_name": "Functional", "registered_name": "Functional",
            "config": ["name": modelName, "trainable": true, "layers": e.layers,
                       "input_layers": ["input_layer", 0, 0], "output_layers": [e.current, 0, 0]] as [String: Any],
            "build_config": ["input_shape": NSNull()], "compile_config": NSNull(),
        ]
        return try json(root)
    }

    private static func json(_ object: Any) throws -> String {
        let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        return String(decoding: data, as: UTF8.self)
    }
}
