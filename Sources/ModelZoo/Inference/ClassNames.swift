/// Class names saved with fine-tuned weights, so `predict` prints the user's own labels.
/// Every writer stores them under one metadata key, as the names joined by newlines:
/// safetensors `__metadata__`, ONNX `metadata_props`, an HDF5 root attribute.
public enum ClassNames {
    public static let metadataKey = "zoo.class_names"

    public static func encode(_ names: [String]) -> String { names.joined(separator: "\n") }

    public static func decode(_ text: String) -> [String] {
        text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    }

    public static func stored(in file: WeightFile) -> [String]? {
        if let safetensors = file as? SafetensorsFile, let text = safetensors.metadata[metadataKey] {
            return decode(text)
        }
        if let onnx = file as? ONNXFile, let text = onnx.metadata[metadataKey] {
            return decode(text)
        }
        if let hdf5 = file as? HDF5File, let text = hdf5.rootStringAttributes[metadataKey] {
            return decode(text)
        }
        return nil
    }
}
