import Foundation

/// The activation ranges `--precision int8` quantizes with: one clipping threshold per
/// activation tensor (by the name of the layer that writes it; `input` for the image),
/// measured by running the float32 network over calibration images.
///
/// Method: for every tensor, a 2048-bin histogram of |x| over all calibration images (its
/// range doubles, merging bin pairs, whenever a larger value arrives); the threshold is the
/// 99.99th percentile of that histogram. Percentile rather than the plain maximum because a
/// handful of outliers would otherwise stretch the 255 levels over values that almost never
/// occur; 99.99% rather than KL/entropy because it is cheap, order-independent and keeps
/// the largest activations of the head's input (which decide the top-1 class) unclipped in
/// practice. A tensor is then stored as u8 (after a ReLU, levels 0...255 over [0, T]) or s8
/// (levels -127...127 over [-T, T]). Weights get one scale per output channel from their own
/// maximum, at compile time: they need no calibration.
///
/// Saved beside the weights as `FILE.int8.json`, so calibration runs once.
public struct Int8Calibration: Codable, Sendable, Equatable {
    public static let format = "zoo-int8-calibration"
    public static let percentile = 0.9999
    static let bins = 2048

    public var format: String = Int8Calibration.format
    public var version: Int = 1
    public var architecture: String
    /// [C, H, W] the thresholds were measured at.
    public var input: [Int]
    /// A fingerprint of the weights (sampled values of every tensor): a calibration made for
    /// other weights of the same shape is refused.
    public var weightsFingerprint: String
    public var method: String
    public var images: Int
    public var source: String
    public var thresholds: [String: Float]

    enum CodingKeys: String, CodingKey {
        case format, version, architecture, input, method, images, source, thresholds
        case weightsFingerprint = "weights_fingerprint"
    }

    /// Where the calibration of a weight file lives.
    public static func path(besideWeights weights: String) -> String { weights + ".int8.json" }

    /// FNV-1a over the names, shapes and every 1024th value of every tensor: cheap on a
    /// 500 MB model, and different for retrained or fine-tuned weights.
    public static func fingerprint(_ weights: [String: Tensor]) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ value: UInt64) {
            for shift in stride(from: 0, to: 64, by: 8) {
                hash ^= (value >> UInt64(shift)) & 0xff
                hash = hash &* 0x100_0000_01b3
            }
        }
        for name in weights.keys.sorted() {
            guard let tensor = weights[name] else { continue }
            for byte in name.utf8 { mix(UInt64(byte)) }
            for d in tensor.shape { mix(UInt64(truncatingIfNeeded: d)) }
            var i = 0
            while i < tensor.data.count {
                mix(UInt64(tensor.data[i].bitPattern))
                i += 1024
            }
        }
        return String(format: "%016llx", hash)
    }

    /// Runs the float32 network over `batches` (each [N, C, H, W]) and records every
    /// activation tensor's threshold.
    public static func calibrate(_ net: ResolvedNetwork, weights: [String: Tensor], batches: [Tensor],
                                 source: String, threads: Int? = nil) throws -> Int8Calibration {
        guard let first = batches.first else {
            throw ZooError.invalidArgument("int8 calibration needs at least one image")
        }
        let network = try Network(net, weights: weights, batch: first.shape[0], threads: threads, probing: true)
        var histograms: [String: AbsHistogram] = [:]
        var images = 0
        for batch in batches {
            try network.forwardProbing(batch) { name, values in
                histograms[name, default: AbsHistogram(bins: bins)].add(values)
            }
            images += batch.shape[0]
        }
        var thresholds: [String: Float] = [:]
        for (name, histogram) in histograms {
            let t = histogram.percentile(percentile)
            if t > 0, t.isFinite { thresholds[name] = t }
        }
        return Int8Calibration(architecture: net.architecture.id, input: [net.input.c, net.input.h, net.input.w],
                               weightsFingerprint: fingerprint(weights),
                               method: "percentile \(percentile * 100) of |x|, \(bins)-bin histogram per tensor; "
                                   + "weights per output channel by their maximum",
                               images: images, source: source, thresholds: thresholds)
    }

    /// Calibrates on the images of `directory` (and its subfolders), each through the
    /// model's own preprocessing, up to `limit` of them in name order.
    public static func calibrate(model: LoadedModel, directory: String, preprocessing: Architecture.Preprocessing? = nil,
                                 limit: Int = 500, batch: Int = 8, threads: Int? = nil) throws -> Int8Calibration {
        let count = min(limit, try imagePaths(in: directory).count)
        guard count > 0 else {
            throw ZooError.invalidArgument("\(directory): no JPEG or PNG images to calibrate int8 on")
        }
        // The last batch repeats the first images to fill up: the histogram sees a few
        // values twice, which moves a percentile very little.
        let batches = try PrecisionCheck.imageBatches(model: model, directory: directory, batch: min(batch, count),
                                                      limit: limit, preprocessing: preprocessing)
        let net = model.network
        var result = try calibrate(net, weights: model.weights, batches: batches, source: directory, threads: threads)
        result.images = count
        return result
    }

    /// Image files under `directory`, recursively (class folders are fine), sorted by path.
    static func imagePaths(in directory: String) throws -> [String] {
        guard ImageFolder.isDirectory(directory) else {
            throw ZooError.unreadableFile(path: directory, reason: "not a folder of calibration images")
        }
        var result = try ImageFolder.imageFiles(in: directory)
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        for entry in entries.sorted() where !entry.hasPrefix(".") {
            let path = (directory as NSString).appendingPathComponent(entry)
            if ImageFolder.isDirectory(path) { result += try imagePaths(in: path) }
        }
        return result.sorted()
    }

    public func write(to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try encoder.encode(self)
        do {
            try data.write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw ZooError.unreadableFile(path: path, reason: "cannot write the int8 calibration: \(error.localizedDescription)")
        }
    }

    public static func read(path: String) throws -> Int8Calibration {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ZooError.unreadableFile(path: path, reason: "no int8 calibration here")
        }
        let decoded: Int8Calibration
        do {
            decoded = try JSONDecoder().decode(Int8Calibration.self, from: data)
        } catch DecodingError.keyNotFound(let key, _) {
            throw ZooError.unreadableFile(path: path, reason: "not an int8 calibration file: no '\(key.stringValue)'")
        } catch DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context) {
            let field = context.codingPath.map(\.stringValue).joined(separator: ".")
            throw ZooError.unreadableFile(path: path, reason: "not an int8 calibration file: '\(field)' has the wrong type")
        } catch {
            throw ZooError.unreadableFile(path: path, reason: "not an int8 calibration file (not JSON)")
        }
        guard decoded.format == format, decoded.version == 1 else {
            throw ZooError.unreadableFile(path: path, reason: "not a version 1 \(format) file")
        }
        guard decoded.thresholds.values.allSatisfy({ $0.isFinite && $0 > 0 }) else {
            throw ZooError.unreadableFile(path: path, reason: "thresholds must be finite and positive")
        }
        return decoded
    }

    /// Refuses a calibration made for another network, input size or set of weights.
    public func check(against net: ResolvedNetwork, weights: [String: Tensor], path: String) throws {
        if architecture != net.architecture.id || input != [net.input.c, net.input.h, net.input.w] {
            throw ZooError.invalidArgument("\(path) calibrates \(architecture) at \(input), not \(net.architecture.id) at "
                + "\([net.input.c, net.input.h, net.input.w]): calibrate again with --calibrate DIR")
        }
        if weightsFingerprint != Self.fingerprint(weights) {
            throw ZooError.invalidArgument("\(path) was made for other weights: calibrate again with --calibrate DIR")
        }
    }

    /// The calibration for a model: measured on `directory` and saved beside the weights
    /// when one is given, else the saved one.
    public static func resolve(model: LoadedModel, weightsPath: String, directory: String?,
                               preprocessing: Architecture.Preprocessing? = nil, threads: Int? = nil,
                               log: (String) -> Void = { _ in }) throws -> Int8Calibration {
        let path = path(besideWeights: weightsPath)
        if let directory {
            let calibration = try calibrate(model: model, directory: directory, preprocessing: preprocessing,
                                            threads: threads)
            try calibration.write(to: path)
            log("int8: calibrated on \(calibration.images) images from \(directory); scales saved to \(path)")
            return calibration
        }
        guard FileManager.default.fileExists(atPath: path) else {
            throw ZooError.invalidArgument("--precision int8 needs activation scales: none saved at \(path); "
                + "run once with --calibrate DIR (a few hundred images like the ones the model will see)")
        }
        let calibration = try read(path: path)
        try calibration.check(against: model.network, weights: model.weights, path: path)
        return calibration
    }
}

/// Counts of |x| in equal bins over [0, range); the range doubles to take larger values.
struct AbsHistogram {
    private(set) var counts: [UInt64]
    private(set) var range: Float = 0
    private(set) var total: UInt64 = 0

    init(bins: Int) { counts = [UInt64](repeating: 0, count: bins) }

    mutating func add(_ values: UnsafeBufferPointer<Float>) {
        var largest: Float = 0
        for v in values where v.isFinite { largest = max(largest, abs(v)) }
        guard largest > 0 else {
            counts[0] += UInt64(values.count)
            total += UInt64(values.count)
            return
        }
        if range == 0 { range = largest * 1.0001 }
        while largest >= range {
            let half = counts.count / 2
            for i in 0..<half { counts[i] = counts[2 * i] + counts[2 * i + 1] }
            for i in half..<counts.count { counts[i] = 0 }
            range *= 2
        }
        let bins = counts.count
        let perUnit = Float(bins) / range
        counts.withUnsafeMutableBufferPointer { c in
            for v in values {
                let a = abs(v)
                guard a.isFinite else { continue }
                c[min(Int(a * perUnit), bins - 1)] += 1
            }
        }
        total += UInt64(values.count)
    }

    /// The upper edge of the bin where the cumulative count reaches `fraction` of all values.
    func percentile(_ fraction: Double) -> Float {
        guard total > 0, range > 0 else { return 0 }
        let target = UInt64((Double(total) * fraction).rounded(.up))
        var sum: UInt64 = 0
        for (i, c) in counts.enumerated() {
            sum += c
            if sum >= target { return range * Float(i + 1) / Float(counts.count) }
        }
        return range
    }
}
