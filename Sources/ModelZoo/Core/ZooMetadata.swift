/// The keys zoo's writers put in a file's string metadata (safetensors `__metadata__`, ONNX
/// `metadata_props`, HDF5 root attributes) and its loader reads back: the one list of them,
/// so the HDF5 reader, the writers and the loader cannot disagree.
public enum ZooMetadata {
    /// The architecture id the weights are an instance of.
    public static let architecture = "zoo.architecture"
    /// The weights preset (`resnet50-caffe2`) the weights were loaded with.
    public static let preset = "zoo.preset"
    /// The file the weights were converted from.
    public static let source = "zoo.source"
    /// What wrote the file ("zoo finetune", "zoo convert").
    public static let producer = "zoo.producer"
    /// The preprocessing the weights were trained with (`Architecture.Preprocessing`).
    public static let preprocessing = "zoo.preprocessing"
    /// Per-channel means of the caffe preprocessing, comma-separated, B, G, R or one value.
    public static let meanBGR = "zoo.mean_bgr"
    /// The output class names, joined by newlines.
    public static let classNames = "zoo.class_names"

    /// Every key, for readers that must ask for keys by name (HDF5 attributes).
    public static let allKeys = [architecture, preset, source, producer, preprocessing, meanBGR, classNames]

    public static func encode(classNames names: [String]) -> String { names.joined(separator: "\n") }

    public static func decode(classNames text: String) -> [String] {
        text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    }

    public static func encode(means: [Float]) -> String { means.map { String($0) }.joined(separator: ",") }

    /// One or three finite means, or nil: the value came from a file.
    public static func decode(means text: String) -> [Float]? {
        let means = text.split(separator: ",").compactMap { Double($0) }
        guard means.count == 1 || means.count == 3, means.allSatisfy({ $0.isFinite && abs($0) < 1e6 }) else { return nil }
        return means.map { Float($0) }
    }
}
