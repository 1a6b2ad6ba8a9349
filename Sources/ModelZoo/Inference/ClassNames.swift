/// Class names saved with fine-tuned weights, so `predict` prints the user's own labels.
public enum ClassNames {
    /// The metadata key every writer uses: the names joined by newlines.
    public static let metadataKey = "zoo.class_names"

    public static func stored(in file: WeightFile) -> [String]? {
        nil
    }
}
