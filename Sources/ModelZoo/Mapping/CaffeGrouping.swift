/// Groups a caffemodel's blobs into layers by the layer types the file declares, and names
/// each layer canonically:
/// - AlexNet and GoogLeNet keep their Caffe names (`conv1`...`fc8`, `inception_3a/1x1`): the
///   specs `alexnet-caffe` and `googlenet-caffe` use them.
/// - VGG's `conv1_1`...`conv5_3`, `fc6`-`fc8` become torchvision's `features.N` and
///   `classifier.N`, numbered as torchvision numbers its Sequential (every conv, ReLU and
///   pool in the features, every FC, ReLU and dropout in the classifier), from the file's
///   own layer order.
/// - ResNet's `res4b22_branch2a`, `bn4b22_branch2a` + `scale4b22_branch2a`, `res3a_branch1`,
///   `bn_conv1`, `fc1000` become `layer3.22.conv1`, `layer3.22.bn1`, `layer2.0.downsample.0`,
///   `bn1`, `fc`.
/// Caffe's BatchNorm keeps running sums and a scale factor, and its affine part lives in the
/// following Scale layer: the two are joined into one BatchNorm layer. Training-time layers
/// (data, loss, accuracy) and GoogLeNet's auxiliary classifiers (`loss1/*`, `loss2/*`) are
/// left out of the network and said so in the notes.
public enum CaffeGrouping {
    /// Types that feed or score training, never part of the network that runs.
    static let trainingTypes: Set<String> = [
        "Data", "ImageData", "HDF5Data", "WindowData", "MemoryData", "DummyData", "Input",
        "Accuracy", "SoftmaxWithLoss", "Softmax", "Silence", "EuclideanLoss", "HingeLoss",
        "MultinomialLogisticLoss", "InfogainLoss", "SigmoidCrossEntropyLoss", "HDF5Output",
    ]

    static func isAuxiliary(_ layer: CaffeLayer) -> Bool {
        layer.name.hasPrefix("loss1/") || layer.name.hasPrefix("loss2/")
    }

    /// The layers that make up the network that runs, in file order.
    public static func networkLayers(_ net: CaffeNet) -> [CaffeLayer] {
        net.layers.filter { !trainingTypes.contains($0.type) && !isAuxiliary($0) && $0.phase != .test }
    }

    public static func group(_ net: CaffeNet) -> SourceModel {
        let main = networkLayers(net)
        let names = canonicalNames(main)
        var layers: [SourceLayer] = []
        var used = Set<String>()
        var evidence = GraphEvidence()
        evidence.hasGraph = true
        for (index, layer) in main.enumerated() {
            let canonical = names[layer.name] ?? layer.name
            switch layer.type {
            case "Convolution":
                guard let w = layer.blobs.first else { continue }
                var tensors: [ParameterRole: TensorRecord] = [.weight: w.record]
                if layer.blobs.count > 1 { tensors[.bias] = trailing(layer.blobs[1].record, rank: 1) }
                var graphConv: ConvSpec?
                if let c = layer.convolution {
                    graphConv = ConvSpec(outChannels: c.numOutput, kernel: c.kernel, stride: c.stride,
                                         padding: Padding(top: c.pad.h, left: c.pad.w, bottom: c.pad.h, right: c.pad.w),
                                         groups: c.group, bias: c.bias)
                }
                layers.append(SourceLayer(name: layer.name, kind: .conv, layout: .canonical, tensors: tensors,
                                          graphConv: graphConv, canonicalName: canonical))
            case "InnerProduct":
                guard let w = layer.blobs.first else { continue }
                var tensors: [ParameterRole: TensorRecord] = [.weight: trailing(w.record, rank: 2)]
                if layer.blobs.count > 1 { tensors[.bias] = trailing(layer.blobs[1].record, rank: 1) }
                layers.append(SourceLayer(name: layer.name, kind: .dense,
                                          layout: layer.innerProduct?.transpose == true ? .inOut : .canonical,
                                          tensors: tensors, canonicalName: canonical))
            case "BatchNorm":
                evidence.batchNorm = true
                var tensors: [ParameterRole: TensorRecord] = [:]
                if layer.blobs.count > 0 { tensors[.runningMean] = trailing(layer.blobs[0].record, rank: 1) }
                if layer.blobs.count > 1 { tensors[.runningVar] = trailing(layer.blobs[1].record, rank: 1) }
                // The Scale layer reading this BatchNorm's output holds gamma and beta.
                let top = layer.tops.first ?? layer.name
                if let scale = main[(index + 1)...].first(where: { $0.type == "Scale" && $0.bottoms.first == top }) {
                    if scale.blobs.count > 0 { tensors[.weight] = trailing(scale.blobs[0].record, rank: 1) }
                    if scale.blobs.count > 1 { tensors[.bias] = trailing(scale.blobs[1].record, rank: 1) }
                    used.insert(scale.name)
                }
                layers.append(SourceLayer(name: layer.name, kind: .batchNorm, layout: .canonical, tensors: tensors,
                                          graphEpsilon: layer.batchNormEpsilon, canonicalName: canonical,
                                          runningSumsFactor: layer.blobs.count > 2 ? layer.blobs[2].record : nil))
            case "ReLU": evidence.relu = true
            case "TanH": evidence.tanh = true
            case "Pooling":
                if layer.pooling?.method == .average { evidence.avgPool = true } else { evidence.maxPool = true }
            case "LRN": evidence.lrn = true
            default: break
            }
        }
        var loose: [TensorRecord] = []
        let groupedNames = Set(layers.map(\.name)).union(used)
        for layer in main where !groupedNames.contains(layer.name) { loose += layer.blobs.map(\.record) }

        var notes: [String] = []
        let training = net.layers.filter { trainingTypes.contains($0.type) || ($0.phase == .test && !isAuxiliary($0)) }
        if !training.isEmpty {
            notes.append("training-time layers left out of the network: "
                + summarize(training.map { "\($0.name) (\($0.type))" }))
        }
        let auxiliary = net.layers.filter(isAuxiliary)
        if !auxiliary.isEmpty {
            let blobs = auxiliary.flatMap(\.blobs)
            notes.append("auxiliary classifiers set aside (\(auxiliary.count) layers, \(blobs.count) blobs, "
                + "\(grouped(blobs.reduce(0) { $0 + $1.record.elementCount })) values): "
                + summarize(auxiliary.filter { !$0.blobs.isEmpty }.map(\.name)))
        }
        if layers.contains(where: { $0.runningSumsFactor != nil }) {
            notes.append("BatchNorm mean and variance: Caffe's stored sums divided by each layer's scale factor blob")
        }
        for layer in main where layer.lrn?.acrossChannels == false {
            notes.append("LRN '\(layer.name)' normalises within channels, which zoo does not run")
        }
        var model = SourceModel(layers: layers, looseTensors: loose, evidence: evidence,
                                convention: "Caffe \(net.layout.rawValue) layers", pairing: .byName)
        model.notes = notes
        return model
    }

    private static func summarize(_ items: [String]) -> String {
        items.count <= 6 ? items.joined(separator: ", ") : items.prefix(5).joined(separator: ", ") + ", ... (\(items.count) in all)"
    }


    /// A legacy 4-D blob (`1x1x4096x9216` for an FC weight, `1x1x1x4096` for a bias) seen
    /// with its leading unit dimensions dropped, down to `rank`.
    static func trailing(_ record: TensorRecord, rank: Int) -> TensorRecord {
        var shape = record.shape
        while shape.count > rank, shape.first == 1 { shape.removeFirst() }
        return TensorRecord(name: record.name, shape: shape, dtype: record.dtype, byteCount: record.byteCount)
    }

    // MARK: Names

    /// Caffe layer name to canonical module name, for the layers whose names follow a
    /// known release's scheme; others keep their own names.
    static func canonicalNames(_ layers: [CaffeLayer]) -> [String: String] {
        if layers.contains(where: { parseResNetName($0.name) != nil }) { return resNetNames(layers) }
        let convs = layers.filter { $0.type == "Convolution" }
        if !convs.isEmpty, convs.allSatisfy({ isVGGConvName($0.name) }) { return vggNames(layers) }
        return [:]
    }

    static func isVGGConvName(_ name: String) -> Bool {
        guard name.hasPrefix("conv") else { return false }
        let parts = name.dropFirst(4).split(separator: "_", omittingEmptySubsequences: false)
        return parts.count == 2 && parts.allSatisfy { !$0.isEmpty && $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) }
    }

    /// torchvision's VGG numbering, from the order of the file's layers.
    static func vggNames(_ layers: [CaffeLayer]) -> [String: String] {
        var names: [String: String] = [:]
        var features = 0, classifier = 0
        var inClassifier = false
        for layer in layers {
            if layer.type == "InnerProduct" { inClassifier = true }
            if inClassifier {
                switch layer.type {
                case "InnerProduct": names[layer.name] = "classifier.\(classifier)"; classifier += 1
                case "ReLU", "Dropout": classifier += 1
                default: break
                }
            } else {
                switch layer.type {
                case "Convolution": names[layer.name] = "features.\(features)"; features += 1
                case "BatchNorm": names[layer.name] = "features.\(features)"; features += 1
                case "ReLU", "Pooling": features += 1
                default: break
                }
            }
        }
        return names
    }

    /// `res4b22_branch2a` -> (stage 4, block 22, branch "2a"); `bn3a_branch1` -> (3, 0, "1").
    /// Blocks are letters (`res2c`: block 2) or, in the deeper nets, `b` and a number.
    static func parseResNetName(_ name: String) -> (stage: Int, block: Int, branch: String)? {
        var rest = Substring(name)
        for prefix in ["res", "bn", "scale"] where rest.hasPrefix(prefix) {
            rest = rest.dropFirst(prefix.count)
            break
        }
        guard rest.count < name.count else { return nil }
        let stageDigits = rest.prefix(while: { $0.isASCII && $0.isNumber })
        guard let stage = Int(stageDigits), stage >= 2 else { return nil }
        rest = rest.dropFirst(stageDigits.count)
        guard let letter = rest.first, letter.isASCII, letter.isLowercase, let ascii = letter.asciiValue else { return nil }
        rest = rest.dropFirst()
        let blockDigits = rest.prefix(while: { $0.isASCII && $0.isNumber })
        rest = rest.dropFirst(blockDigits.count)
        var block = Int(ascii - UInt8(ascii: "a"))
        if !blockDigits.isEmpty {
            guard letter == "b", let number = Int(blockDigits) else { return nil }
            block = number
        }
        guard rest.hasPrefix("_branch") else { return nil }
        let branch = String(rest.dropFirst("_branch".count))
        guard ["1", "2a", "2b", "2c"].contains(branch) else { return nil }
        return (stage, block, branch)
    }

    static func resNetNames(_ layers: [CaffeLayer]) -> [String: String] {
        var names: [String: String] = [:]
        let lastFC = layers.last { $0.type == "InnerProduct" }?.name
        for layer in layers {
            if let (stage, block, branch) = parseResNetName(layer.name) {
                let module = "layer\(stage - 1).\(block)."
                let isNorm = layer.type == "BatchNorm" || layer.type == "Scale"
                switch branch {
                case "1": names[layer.name] = module + (isNorm ? "downsample.1" : "downsample.0")
                case "2a": names[layer.name] = module + (isNorm ? "bn1" : "conv1")
                case "2b": names[layer.name] = module + (isNorm ? "bn2" : "conv2")
                default: names[layer.name] = module + (isNorm ? "bn3" : "conv3")
                }
            } else if layer.name == "conv1" {
                names[layer.name] = "conv1"
            } else if layer.name == "bn_conv1" || layer.name == "scale_conv1" {
                names[layer.name] = "bn1"
            } else if layer.name == lastFC {
                names[layer.name] = "fc"
            }
        }
        return names
    }

    // MARK: Geometry

    /// The pooling and LRN layers of the network exactly as the file declares them, and its
    /// input size: what `zoo run` uses in place of the spec's, as for ONNX graphs.
    public struct Geometry {
        public var pools: [LayerOp]?
        public var lrns: [LayerOp]?
        public var inputSize: Size2?
    }

    public static func geometry(_ net: CaffeNet) -> Geometry {
        let main = networkLayers(net)
        var pools: [LayerOp]? = []
        var lrns: [LayerOp]? = []
        for layer in main {
            if let p = layer.pooling {
                if p.global {
                    if p.method == .average { pools?.append(.adaptiveAvgPool(Size2(1))) } else { pools = nil }
                    continue
                }
                let spec = PoolSpec(kernel: p.kernel, stride: p.stride,
                                    padding: Padding(top: p.pad.h, left: p.pad.w, bottom: p.pad.h, right: p.pad.w),
                                    ceilMode: p.ceil, countIncludePad: true)
                switch p.method {
                case .max: pools?.append(.maxPool(spec))
                case .average: pools?.append(.avgPool(spec))
                case .stochastic: pools = nil  // a weighted average at test time: no spec op runs it
                }
            }
            if let l = layer.lrn {
                if l.acrossChannels { lrns?.append(.lrn(LRNSpec(size: l.size, alpha: l.alpha, beta: l.beta, k: l.k))) } else { lrns = nil }
            }
        }
        return Geometry(pools: pools, lrns: lrns, inputSize: net.inputSize?.size)
    }
}
