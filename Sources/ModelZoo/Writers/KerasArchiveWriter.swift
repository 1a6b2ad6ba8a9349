import Foundation

/// Writes a Keras 3 `.keras` archive: `metadata.json`, `config.json` and
/// `model.weights.h5`, all stored, which `keras.models.load_model(path)` opens with no
/// custom code.
///
/// The config is the functional model Keras itself would serialize for the network:
/// keras.applications' VGG16/VGG19/ResNet50 (their layer names, "same" padding, merge
/// order), or the model Tools/keras_models.py builds (auto-names, ZeroPadding2D before
/// padded convs). Keras orders a functional model's layers from its graph alone (depth,
/// then the order merges list their inputs), and the `.weights.h5` inside is read in that
/// order: so the graph, padding layers and merge order included, must be Keras's own. Only the
/// fields that differ from Keras's defaults are written; `load_model` fills in the rest.
/// Chains of layers only: the residual networks (their `Add` merges and keras.applications'
/// ResNet50 layer order) are refused rather than written approximately.
public enum KerasArchiveWriter {
    /// The Keras version written in metadata.json: the layout is Keras 3's.
    static let kerasVersion = "3.15.1"

    public static let supportedArchitectures: [String] = [
        "lenet5", "lenet5-classic", "alexnet", "vgg11", "vgg13", "vgg16", "vgg19",
        "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn", "resnet18", "resnet34", "resnet50-keras",
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

    /// A Keras tensor: the layer that made it and its shape without the batch (NHWC, or flat).
    private struct KTensor {
        var layer: String
        var shape: [Int]

        var serialized: [String: Any] {
            ["class_name": "__keras_tensor__",
             "config": ["shape": [NSNull()] + shape.map { $0 as Any }, "dtype": "float32",
                        "keras_history": [layer, 0, 0]] as [String: Any]]
        }
    }

    private struct Emitter {
        var layers: [[String: Any]] = []
        var counters: [String: Int] = [:]

        mutating func autoName(_ base: String) -> String {
            let n = counters[base, default: 0]
            counters[base] = n + 1
            return n == 0 ? base : "\(base)_\(n)"
        }

        /// Appends a layer reading `inputs` (a merge takes them as one list argument, as
        /// Keras serializes `Add()([a, b])`), and returns its output tensor.
        mutating func add(_ className: String, name: String, config: [String: Any], inputs: [KTensor],
                          output: [Int]) -> KTensor {
            var full = config
            full["name"] = name
            full["trainable"] = true
            full["dtype"] = "float32"
            let args: [Any] = inputs.count == 1 ? [inputs[0].serialized] : [inputs.map(\.serialized)]
            layers.append([
                "module": "keras.layers", "class_name": className, "config": full, "registered_name": NSNull(),
                "name": name, "inbound_nodes": [["args": args, "kwargs": [String: Any]()]],
            ])
            return KTensor(layer: name, shape: output)
        }
    }

    static func config(_ net: ResolvedNetwork, plan: KerasLayout) throws -> String {
        let id = net.architecture.id
        func refuse(_ why: String) -> ZooError { .invalidArgument("cannot write \(id) as a .keras archive: \(why)") }
        guard supportedArchitectures.contains(id) else {
            throw refuse("there is no Keras model for it to describe in config.json")
        }
        // keras.applications' own layer names, padding and merge order, or the auto-named
        // model Tools/keras_models.py builds.
        let vggApplications = id == "vgg16" || id == "vgg19"
        let resnetApplications = id == "resnet50-keras"
        // Weighted layers keep the names KerasLayout gives them (and the .weights.h5 holds).
        var weightedNames: [String: String] = [:]
        for layer in plan.layers { if let canonical = layer.weights.first?.canonical.layer { weightedNames[canonical] = layer.name } }
        func kerasName(_ layer: ResolvedLayer) throws -> String {
            guard let name = weightedNames[layer.layer.name] else { throw refuse("layer '\(layer.layer.name)' has no Keras name") }
            return name
        }
        /// keras.applications ResNet50 names a block's layers after its convs: `conv2_block1_1_conv`
        /// gives `conv2_block1_1_relu`, and the block `conv2_block1` its `_add` and `_out`.
        func resnetBlockPrefix(_ block: String) -> String? {
            weightedNames[block + ".conv1"].map { String($0.dropLast("_1_conv".count)) }
        }

        var e = Emitter()
        let input = net.input
        e.layers.append([
            "module": "keras.layers", "class_name": "InputLayer", "registered_name": NSNull(), "name": "input_layer",
            "config": ["batch_shape": [NSNull(), input.h, input.w, input.c], "dtype": "float32", "sparse": false,
                       "name": "input_layer"] as [String: Any],
            "inbound_nodes": [Any](),
        ])
        var tensors: [String: KTensor] = [Layer.networkInput: KTensor(layer: "input_layer", shape: [input.h, input.w, input.c])]
        var last = tensors[Layer.networkInput]
        var vggBlock = 1
        func activationName(_ a: Activation?) -> String {
            switch a { case .relu?: return "relu"; case .tanh?: return "tanh"; case nil: return "linear" }
        }
        func zeroPadding(_ x: KTensor, _ p: Padding, name: String) -> KTensor {
            e.add("ZeroPadding2D", name: name,
                  config: ["padding": [[p.top, p.bottom], [p.left, p.right]], "data_format": "channels_last"],
                  inputs: [x], output: [x.shape[0] + p.top + p.bottom, x.shape[1] + p.left + p.right, x.shape[2]])
        }
        /// The activation a layer applies after itself, as its own Keras layer.
        func activation(_ x: KTensor, _ a: Activation?, reluName: () -> String) -> KTensor {
            switch a {
            case .relu?:
                if resnetApplications { return e.add("Activation", name: reluName(), config: ["activation": "relu"], inputs: [x], output: x.shape) }
                return e.add("ReLU", name: e.autoName("re_lu"), config: [:], inputs: [x], output: x.shape)
            case .tanh?:
                return e.add("Activation", name: e.autoName("activation"), config: ["activation": "tanh"], inputs: [x], output: x.shape)
            case nil:
                return x
            }
        }

        for layer in net.layers {
            let inputs = try layer.layer.inputs.map { name -> KTensor in
                guard let t = tensors[name] else { throw refuse("layer '\(layer.layer.name)' reads '\(name)', not written yet") }
                return t
            }
            guard let x = inputs.first else { throw refuse("layer '\(layer.layer.name)' reads nothing") }
            let out = layer.output
            let nhwc = [out.h, out.w, out.c]
            var y: KTensor
            switch layer.layer.op {
            case .conv(let c):
                guard c.groups == 1, c.padding.isSymmetric, c.kernel.h == c.kernel.w, c.stride.h == c.stride.w else {
                    throw refuse("conv '\(layer.layer.name)' has groups, asymmetric padding or a non-square kernel")
                }
                let name = try kerasName(layer)
                _ = e.autoName("conv2d")
                var padding = "valid"
                var source = x
                if c.padding.top > 0 {
                    let same = c.stride.h == 1 && c.padding.top * 2 + 1 == c.kernel.h
                    if same && (net.architecture.family == .vgg || resnetApplications) {
                        padding = "same"
                    } else {
                        let padName = resnetApplications && name.hasSuffix("_conv") ? String(name.dropLast(5)) + "_pad" : e.autoName("zero_padding2d")
                        source = zeroPadding(x, c.padding, name: padName)
                    }
                }
                y = e.add("Conv2D", name: name, config: [
                    "filters": c.outChannels, "kernel_size": [c.kernel.h, c.kernel.w], "strides": [c.stride.h, c.stride.w],
                    "padding": padding, "data_format": "channels_last", "dilation_rate": [1, 1], "groups": 1,
                    "activation": activationName(layer.layer.activation), "use_bias": c.bias,
                ], inputs: [source], output: nhwc)
            case .batchNorm(let epsilon):
                let name = try kerasName(layer)
                _ = e.autoName("batch_normalization")
                // keras.applications' ResNet50 names the channel axis 3; Keras's default is -1.
                y = e.add("BatchNormalization", name: name, config: ["axis": resnetApplications ? 3 : -1, "epsilon": epsilon, "momentum": 0.99,
                                                                     "center": true, "scale": true], inputs: [x], output: nhwc)
                y = activation(y, layer.layer.activation) { name.hasSuffix("_bn") ? String(name.dropLast(3)) + "_relu" : name + "_relu" }
            case .maxPool(let p), .avgPool(let p):
                guard !p.ceilMode else { throw refuse("pooling '\(layer.layer.name)' rounds up") }
                let isMax: Bool
                if case .maxPool = layer.layer.op { isMax = true } else { isMax = false }
                guard p.padding == .zero || isMax else { throw refuse("average pooling '\(layer.layer.name)' pads") }
                var source = x
                // Zeros stand in for torch's -inf padding: the pool reads a ReLU's output.
                if p.padding != .zero { source = zeroPadding(x, p.padding, name: resnetApplications ? "pool1_pad" : e.autoName("zero_padding2d")) }
                let name = vggApplications ? "block\(vggBlock)_pool" : resnetApplications ? "pool1_pool"
                    : e.autoName(isMax ? "max_pooling2d" : "average_pooling2d")
                vggBlock += 1
                y = e.add(isMax ? "MaxPooling2D" : "AveragePooling2D", name: name, config: [
                    "pool_size": [p.kernel.h, p.kernel.w], "strides": [p.stride.h, p.stride.w], "padding": "valid",
                    "data_format": "channels_last",
                ], inputs: [source], output: nhwc)
                if layer.layer.activation != nil { throw refuse("pooling '\(layer.layer.name)' has an activation") }
            case .adaptiveAvgPool:
                if layer.inputShapes.first == out {
                    y = x  // KerasLayout.plan accepted it: the identity at this input size.
                } else if out.h == 1 && out.w == 1 {
                    y = e.add("GlobalAveragePooling2D", name: resnetApplications ? "avg_pool" : e.autoName("global_average_pooling2d"),
                              config: ["data_format": "channels_last", "keepdims": false], inputs: [x], output: [out.c])
                } else {
                    throw refuse("adaptive pooling '\(layer.layer.name)' is neither global nor the identity")
                }
            case .flatten:
                if x.shape.count == 1 {
                    y = x  // after global pooling the volume is already flat
                } else {
                    y = e.add("Flatten", name: vggApplications ? "flatten" : e.autoName("flatten"),
                              config: ["data_format": "channels_last"], inputs: [x], output: [out.count])
                }
            case .dropout(let rate):
                // keras.applications' VGG has no dropout; at inference it is the identity.
                if vggApplications {
                    y = x
                } else {
                    y = e.add("Dropout", name: e.autoName("dropout"), config: ["rate": rate, "seed": NSNull(), "noise_shape": NSNull()],
                              inputs: [x], output: x.shape)
                }
            case .linear(let units, let bias):
                let name = try kerasName(layer)
                _ = e.autoName("dense")
                y = e.add("Dense", name: name, config: ["units": units, "activation": activationName(layer.layer.activation),
                                                        "use_bias": bias], inputs: [x], output: [units])
            case .add:
                guard inputs.count == 2 else { throw refuse("add '\(layer.layer.name)' does not merge two branches") }
                // keras.applications' ResNet50 adds the shortcut to the main branch; the
                // Tools/keras_models.py blocks add the main branch to the shortcut. The order
                // decides Keras's layer order, so the weights' places.
                let prefix = resnetApplications ? resnetBlockPrefix(layer.layer.name) : nil
                if resnetApplications && prefix == nil { throw refuse("block '\(layer.layer.name)' has no Keras name") }
                y = e.add("Add", name: prefix.map { $0 + "_add" } ?? e.autoName("add"), config: [:],
                          inputs: resnetApplications ? inputs.reversed() : inputs, output: nhwc)
                y = activation(y, layer.layer.activation) { (prefix ?? "") + "_out" }
            default:
                throw refuse("layer '\(layer.layer.name)' (\(layer.layer.op.typeName)) has no Keras layer written here")
            }
            tensors[layer.layer.name] = y
            last = y
        }
        guard let output = last else { throw refuse("the network has no layers") }
        let modelName = vggApplications ? id : resnetApplications ? "resnet50" : id.replacingOccurrences(of: "-", with: "_")
        let root: [String: Any] = [
            "module": "keras.src.models.functional", "class_name": "Functional", "registered_name": "Functional",
            "config": ["name": modelName, "trainable": true, "layers": e.layers,
                       "input_layers": ["input_layer", 0, 0], "output_layers": [output.layer, 0, 0]] as [String: Any],
            "build_config": ["input_shape": NSNull()], "compile_config": NSNull(),
        ]
        return try json(root)
    }

    private static func json(_ object: Any) throws -> String {
        let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        return String(decoding: data, as: UTF8.self)
    }
}
