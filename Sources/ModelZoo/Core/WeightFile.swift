/// The formats a weight file can be in, as the readers tell them apart.
public enum WeightFormat: String, Sendable, Codable {
    case onnx
    /// Keras 2 legacy HDF5: a full `model.save` file or a `save_weights` file.
    case kerasH5 = "keras-h5"
    /// Keras 3 `.weights.h5`: `layers/<name>/vars/<i>`.
    case kerasWeightsH5 = "keras-weights-h5"
    /// HDF5 with one dataset per tensor, as h5py users write by hand.
    case hdf5
    case safetensors
    case npy
    /// PyTorch `torch.save` of a state_dict or checkpoint: the zip archive or the legacy layout.
    case pth
    /// Caffe `.caffemodel`: a protobuf NetParameter, V1 (`layers`) or V2 (`layer`) layout.
    case caffemodel
    /// Keras 3 native `.keras`: a zip of config.json, metadata.json and model.weights.h5.
    case keras
}

/// One tensor as a file declares it: the file's own name, shape and element type.
/// Nothing is read until `WeightFile.load` is called.
public struct TensorRecord: Sendable, Equatable, Codable {
    public let name: String
    public let shape: [Int]
    public let dtype: DType
    /// Bytes the data occupies in its stored type.
    public let byteCount: Int

    public init(name: String, shape: [Int], dtype: DType, byteCount: Int) {
        self.name = name; self.shape = shape; self.dtype = dtype; self.byteCount = byteCount
    }

    public var elementCount: Int { shape.reduce(1, *) }
}

/// A weight file opened by a reader: a flat map from the file's own tensor names to
/// records, with the data read on demand. Readers know formats, never models.
public protocol WeightFile: AnyObject {
    var path: String { get }
    var format: WeightFormat { get }
    /// Who wrote it, where the file says ("pytorch 2.5.0", "keras 3.15.1", "onnx-caffe2").
    var producer: String? { get }
    /// Every tensor, in the order the file holds them.
    var tensors: [TensorRecord] { get }
    /// The tensor's values as float32 (float16 and bfloat16 are widened; other types throw
    /// `ZooError.badTensor`).
    func load(_ name: String) throws -> Tensor
    /// Tensors the file's own index lists but does not hold (a Keras `weight_names` entry
    /// without its dataset): missing tensors, reported by name.
    var absentTensors: [String] { get }
    /// The string metadata the file carries where its format has a place for it:
    /// safetensors `__metadata__`, ONNX `metadata_props`, the `zoo.*` root attributes of an
    /// HDF5 file (`ZooMetadata` names the keys zoo writes). Empty for formats without one.
    var metadata: [String: String] { get }
    /// The network the file describes beside its tensors, when it has one: what the
    /// mappings read to group tensors into layers and to run the net as the file declares it.
    var graph: FileGraph? { get }
}

extension WeightFile {
    /// Reads every tensor a model load could read (float32, and the float16, bfloat16 and
    /// float64 the readers widen), in file order, handing each to `body`: the one way
    /// `inspect --load`, the fuzz harness's check and `verify` read a whole file.
    public func forEachLoadedTensor(_ body: (TensorRecord, Tensor) throws -> Void = { _, _ in }) throws {
        for record in tensors where record.dtype.convertsToFloat32 || record.dtype == .float64 {
            try body(record, try load(record.name))
        }
    }

    public var absentTensors: [String] { [] }
    public var metadata: [String: String] { [:] }
    public var graph: FileGraph? { nil }
}

/// The network description a weight file carries, by kind: a reader fills it, the mapping
/// for that source reads it, and no caller needs the reader's class.
public enum FileGraph {
    /// An ONNX model's graph: nodes, initializers, inputs and outputs.
    case onnx(ONNXGraph)
    /// A caffemodel's NetParameter: layers, their parameters and blobs.
    case caffe(CaffeNet)
    /// What a Keras file says about its model: the `model_config` JSON (a legacy `.h5`) or
    /// `config.json` (a `.keras` archive), and the layer names it declares.
    case keras(KerasGraph)

    public var onnx: ONNXGraph? { if case .onnx(let g) = self { return g }; return nil }
    public var caffe: CaffeNet? { if case .caffe(let n) = self { return n }; return nil }
    public var keras: KerasGraph? { if case .keras(let k) = self { return k }; return nil }
}

/// A Keras file's own account of its model.
public struct KerasGraph: Sendable {
    /// The model's config as JSON, when the file has one (`save_weights` files do not).
    public var modelConfigJSON: String?
    /// Layer group name -> the name the layer declares (Keras 3 names weight groups by
    /// creation order; `KerasGrouping` pairs through the declared names).
    public var declaredLayerNames: [String: String]

    public init(modelConfigJSON: String?, declaredLayerNames: [String: String]) {
        self.modelConfigJSON = modelConfigJSON; self.declaredLayerNames = declaredLayerNames
    }
}

/// A file that has more to say about itself than its tensors: `zoo inspect` prints these
/// lines after the format and producer (a checkpoint's epoch, where its weights are).
public protocol DescribesContents {
    /// `(label, text)` pairs, in the order to print them.
    var contentDetails: [(String, String)] { get }
}
