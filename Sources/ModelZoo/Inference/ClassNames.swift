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
        FileMetadata.value(metadataKey, in: file).map(decode)
    }
}

/// The string metadata a file carries where its format has a place for it: safetensors
/// `__metadata__`, ONNX `metadata_props`, HDF5 root attributes. zoo's writers put the
/// architecture id and class names there.
public enum FileMetadata {
    public static func value(_ key: String, in file: WeightFile) -> String? {
        if let safetensors = file as? SafetensorsFile { return safetensors.metadata[key] }
        if let onnx = file as? ONNXFile { return onnx.metadata[key] }
        if let hdf5 = file as? HDF5File { return hdf5.rootStringAttributes[key] }
        return nil
    }
}
