import Foundation

/// Features of a list of images at a transfer plan's cut, one row per image.
public struct FeatureSet: Sendable {
    /// Values per image (the cut volume, flattened C,H,W).
    public let dimension: Int
    public let paths: [String]
    public let labels: [Int]
    /// paths.count * dimension values; rows of skipped images are zeros.
    public let values: [Float]
    /// Why each unusable image was skipped, by index into `paths`.
    public let skipped: [Int: String]

    /// The rows that came from readable images.
    public var usableIndices: [Int] { paths.indices.filter { skipped[$0] == nil } }
}

/// Decodes, preprocesses and runs images through the frozen backbone with oneDNN, in
/// batches; caches the result on disk so a rerun on the same backbone and data skips it.
public final class FeatureExtractor {
    public struct Options: Sendable {
        public var batch: Int = 32
        public var threads: Int?
        /// Refuse unreadable images instead of skipping them.
        public var strict = false
        /// The weights' preset: their preprocessing and means (nil: the architecture's
        /// standard preset).
        public var preset: WeightsPreset?
        /// Replaces the preset's preprocessing.
        public var preprocessing: Architecture.Preprocessing?
        /// How rows with a view number are drawn (rows without one are centre views).
        public var augmentation: Augmentation?
        /// The backbone's arithmetic (bf16 features differ from fp32 ones: part of the cache key).
        public var precision: Precision = .fp32
        /// The activation scales under `.int8`.
        public var calibration: Int8Calibration?
        /// How the backbone's float32 3x3 convolutions are computed.
        public var convolutions: ConvolutionAlgorithm = .winograd
        public init() {}
    }

    public struct Result {
        public let features: FeatureSet
        /// Path of the cache file read or written, nil when caching was off.
        public let cachePath: String?
        public let fromCache: Bool
        /// Images per second of the extraction (decode, preprocess, forward), 0 from cache.
        public let imagesPerSecond: Double
    }

    let plan: TransferPlan
    let weights: [String: Tensor]
    let options: Options
    let preprocessing: Architecture.Preprocessing
    let meanBGR: [Float]?

    public init(plan: TransferPlan, weights: [String: Tensor], options: Options) {
        self.plan = plan
        self.weights = weights
        self.options = options
        let preset = options.preset ?? WeightsPreset.standard(for: plan.source.architecture)
        self.preprocessing = options.preprocessing ?? preset.preprocessing
        self.meanBGR = preset.meanBGR
    }

    /// Extracts features of `paths` (one row each; a path may repeat with other `views`),
    /// reusing `cacheBase + ".features-<key>.bin"` when it matches the weights file, the cut,
    /// the preprocessing, the augmentation and every row's image (path, size and
    /// modification time) and view. A row's view is nil for the evaluation view (the
    /// preprocessing's centre crop) or the number of an augmented view. `warn` gets one
    /// message per skipped image; `progress` gets (done, total) after each batch.
    public func extract(paths: [String], labels: [Int], views: [Int?]? = nil, weightsPath: String, cacheBase: String?,
                        warn: (String) -> Void, progress: ((Int, Int) -> Void)? = nil) throws -> Result {
        let views = views ?? [Int?](repeating: nil, count: paths.count)
        guard views.count == paths.count else {
            throw ZooError.invalidArgument("\(views.count) views given for \(paths.count) images")
        }
        if views.contains(where: { $0 != nil }), options.augmentation == nil {
            throw ZooError.invalidArgument("augmented views requested without augmentation settings")
        }
        let cachePath = cacheBase.map {
            $0 + ".features-" + cacheKey(paths: paths, labels: labels, views: views, weightsPath: weightsPath) + ".bin"
        }
        if let cachePath, let cached = FeatureCache.read(path: cachePath, dimension: plan.featureShape.count,
                                                          paths: paths, labels: labels) {
            if options.strict, let (index, reason) = cached.skipped.min(by: { $0.key < $1.key }) {
                throw ZooError.unreadableFile(path: paths[index], reason: reason)
            }
            var warned = Set<String>()
            for index in cached.skipped.keys.sorted() where warned.insert(paths[index]).inserted {
                warn("skipping \(paths[index]): \(cached.skipped[index] ?? "unreadable")")
            }
            return Result(features: cached, cachePath: cachePath, fromCache: true, imagesPerSecond: 0)
        }
        let start = DispatchTime.now().uptimeNanoseconds
        let features = try compute(paths: paths, labels: labels, views: views, warn: warn, progress: progress)
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        if let cachePath {
            // A cache that cannot be written costs only time on the next run: warn and go on.
            do { try FeatureCache.write(features, to: cachePath) } catch { warn("could not write the feature cache: \(error)") }
        }
        return Result(features: features, cachePath: cachePath, fromCache: false,
                      imagesPerSecond: Double(paths.count) / max(seconds, 1e-9))
    }

    func compute(paths: [String], labels: [Int], views: [Int?], warn: (String) -> Void,
                 progress: ((Int, Int) -> Void)?) throws -> FeatureSet {
        let input = plan.source.input
        let dimension = plan.featureShape.count
        let batch = max(1, min(options.batch, paths.count))
        guard let total = checkedElementCount([paths.count, dimension]) else {
            throw ZooError.invalidArgument("\(paths.count) images of \(dimension) features do not fit in memory")
        }
        var values = [Float](repeating: 0, count: total)
        var skipped: [Int: String] = [:]
        let network = plan.cutIndex == 0 ? nil
            : try Network(plan.backbone, weights: weights, batch: batch, threads: options.threads,
                          precision: options.precision, calibration: options.calibration,
                          convolutions: options.convolutions)
        var batchInput = [Float](repeating: 0, count: batch * input.count)
        // Augmented views of one image are consecutive rows: decode it once for all of them.
        var lastDecoded: (path: String, image: Swift.Result<RGBImage, Error>)? = nil
        var warned = Set<String>()
        let size = Size2(input.h, input.w)
        var start = 0
        while start < paths.count {
            let end = min(start + batch, paths.count)
            for slot in 0..<batch {
                let index = start + slot
                var image: [Float]? = nil
                if index < end {
                    do {
                        let path = paths[index]
                        if lastDecoded?.path != path {
                            lastDecoded = (path, Swift.Result { try ImageDecoder.decode(path: path) })
                        }
                        guard let decoded = try lastDecoded?.image.get() else { throw ZooError.unreadableFile(path: path, reason: "not decoded") }
                        if let view = views[index], let augmentation = options.augmentation {
                            let drawn = augmentation.draw(path: path, view: view, width: decoded.width, height: decoded.height)
                            image = ImagePreprocessor.augmentedTensorData(decoded, for: preprocessing, size: size, channels: input.c,
                                                                          crop: drawn.crop, flip: drawn.flip,
                                                                          meanBGR: meanBGR)
                        } else {
                            image = ImagePreprocessor.tensorData(decoded, for: preprocessing, size: size, channels: input.c,
                                                                 meanBGR: meanBGR)
                        }
                    } catch {
                        if options.strict { throw error }
                        let reason: String
                        if case let ZooError.unreadableFile(_, why) = error { reason = why } else { reason = "\(error)" }
                        skipped[index] = reason
                        if warned.insert(paths[index]).inserted { warn("skipping \(paths[index]): \(reason)") }
                    }
                }
                let offset = slot * input.count
                if let image, image.count == input.count {
                    batchInput.replaceSubrange(offset..<(offset + input.count), with: image)
                } else {
                    for i in offset..<(offset + input.count) { batchInput[i] = 0 }
                }
            }
            let output: [Float]
            if let network {
                output = try network.forward(Tensor(shape: [batch, input.c, input.h, input.w], data: batchInput)).data
            } else {
                output = batchInput
            }
            for index in start..<end where skipped[index] == nil {
                let slot = index - start
                values.replaceSubrange(index * dimension..<((index + 1) * dimension),
                                       with: output[(slot * dimension)..<((slot + 1) * dimension)])
            }
            start = end
            progress?(end, paths.count)
        }
        return FeatureSet(dimension: dimension, paths: paths, labels: labels, values: values, skipped: skipped)
    }

    /// A hash of everything the features depend on: the weights file (path, size, mtime),
    /// the architecture and cut, the input size and preprocessing, the augmentation, and
    /// every row's image and view.
    func cacheKey(paths: [String], labels: [Int], views: [Int?]? = nil, weightsPath: String) -> String {
        var text = "zoo-features-v2\n"
        text += Self.fileStamp(weightsPath) + "\n"
        text += "\(plan.source.architecture.id) cut=\(plan.featureLayer) input=\(plan.source.input) pre=\(preprocessing.rawValue)\n"
        let views = views ?? []
        if views.contains(where: { $0 != nil }) { text += (options.augmentation?.key ?? "augment none") + "\n" }
        if options.precision != .fp32 { text += "precision \(options.precision.rawValue)\n" }
        if options.convolutions != .winograd { text += "convolutions \(options.convolutions.rawValue)\n" }
        var stamps: [String: String] = [:]
        for (index, (path, label)) in zip(paths, labels).enumerated() {
            let stamp = stamps[path] ?? Self.fileStamp(path)
            stamps[path] = stamp
            let view = index < views.count ? views[index].map { " view \($0)" } ?? "" : ""
            text += "\(label) \(stamp)\(view)\n"
        }
        return String(format: "%016llx", FNV1a.hash(text))
    }

    static func fileStamp(_ path: String) -> String {
        let absolute = URL(fileURLWithPath: path).standardizedFileURL.path
        let attributes = try? FileManager.default.attributesOfItem(atPath: absolute)
        let size = (attributes?[.size] as? NSNumber)?.int64Value ?? -1
        let mtime = (attributes?[.modificationDate] as? Date)?.timeIntervalSince1970 ?? -1
        return "\(absolute) \(size) \(mtime)"
    }
}

/// 64-bit FNV-1a: a stable, dependency-free hash for cache keys (not for security).
enum FNV1a {
    static func hash(_ text: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            h ^= UInt64(byte)
            h = h &* 0x0000_0100_0000_01B3
        }
        return h
    }
}

/// The on-disk feature cache: "ZOOFEAT1", a little-endian UInt64 header length, a JSON header
/// (dimension, count, labels, skipped images with reasons) and count x dimension float32
/// values. Anything unexpected makes `read` return nil and the features are recomputed.
enum FeatureCache {
    static let magic = Array("ZOOFEAT1".utf8)

    static func write(_ features: FeatureSet, to path: String) throws {
        let skipped = features.skipped.map { ["index": $0.key, "reason": $0.value] as [String: Any] }
        let header: [String: Any] = ["dimension": features.dimension, "count": features.paths.count,
                                     "labels": features.labels, "skipped": skipped]
        let json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        let length = UInt64(json.count)
        let lengthBytes = (0..<8).map { UInt8(truncatingIfNeeded: length >> (8 * UInt64($0))) }
        try AtomicFileWriter.write(to: path) { writer in
            try writer.write(magic + lengthBytes + [UInt8](json))
            try writer.writeLittleEndian(features.values)
        }
    }

    static func read(path: String, dimension: Int, paths: [String], labels: [Int]) -> FeatureSet? {
        guard let data = FileManager.default.contents(atPath: path), data.count >= 16 else { return nil }
        let bytes = [UInt8](data)
        guard Array(bytes[0..<8]) == magic else { return nil }
        var length: UInt64 = 0
        for i in 0..<8 { length |= UInt64(bytes[8 + i]) << (8 * UInt64(i)) }
        guard length <= UInt64(bytes.count - 16) else { return nil }
        let headerEnd = 16 + Int(length)
        guard let header = try? JSONSerialization.jsonObject(with: Data(bytes[16..<headerEnd])) as? [String: Any],
              header["dimension"] as? Int == dimension, header["count"] as? Int == paths.count,
              header["labels"] as? [Int] == labels,
              let skippedList = header["skipped"] as? [[String: Any]],
              let expected = checkedByteCount([paths.count, dimension], .float32),
              bytes.count - headerEnd == expected else { return nil }
        var skipped: [Int: String] = [:]
        for entry in skippedList {
            guard let index = entry["index"] as? Int, paths.indices.contains(index),
                  let reason = entry["reason"] as? String else { return nil }
            skipped[index] = reason
        }
        var values = [Float](repeating: 0, count: paths.count * dimension)
        values.withUnsafeMutableBytes { target in
            bytes.withUnsafeBytes { source in
                target.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[headerEnd...]))
            }
        }
        #if _endian(big)
        values = values.map { Float(bitPattern: UInt32(littleEndian: $0.bitPattern)) }
        #endif
        return FeatureSet(dimension: dimension, paths: paths, labels: labels, values: values, skipped: skipped)
    }
}
