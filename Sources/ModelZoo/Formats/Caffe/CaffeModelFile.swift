import CCaffe
import CProtobufC

/// A Caffe `.caffemodel`: a protobuf `NetParameter` holding the net definition and every
/// layer's weight blobs, in either layout:
/// - V2 (Caffe since 2015): `layer` (field 100), string types (`"Convolution"`), blobs in
///   LayerParameter field 7, usually with a `shape`.
/// - V1 (the 2014-2015 Model Zoo releases: bvlc_alexnet, VGG): `layers` (field 2), enum
///   types (`CONVOLUTION = 4`), blobs in field 6, usually with the legacy
///   num/channels/height/width instead of a shape.
///
/// Read the way `ONNXFile` reads: the file is memory-mapped, a bounds-checked wire scanner
/// finds every layer and blob, and each layer's non-blob fields (a few hundred bytes) are
/// unpacked by protobuf-c from the schema in Proto/caffe.proto (unknown fields skipped).
/// Blob data is not touched at open: `load` copies the packed floats straight from the file.
///
/// Checked at open, so that a bad file fails before anything runs: a blob whose data count
/// disagrees with its shape, a V1 type number Caffe never had, a layer reading a blob that
/// only a later layer writes (a cycle), a bottom nobody writes.
public final class CaffeModelFile: WeightFile, DescribesContents {
    public let path: String
    public var format: WeightFormat { .caffemodel }
    public var producer: String? { "caffe (\(layout.rawValue) layers)" }
    public let tensors: [TensorRecord]
    public let net: CaffeNet
    public var graph: FileGraph? { .caffe(net) }
    public var layout: CaffeNet.Layout { net.layout }

    private let file: MappedFile
    private let blobsByName: [String: CaffeBlob]

    public init(path: String) throws {
        let file = try MappedFile(path: path)
        guard file.size > 0 else {
            throw ZooError.unreadableFile(path: path, reason: "empty file: not a caffemodel")
        }
        let net: CaffeNet
        do {
            net = try CaffeNetParser(bytes: file.bytes, path: path).parse()
        } catch let error as WireFormatError {
            throw ZooError.unreadableFile(path: path, reason: "not a valid caffemodel: \(error.reason) (byte \(error.offset))")
        }
        try net.checkGraph(path: path)
        var records: [TensorRecord] = []
        var byName: [String: CaffeBlob] = [:]
        for layer in net.layers {
            for blob in layer.blobs {
                records.append(blob.record)
                byName[blob.name] = blob
            }
        }
        self.file = file
        self.path = path
        self.net = net
        self.tensors = records
        self.blobsByName = byName
    }

    public func load(_ name: String) throws -> Tensor {
        guard let blob = blobsByName[name] else {
            throw ZooError.badTensor(path: path, tensor: name, reason: "no such blob in the file")
        }
        let count = blob.record.elementCount
        let bytes = file.bytes
        switch blob.storage {
        case .packedFloat(let range):
            var values = [Float](repeating: 0, count: count)
            try values.withUnsafeMutableBytes { buffer in
                guard let base = buffer.baseAddress, range.count == buffer.count else { return }
                try file.read(range, into: base)
            }
            #if _endian(big)
            values = values.map { Float(bitPattern: UInt32(littleEndian: $0.bitPattern)) }
            #endif
            return Tensor(shape: blob.record.shape, data: values)
        case .packedDouble(let range):
            var values = [Float]()
            values.reserveCapacity(count)
            var offset = range.lowerBound
            while offset + 8 <= range.upperBound {
                values.append(Float(Double(bitPattern: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self).littleEndian)))
                offset += 8
            }
            return Tensor(shape: blob.record.shape, data: values)
        case .fixed32(let offsets):
            let values = offsets.map { Float(bitPattern: bytes.loadUnaligned(fromByteOffset: $0, as: UInt32.self).littleEndian) }
            return Tensor(shape: blob.record.shape, data: values)
        case .fixed64(let offsets):
            let values = offsets.map { Float(Double(bitPattern: bytes.loadUnaligned(fromByteOffset: $0, as: UInt64.self).littleEndian)) }
            return Tensor(shape: blob.record.shape, data: values)
        }
    }

    public var contentDetails: [(String, String)] {
        var details: [(String, String)] = [("layout", layout == .v1 ? "V1 (layers, field 2, enum types)" : "V2 (layer, field 100, string types)")]
        if !net.name.isEmpty { details.append(("net", net.name)) }
        if let input = net.inputSize {
            details.append(("input", "\(input.channels)x\(input.size.h)x\(input.size.w) (from \(input.source))"))
        }
        if let t = net.transform {
            var parts: [String] = []
            if t.cropSize > 0 { parts.append("crop \(t.cropSize)") }
            if !t.meanValues.isEmpty { parts.append("mean values " + t.meanValues.map { formatted($0) }.joined(separator: ", ")) }
            if let meanFile = t.meanFile, !meanFile.isEmpty { parts.append("mean file \(meanFile)") }
            if t.scale != 1 { parts.append("scale \(formatted(t.scale))") }
            parts.append(t.mirror ? "mirror" : "no mirror")
            details.append(("transform", parts.joined(separator: ", ")))
        }
        details.append(("layers", "\(net.layers.count)"))
        for layer in net.layers {
            var text = layer.type
            if !layer.blobs.isEmpty {
                text += ", blobs " + layer.blobs.map { $0.record.shape.map(String.init).joined(separator: "x") }.joined(separator: " + ")
            }
            if let phase = layer.phase { text += phase == .train ? " (TRAIN only)" : " (TEST only)" }
            details.append(("layer " + layer.name, text))
        }
        return details
    }

    private func formatted(_ value: Float) -> String {
        value == value.rounded() && abs(value) < 1e6 ? String(Int(value)) : String(value)
    }
}

/// The net a caffemodel declares: what the reader found, in the file's own terms.
public struct CaffeNet: Sendable {
    public enum Layout: String, Sendable { case v1 = "V1", v2 = "V2" }

    public struct InputSize: Sendable, Equatable {
        public var channels: Int
        public var size: Size2
        /// Where the file says it: input_shape, input_dim, an Input layer, or crop_size.
        public var source: String
    }

    public struct Transform: Sendable, Equatable {
        public var cropSize: Int
        public var meanValues: [Float]
        public var meanFile: String?
        public var mirror: Bool
        public var scale: Float
    }

    public var name: String
    public var layout: Layout
    public var layers: [CaffeLayer]
    public var inputs: [String]
    public var inputSize: InputSize?
    /// The data layer's transform_param (the TRAIN one when both phases have one: it is
    /// what the weights were trained with), or the legacy data_param fields.
    public var transform: Transform?

    /// Caffe runs layers in file order; a bottom must be a net input or the top of an
    /// earlier layer (a layer may write its own bottom: in-place ReLU, BatchNorm, Scale).
    func checkGraph(path: String) throws {
        var available = Set(inputs)
        var producers: [String: String] = [:]
        for layer in layers { for top in layer.tops where producers[top] == nil { producers[top] = layer.name } }
        for layer in layers {
            for bottom in layer.bottoms where !available.contains(bottom) {
                if let later = producers[bottom], later != layer.name {
                    throw ZooError.unreadableFile(path: path, reason: "layer '\(layer.name)' reads blob '\(bottom)', which only the later layer "
                        + "'\(later)' writes: the layer graph has a cycle or is out of order")
                }
                throw ZooError.unreadableFile(path: path, reason: "layer '\(layer.name)' reads blob '\(bottom)', which no layer or net input provides")
            }
            for top in layer.tops { available.insert(top) }
        }
    }
}

/// One layer, its parameters turned into Swift values, its blobs located but not read.
public struct CaffeLayer: Sendable {
    public enum Phase: Sendable { case train, test }

    public struct Convolution: Sendable, Equatable {
        public var numOutput: Int
        public var bias: Bool
        public var kernel: Size2
        public var stride: Size2
        public var pad: Size2
        public var dilation: Int
        public var group: Int
    }

    public struct Pooling: Sendable, Equatable {
        public enum Method: Sendable, Equatable { case max, average, stochastic }
        public var method: Method
        public var kernel: Size2
        public var stride: Size2
        public var pad: Size2
        public var global: Bool
        /// Caffe rounds pooled sizes up unless a later version's round_mode says FLOOR.
        public var ceil: Bool
    }

    public struct LRN: Sendable, Equatable {
        public var size: Int
        public var alpha: Double
        public var beta: Double
        public var k: Double
        public var acrossChannels: Bool
    }

    public var name: String
    /// The V2 type name; V1 enum values are given their V2 names (`CONVOLUTION` is
    /// `Convolution`, `SOFTMAX_LOSS` is `SoftmaxWithLoss`).
    public var type: String
    public var bottoms: [String]
    public var tops: [String]
    /// Set when the layer is only in one phase (include { phase: TRAIN }).
    public var phase: Phase?
    public var blobs: [CaffeBlob]
    public var convolution: Convolution?
    public var pooling: Pooling?
    public var lrn: LRN?
    public var innerProduct: (numOutput: Int, bias: Bool, transpose: Bool)?
    public var dropoutRatio: Double?
    public var batchNormEpsilon: Double?
    public var scaleHasBias: Bool?
    /// Eltwise: 0 PROD, 1 SUM, 2 MAX.
    public var eltwiseOperation: Int?
    public var eltwiseCoefficients: [Float] = []
    public var concatAxis: Int?
    public var reluNegativeSlope: Float?
    public var transform: CaffeNet.Transform?
    /// An Input layer's shapes.
    public var inputShapes: [[Int]] = []
}

/// One weight blob: where its values lie in the file, and the record it is listed as.
public struct CaffeBlob: Sendable {
    enum Storage: Sendable {
        /// `data` (field 5) packed: little-endian float32 in one run.
        case packedFloat(Range<Int>)
        /// `double_data` (field 8) packed.
        case packedDouble(Range<Int>)
        /// Unpacked `data`: one fixed32 per value (legal protobuf, rare in practice).
        case fixed32([Int])
        case fixed64([Int])
    }

    /// `<layer>[<index>]`, the tensor name the file is listed under.
    public var name: String { record.name }
    public let record: TensorRecord
    /// The file gave num/channels/height/width rather than a shape.
    public let legacyShape: Bool
    let storage: Storage
}

/// Turns the mapped bytes into a `CaffeNet`, scanning NetParameter and LayerParameter by
/// hand and unpacking their small non-blob parts with protobuf-c.
struct CaffeNetParser {
    let bytes: UnsafeRawBufferPointer
    let path: String

    /// Bounds on what an honest file holds, so a hostile one cannot make us allocate.
    static let maxLayers = 100_000
    static let maxBlobsPerLayer = 64
    static let maxRank = 8

    init(bytes: UnsafeRawBufferPointer, path: String) {
        self.bytes = bytes; self.path = path
    }

    func parse() throws -> CaffeNet {
        var scanner = WireScanner(bytes, range: 0..<bytes.count)
        var header: [UInt8] = []
        var v2Ranges: [Range<Int>] = []
        var v1Ranges: [Range<Int>] = []
        while true {
            let start = scanner.position
            let next: WireField?
            do {
                next = try scanner.next()
            } catch let error as WireFormatError {
                let count = v1Ranges.count + v2Ranges.count
                let last = (v2Ranges.last.map { layerName($0, field: 1) } ?? v1Ranges.last.map { layerName($0, field: 4) }) ?? nil
                throw unreadable("truncated or corrupt after \(count) layers" + (last.map { " (the last whole one is '\($0)')" } ?? "")
                    + ": \(error.reason) (byte \(error.offset))")
            }
            guard let field = next else { break }
            switch (field.number, field.wireType) {
            case (100, .lengthDelimited): v2Ranges.append(field.payload)
            case (2, .lengthDelimited): v1Ranges.append(field.payload)
            default: header += bytes[start..<scanner.position]
            }
            guard v1Ranges.count + v2Ranges.count <= Self.maxLayers else {
                throw unreadable("more than \(Self.maxLayers) layers")
            }
        }
        if !v1Ranges.isEmpty && !v2Ranges.isEmpty {
            throw unreadable("the net has both V1 'layers' (\(v1Ranges.count)) and V2 'layer' (\(v2Ranges.count)) entries; Caffe reads neither")
        }
        if v1Ranges.isEmpty && v2Ranges.isEmpty {
            throw unreadable("no layers (NetParameter fields 2 and 100 are both absent): not a caffemodel")
        }
        let layout: CaffeNet.Layout = v1Ranges.isEmpty ? .v2 : .v1

        var name = "", inputs: [String] = [], inputSize: CaffeNet.InputSize?
        try header.withUnsafeBufferPointer { buffer in
            guard let message = caffe__net_parameter__unpack(nil, buffer.count, buffer.baseAddress) else {
                throw unreadable("the NetParameter header does not parse as protobuf (wrong field types)")
            }
            defer { caffe__net_parameter__free_unpacked(message, nil) }
            let net = message.pointee
            name = string(net.name)
            inputs = strings(net.input, net.n_input)
            if net.n_input_shape > 0, let shapes = net.input_shape, let first = shapes[0]?.pointee {
                let dims = int64s(first.dim, first.n_dim)
                if dims.count == 4 { inputSize = .init(channels: dims[1], size: Size2(dims[2], dims[3]), source: "input_shape") }
            } else if net.n_input_dim >= 4, let dims = net.input_dim {
                inputSize = .init(channels: Int(dims[1]), size: Size2(Int(dims[2]), Int(dims[3])), source: "input_dim")
            }
        }

        var layers: [CaffeLayer] = []
        layers.reserveCapacity(v1Ranges.count + v2Ranges.count)
        for (index, range) in (layout == .v1 ? v1Ranges : v2Ranges).enumerated() {
            layers.append(try parseLayer(range, index: index, layout: layout))
        }

        // The input size: the net's own declaration, else an Input layer, else the data
        // layer's crop (train_val nets, as most Model Zoo files are).
        if inputSize == nil, let input = layers.first(where: { $0.type == "Input" }), let dims = input.inputShapes.first, dims.count == 4 {
            inputSize = .init(channels: dims[1], size: Size2(dims[2], dims[3]), source: "Input layer '\(input.name)'")
        }
        let dataLayers = layers.filter { $0.transform != nil }
        let transform = (dataLayers.first { $0.phase == .train } ?? dataLayers.first)?.transform
        if inputSize == nil, let t = transform, t.cropSize > 0 {
            inputSize = .init(channels: 3, size: Size2(t.cropSize), source: "crop_size")
        }
        if let size = inputSize, !(1...1_000_000).contains(size.channels) || !(1...1_000_000).contains(size.size.h)
            || !(1...1_000_000).contains(size.size.w) {
            throw unreadable("input size \(size.channels)x\(size.size.h)x\(size.size.w) (from \(size.source)) is not a usable image size")
        }
        return CaffeNet(name: name, layout: layout, layers: layers, inputs: inputs, inputSize: inputSize, transform: transform)
    }

    /// The name field of a layer's bytes, found without unpacking the layer.
    private func layerName(_ range: Range<Int>, field number: Int) -> String? {
        var scanner = WireScanner(bytes, range: range)
        while let field = try? scanner.next() {
            if field.number == number && field.wireType == .lengthDelimited { return scanner.string(field) }
        }
        return nil
    }

    private func unreadable(_ reason: String) -> ZooError { ZooError.unreadableFile(path: path, reason: reason) }

    private func parseLayer(_ range: Range<Int>, index: Int, layout: CaffeNet.Layout) throws -> CaffeLayer {
        let blobField = layout == .v1 ? 6 : 7
        var scanner = WireScanner(bytes, range: range)
        var header: [UInt8] = []
        var blobRanges: [Range<Int>] = []
        var hasV0 = false
        do {
            while true {
                let start = scanner.position
                guard let field = try scanner.next() else { break }
                if field.number == blobField && field.wireType == .lengthDelimited {
                    blobRanges.append(field.payload)
                    guard blobRanges.count <= Self.maxBlobsPerLayer else {
                        throw unreadable("layer #\(index) has more than \(Self.maxBlobsPerLayer) blobs")
                    }
                } else {
                    if layout == .v1 && field.number == 1 { hasV0 = true }
                    header += bytes[start..<scanner.position]
                }
            }
        } catch let error as WireFormatError {
            throw unreadable("layer #\(index): \(error.reason) (byte \(error.offset); truncated file?)")
        }

        var layer = try header.withUnsafeBufferPointer { buffer -> CaffeLayer in
            switch layout {
            case .v2: return try unpackV2(buffer, index: index)
            case .v1: return try unpackV1(buffer, index: index, hasV0: hasV0)
            }
        }
        for (blobIndex, blobRange) in blobRanges.enumerated() {
            layer.blobs.append(try parseBlob(blobRange, name: "\(layer.name)[\(blobIndex)]", layer: layer.name))
        }
        return layer
    }

    private func unpackV2(_ buffer: UnsafeBufferPointer<UInt8>, index: Int) throws -> CaffeLayer {
        guard let message = caffe__layer_parameter__unpack(nil, buffer.count, buffer.baseAddress) else {
            throw unreadable("layer #\(index) does not parse as a LayerParameter")
        }
        defer { caffe__layer_parameter__free_unpacked(message, nil) }
        let p = message.pointee
        let name = string(p.name).isEmpty ? "layer #\(index)" : string(p.name)
        guard let type = p.type.map({ String(cString: $0) }), !type.isEmpty else {
            throw unreadable("layer '\(name)' has no type")
        }
        var layer = CaffeLayer(name: name, type: type, bottoms: strings(p.bottom, p.n_bottom), tops: strings(p.top, p.n_top),
                               phase: phase(p.include, p.n_include, p.has_phase != 0 ? p.phase : nil), blobs: [])
        try fill(&layer, conv: p.convolution_param, pool: p.pooling_param, lrn: p.lrn_param, ip: p.inner_product_param,
                 dropout: p.dropout_param, eltwise: p.eltwise_param, concat: p.concat_param, relu: p.relu_param,
                 transform: p.transform_param, data: p.data_param)
        if let bn = p.batch_norm_param?.pointee { layer.batchNormEpsilon = Double(bn.eps) } else if type == "BatchNorm" { layer.batchNormEpsilon = 1e-5 }
        if let scale = p.scale_param?.pointee { layer.scaleHasBias = scale.bias_term != 0 } else if type == "Scale" { layer.scaleHasBias = false }
        if let input = p.input_param?.pointee, let shapes = input.shape {
            for i in 0..<min(input.n_shape, 16) {
                if let shape = shapes[i]?.pointee { layer.inputShapes.append(int64s(shape.dim, shape.n_dim)) }
            }
        }
        return layer
    }

    private func unpackV1(_ buffer: UnsafeBufferPointer<UInt8>, index: Int, hasV0: Bool) throws -> CaffeLayer {
        guard let message = caffe__v1_layer_parameter__unpack(nil, buffer.count, buffer.baseAddress) else {
            throw unreadable("layer #\(index) does not parse as a V1LayerParameter")
        }
        defer { caffe__v1_layer_parameter__free_unpacked(message, nil) }
        let p = message.pointee
        let name = string(p.name).isEmpty ? "layer #\(index)" : string(p.name)
        guard p.has_type != 0 else {
            throw unreadable(hasV0
                ? "layer '\(name)' is in the V0 layout (before 2014), which is not read: upgrade it with Caffe's upgrade_net_proto_binary"
                : "layer '\(name)' has no type")
        }
        let number = Int(Int32(bitPattern: p.type.rawValue))
        guard let type = Self.v1TypeNames[number] else {
            throw unreadable("layer '\(name)' has V1 type number \(number), which is not a Caffe V1 layer type")
        }
        var layer = CaffeLayer(name: name, type: type, bottoms: strings(p.bottom, p.n_bottom), tops: strings(p.top, p.n_top),
                               phase: phase(p.include, p.n_include, nil), blobs: [])
        try fill(&layer, conv: p.convolution_param, pool: p.pooling_param, lrn: p.lrn_param, ip: p.inner_product_param,
                 dropout: p.dropout_param, eltwise: p.eltwise_param, concat: p.concat_param, relu: p.relu_param,
                 transform: p.transform_param, data: p.data_param)
        return layer
    }

    /// V1LayerParameter.LayerType values and the V2 type names Caffe's upgrader gives them.
    static let v1TypeNames: [Int: String] = [
        0: "", 35: "AbsVal", 1: "Accuracy", 30: "ArgMax", 2: "BNLL", 3: "Concat", 37: "ContrastiveLoss",
        4: "Convolution", 5: "Data", 39: "Deconvolution", 6: "Dropout", 32: "DummyData", 7: "EuclideanLoss",
        25: "Eltwise", 38: "Exp", 8: "Flatten", 9: "HDF5Data", 10: "HDF5Output", 28: "HingeLoss", 11: "Im2col",
        12: "ImageData", 13: "InfogainLoss", 14: "InnerProduct", 15: "LRN", 29: "MemoryData",
        16: "MultinomialLogisticLoss", 34: "MVN", 17: "Pooling", 26: "Power", 18: "ReLU", 19: "Sigmoid",
        27: "SigmoidCrossEntropyLoss", 36: "Silence", 20: "Softmax", 21: "SoftmaxWithLoss", 22: "Split",
        33: "Slice", 23: "TanH", 24: "WindowData", 31: "Threshold",
    ]

    private func phase(_ rules: UnsafeMutablePointer<UnsafeMutablePointer<Caffe__NetStateRule>?>?, _ count: Int,
                       _ own: Caffe__Phase?) -> CaffeLayer.Phase? {
        var found = own
        if found == nil, count > 0, let rule = rules?[0]?.pointee, rule.has_phase != 0 { found = rule.phase }
        guard let found else { return nil }
        return found == CAFFE__PHASE__TRAIN ? .train : .test
    }

    private func fill(_ layer: inout CaffeLayer,
                      conv: UnsafeMutablePointer<Caffe__ConvolutionParameter>?,
                      pool: UnsafeMutablePointer<Caffe__PoolingParameter>?,
                      lrn: UnsafeMutablePointer<Caffe__LRNParameter>?,
                      ip: UnsafeMutablePointer<Caffe__InnerProductParameter>?,
                      dropout: UnsafeMutablePointer<Caffe__DropoutParameter>?,
                      eltwise: UnsafeMutablePointer<Caffe__EltwiseParameter>?,
                      concat: UnsafeMutablePointer<Caffe__ConcatParameter>?,
                      relu: UnsafeMutablePointer<Caffe__ReLUParameter>?,
                      transform: UnsafeMutablePointer<Caffe__TransformationParameter>?,
                      data: UnsafeMutablePointer<Caffe__DataParameter>?) throws {
        let name = layer.name
        func bounded(_ value: UInt32, _ what: String, min: Int = 0) throws -> Int {
            let v = Int(value)
            guard v >= min, v <= 1 << 20 else { throw unreadable("layer '\(name)': \(what) \(v) is out of range") }
            return v
        }
        if let c = conv?.pointee {
            func pick(_ repeated: UnsafeMutablePointer<UInt32>?, _ n: Int, _ hasH: Int32, _ h: UInt32, _ hasW: Int32, _ w: UInt32,
                      default d: UInt32, _ what: String, min: Int) throws -> Size2 {
                if hasH != 0 || hasW != 0 { return Size2(try bounded(h, what, min: min), try bounded(w, what, min: min)) }
                guard n > 0, let values = repeated else { return Size2(try bounded(d, what, min: min)) }
                if n == 1 { return Size2(try bounded(values[0], what, min: min)) }
                guard n == 2 else { throw unreadable("layer '\(name)': \(n) values for \(what); only 2-D convolutions are read") }
                return Size2(try bounded(values[0], what, min: min), try bounded(values[1], what, min: min))
            }
            let kernel = try pick(c.kernel_size, c.n_kernel_size, c.has_kernel_h, c.kernel_h, c.has_kernel_w, c.kernel_w,
                                  default: 0, "kernel size", min: 1)
            let stride = try pick(c.stride, c.n_stride, c.has_stride_h, c.stride_h, c.has_stride_w, c.stride_w,
                                  default: 1, "stride", min: 1)
            let pad = try pick(c.pad, c.n_pad, c.has_pad_h, c.pad_h, c.has_pad_w, c.pad_w, default: 0, "pad", min: 0)
            let dilation = c.n_dilation > 0 ? try bounded(c.dilation?[0] ?? 1, "dilation", min: 1) : 1
            layer.convolution = .init(numOutput: try bounded(c.num_output, "num_output", min: 1), bias: c.bias_term != 0,
                                      kernel: kernel, stride: stride, pad: pad, dilation: dilation,
                                      group: try bounded(c.group, "group", min: 1))
        }
        if let p = pool?.pointee {
            func pair(_ hasH: Int32, _ h: UInt32, _ hasW: Int32, _ w: UInt32, _ hasBoth: Int32, _ both: UInt32,
                      default d: UInt32, _ what: String, min: Int) throws -> Size2 {
                if hasH != 0 || hasW != 0 { return Size2(try bounded(h, what, min: min), try bounded(w, what, min: min)) }
                return Size2(try bounded(hasBoth != 0 ? both : d, what, min: min))
            }
            let global = p.global_pooling != 0
            let method: CaffeLayer.Pooling.Method = p.pool == CAFFE__POOLING_PARAMETER__POOL_METHOD__AVE ? .average
                : p.pool == CAFFE__POOLING_PARAMETER__POOL_METHOD__MAX ? .max : .stochastic
            layer.pooling = .init(
                method: method,
                kernel: try pair(p.has_kernel_h, p.kernel_h, p.has_kernel_w, p.kernel_w, p.has_kernel_size, p.kernel_size,
                                 default: global ? 1 : 0, "kernel size", min: 1),
                stride: try pair(p.has_stride_h, p.stride_h, p.has_stride_w, p.stride_w, p.has_stride, p.stride, default: 1, "stride", min: 1),
                pad: try pair(p.has_pad_h, p.pad_h, p.has_pad_w, p.pad_w, p.has_pad, p.pad, default: 0, "pad", min: 0),
                global: global, ceil: p.round_mode != CAFFE__POOLING_PARAMETER__ROUND_MODE__FLOOR)
        }
        if let l = lrn?.pointee {
            layer.lrn = .init(size: try bounded(l.local_size, "local_size", min: 1), alpha: Double(l.alpha), beta: Double(l.beta),
                              k: Double(l.k), acrossChannels: l.norm_region == CAFFE__LRNPARAMETER__NORM_REGION__ACROSS_CHANNELS)
        }
        if let i = ip?.pointee {
            layer.innerProduct = (try bounded(i.num_output, "num_output", min: 1), i.bias_term != 0, i.transpose != 0)
        }
        if let d = dropout?.pointee { layer.dropoutRatio = Double(d.dropout_ratio) }
        if let e = eltwise?.pointee {
            layer.eltwiseOperation = Int(e.operation.rawValue)
            layer.eltwiseCoefficients = e.coeff.map { Array(UnsafeBufferPointer(start: $0, count: min(e.n_coeff, 1024))) } ?? []
        }
        if let c = concat?.pointee { layer.concatAxis = c.has_axis != 0 ? Int(c.axis) : Int(c.concat_dim) }
        if let r = relu?.pointee { layer.reluNegativeSlope = r.negative_slope }
        if let t = transform?.pointee {
            layer.transform = .init(cropSize: try bounded(t.crop_size, "crop_size"),
                                    meanValues: t.mean_value.map { Array(UnsafeBufferPointer(start: $0, count: min(t.n_mean_value, 64))) } ?? [],
                                    meanFile: t.mean_file.map { String(cString: $0) }, mirror: t.mirror != 0, scale: t.scale)
        } else if let d = data?.pointee, d.has_crop_size != 0 || d.mean_file != nil || d.has_mirror != 0 {
            layer.transform = .init(cropSize: try bounded(d.crop_size, "crop_size"), meanValues: [],
                                    meanFile: d.mean_file.map { String(cString: $0) }, mirror: d.mirror != 0, scale: d.scale)
        }
    }

    /// Finds a BlobProto's shape and data without copying the data.
    private func parseBlob(_ range: Range<Int>, name: String, layer: String) throws -> CaffeBlob {
        func bad(_ reason: String) -> ZooError { ZooError.unreadableFile(path: path, reason: "layer '\(layer)': blob \(name): \(reason)") }
        var scanner = WireScanner(bytes, range: range)
        var shape: [Int]?
        var legacy: [Int: Int] = [:]
        var packedFloats: [Range<Int>] = [], packedDoubles: [Range<Int>] = []
        var floats32: [Int] = [], floats64: [Int] = []
        do {
            while let field = try scanner.next() {
                switch (field.number, field.wireType) {
                case (7, .lengthDelimited):
                    var dims: [Int] = []
                    var inner = WireScanner(bytes, range: field.payload)
                    while let dim = try inner.next() {
                        guard dim.number == 1 else { continue }
                        let values = dim.wireType == .lengthDelimited ? try decodePackedVarints(bytes, dim.payload)
                            : dim.wireType == .varint ? [dim.signedValue] : []
                        dims += values.map { Int(truncatingIfNeeded: $0) }
                        guard dims.count <= Self.maxRank else { throw bad("shape has more than \(Self.maxRank) dimensions") }
                    }
                    shape = dims
                case (1...4, .varint):
                    legacy[field.number] = Int(Int32(truncatingIfNeeded: field.signedValue))
                case (5, .lengthDelimited): packedFloats.append(field.payload)
                case (5, .fixed32): floats32.append(field.payload.lowerBound)
                case (8, .lengthDelimited): packedDoubles.append(field.payload)
                case (8, .fixed64): floats64.append(field.payload.lowerBound)
                default: continue
                }
            }
        } catch let error as WireFormatError {
            throw bad("\(error.reason) (byte \(error.offset); truncated file?)")
        }
        var dims: [Int]
        var isLegacy = false
        if let shape {
            dims = shape
        } else {
            isLegacy = true
            dims = [legacy[1] ?? 0, legacy[2] ?? 0, legacy[3] ?? 0, legacy[4] ?? 0]
        }
        guard let count = checkedElementCount(dims) else { throw bad("shape \(dims) has a negative or overflowing dimension") }

        let storage: CaffeBlob.Storage
        var stored: Int
        // One packed run is read in place; several runs or unpacked values become a list of
        // offsets, in file order. Floats and doubles differ only in width and storage case.
        func gather(packed: [Range<Int>], unpacked: [Int], width: Int, kind: String,
                    whole: (Range<Int>) -> CaffeBlob.Storage, scattered: ([Int]) -> CaffeBlob.Storage)
            throws -> (CaffeBlob.Storage, Int) {
            for run in packed where run.count % width != 0 {
                throw bad("packed \(kind) data of \(run.count) bytes is not a whole number of \(kind)s")
            }
            if packed.count == 1 && unpacked.isEmpty, let run = packed.first { return (whole(run), run.count / width) }
            var offsets = unpacked
            for run in packed { offsets += stride(from: run.lowerBound, to: run.upperBound, by: width) }
            if !unpacked.isEmpty && !packed.isEmpty { offsets.sort() }
            return (scattered(offsets), offsets.count)
        }
        if !packedFloats.isEmpty || !floats32.isEmpty {
            guard packedDoubles.isEmpty && floats64.isEmpty else { throw bad("holds both float and double data") }
            (storage, stored) = try gather(packed: packedFloats, unpacked: floats32, width: 4, kind: "float",
                                           whole: { .packedFloat($0) }, scattered: { .fixed32($0) })
        } else if !packedDoubles.isEmpty || !floats64.isEmpty {
            (storage, stored) = try gather(packed: packedDoubles, unpacked: floats64, width: 8, kind: "double",
                                           whole: { .packedDouble($0) }, scattered: { .fixed64($0) })
        } else {
            storage = .packedFloat(0..<0)
            stored = 0
        }
        guard stored == count else {
            throw bad("holds \(stored) values but its shape \(dims) needs \(count)")
        }
        let dtype: DType = { if case .packedDouble = storage { return .float64 }; if case .fixed64 = storage { return .float64 }; return .float32 }()
        return CaffeBlob(record: TensorRecord(name: name, shape: dims, dtype: dtype, byteCount: count * (dtype.byteWidth ?? 4)),
                         legacyShape: isLegacy, storage: storage)
    }

    private func string(_ pointer: UnsafeMutablePointer<CChar>?) -> String {
        pointer.map { String(cString: $0) } ?? ""
    }

    private func strings(_ array: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?, _ count: Int) -> [String] {
        guard let array else { return [] }
        return (0..<count).map { array[$0].map { String(cString: $0) } ?? "" }
    }

    private func int64s(_ values: UnsafeMutablePointer<Int64>?, _ count: Int) -> [Int] {
        guard let values else { return [] }
        return (0..<min(count, Self.maxRank)).map { Int(truncatingIfNeeded: values[$0]) }
    }
}
