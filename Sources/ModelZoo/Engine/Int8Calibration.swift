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
/// Then the agreement tuning (`tune`): 8-bit steps add noise at every layer, and where a
/// network's top-1 answers come close together (deep residual streams, random weights) the
/// sum of that noise changes answers. The calibration images are run through the float32
/// and the int8 network; while fewer than `agreementTarget` of their top-1 classes agree,
/// whole blocks (a ResNet block, an inception module, a VGG stage: `TransferBlocks`) are
/// kept out of int8 (in bf16 where the processor has AVX512-BF16, else fp32:
/// `Precision.int8Fallback`), the block whose copy removes the most logit error first, as
/// accuracy-driven quantization tools fall back layer by layer. The blocks chosen are saved
/// as `floatLayers`, with the agreement reached.
///
/// Saved beside the weights as `FILE.int8.json`, so calibration runs once.
public struct Int8Calibration: Codable, Sendable, Equatable {
    public static let format = "zoo-int8-calibration"
    public static let percentile = 0.9999
    /// The default share of calibration images whose top-1 class int8 must keep.
    public static let defaultAgreementTarget = 0.99
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
    /// Convolutions and inner products kept out of int8, computed in
    /// `Precision.int8Fallback` (absent in files written before the agreement tuning: every
    /// layer int8).
    public var floatLayers: [String]?
    /// What the agreement tuning measured; nil when it did not run.
    public var tuning: Tuning?

    /// The agreement tuning's record: how often int8 kept the float32 top-1 class on the
    /// calibration images, with every block in int8 and with `floatBlocks` kept out of it.
    public struct Tuning: Codable, Sendable, Equatable {
        public var target: Double
        public var images: Int
        public var allInt8Agreement: Double
        public var agreement: Double
        /// Blocks kept out of int8, in the order they were chosen.
        public var floatBlocks: [String]
        /// The share of the network's multiply-accumulates left out of int8.
        public var floatMACs: Double
        /// What those blocks computed in when the agreement was measured: bf16 or fp32.
        public var fallback: String

        enum CodingKeys: String, CodingKey {
            case target, images, agreement, fallback
            case allInt8Agreement = "all_int8_agreement"
            case floatBlocks = "float_blocks"
            case floatMACs = "float_macs"
        }
    }

    enum CodingKeys: String, CodingKey {
        case format, version, architecture, input, method, images, source, thresholds, tuning
        case weightsFingerprint = "weights_fingerprint"
        case floatLayers = "float_layers"
    }

    /// What an int8 network built from this calibration computes outside int8, for labels:
    /// "4 blocks in bf16, 25% of the work"; nil when every block is int8.
    public var fallbackSummary: String? {
        guard let tuning, !tuning.floatBlocks.isEmpty else { return nil }
        return String(format: "%d block%@ in %@, %.0f%% of the work", tuning.floatBlocks.count,
                      tuning.floatBlocks.count == 1 ? "" : "s", tuning.fallback, tuning.floatMACs * 100)
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
    /// With `agreementTarget` > 0, then tunes (see `tune`) on the first `images` rows of
    /// `batches` (default: all).
    public static func calibrate(_ net: ResolvedNetwork, weights: [String: Tensor], batches: [Tensor],
                                 source: String, threads: Int? = nil, agreementTarget: Double = 0,
                                 images limit: Int? = nil, log: (String) -> Void = { _ in }) throws -> Int8Calibration {
        guard let first = batches.first else {
            throw ZooError.invalidArgument("int8 calibration needs at least one image")
        }
        let network = try Network(net, weights: weights, batch: first.shape[0], threads: threads, probing: true)
        var histograms: [String: AbsHistogram] = [:]
        var images = 0
        // The float32 logits, which the tuning compares int8's with.
        var logits: [Tensor] = []
        for batch in batches {
            logits.append(try network.forwardProbing(batch) { name, values in
                histograms[name, default: AbsHistogram(bins: bins)].add(values)
            })
            images += batch.shape[0]
        }
        var thresholds: [String: Float] = [:]
        for (name, histogram) in histograms {
            let t = histogram.percentile(percentile)
            if t > 0, t.isFinite { thresholds[name] = t }
        }
        let measured = Int8Calibration(architecture: net.architecture.id, input: [net.input.c, net.input.h, net.input.w],
                                       weightsFingerprint: fingerprint(weights),
                                       method: "percentile \(percentile * 100) of |x|, \(bins)-bin histogram per tensor; "
                                           + "weights per output channel by their maximum",
                                       images: limit ?? images, source: source, thresholds: thresholds)
        guard agreementTarget > 0 else { return measured }
        return try tune(measured, net: net, weights: weights, batches: batches, float32Logits: logits,
                        target: agreementTarget, images: limit, threads: threads, log: log)
    }

    /// Keeps blocks out of int8 until the network keeps `target` of the float32 top-1 classes
    /// on `batches`. Ranking: each block alone out of int8, by the logit error left (squared
    /// error over the float32 logits' variance, summed over the images); then blocks join
    /// in that order, measuring the agreement after each, and once the target holds each
    /// goes back to int8 where the target still holds without it. A network whose output is
    /// not a class vector (a no-top feature map) is returned as it is.
    static func tune(_ calibration: Int8Calibration, net: ResolvedNetwork, weights: [String: Tensor], batches: [Tensor],
                     float32Logits expected: [Tensor], target: Double, images limit: Int?, threads: Int?,
                     log: (String) -> Void) throws -> Int8Calibration {
        guard let first = expected.first, first.shape.count == 2, first.shape[1] > 1 else { return calibration }
        let batch = first.shape[0]
        let rows = min(limit ?? batches.count * batch, batches.count * batch)

        func measure(_ blocks: [QuantizableBlock]) throws -> LogitComparison {
            var candidate = calibration
            candidate.floatLayers = Set(blocks.flatMap(\.layers)).sorted()
            let network = try Network(net, weights: weights, batch: batch, threads: threads, precision: .int8,
                                      calibration: candidate)
            var comparison = LogitComparison(limit: rows)
            for (input, x) in zip(batches, expected) { comparison.add(reference: x, try network.forward(input)) }
            return comparison
        }
        func percent(_ x: Double) -> String { String(format: "%.1f%%", x * 100) }
        let totalMACs = max(net.totalMACs, 1)
        func share(_ blocks: [QuantizableBlock]) -> Double { Double(blocks.reduce(0) { $0 + $1.macs }) / Double(totalMACs) }

        let allInt8 = try measure([]).agreement
        var tuned = calibration
        let fallback = Precision.int8Fallback.rawValue
        tuned.method += "; blocks kept out of int8 (\(fallback)) until it keeps \(percent(target)) of the float32 "
            + "top-1 classes on the calibration images"
        tuned.floatLayers = []
        tuned.tuning = Tuning(target: target, images: rows, allInt8Agreement: allInt8,
                              agreement: allInt8, floatBlocks: [], floatMACs: 0, fallback: fallback)
        guard allInt8 < target else { return tuned }

        let blocks = quantizableBlocks(net)
        log("int8: all in int8 keeps \(percent(allInt8)) of the top-1 classes on \(rows) calibration images "
            + "(target \(percent(target))); ranking \(blocks.count) blocks to keep in \(fallback)")
        // Sorting is stable: blocks leaving the same error keep the network's order.
        let ranked = try blocks.map { (block: $0, error: try measure([$0]).relativeSquaredError) }
            .enumerated().sorted { ($0.element.error, $0.offset) < ($1.element.error, $1.offset) }.map(\.element.block)
        var chosen: [QuantizableBlock] = []
        var reached = allInt8
        for block in ranked {
            chosen.append(block)
            reached = try measure(chosen).agreement
            log("int8: + \(block.name) in \(fallback): \(percent(reached)) kept, "
                + "\(percent(share(chosen))) of the work in \(fallback)")
            if reached >= target { break }
        }
        // The agreement does not grow block by block (a block's noise can cancel
        // another's), so a block chosen early may no longer be needed: each goes back to
        // int8, the last chosen first, where the target still holds without it.
        if reached >= target {
            for index in chosen.indices.reversed() where chosen.count > 1 {
                var without = chosen
                let block = without.remove(at: index)
                let trial = try measure(without).agreement
                guard trial >= target else { continue }
                chosen = without
                reached = trial
                log("int8: - \(block.name) back in int8: \(percent(reached)) kept, "
                    + "\(percent(share(chosen))) of the work in \(fallback)")
            }
        }
        tuned.floatLayers = Set(chosen.flatMap(\.layers)).sorted()
        tuned.tuning?.floatBlocks = chosen.map(\.name)
        tuned.tuning?.agreement = reached
        tuned.tuning?.floatMACs = share(chosen)
        return tuned
    }

    /// A block of the network (`TransferBlocks`) as the tuning moves it: the layers in it
    /// int8 computes and their multiply-accumulates.
    struct QuantizableBlock {
        let name: String
        let layers: [String]
        let macs: Int
    }

    /// The network's blocks that hold a layer int8 computes: a convolution, or an inner
    /// product other than the classifier (which is float32 always).
    static func quantizableBlocks(_ net: ResolvedNetwork) -> [QuantizableBlock] {
        TransferBlocks.blocks(of: net).compactMap { block in
            let quantizable = block.layers.map { net.layers[$0] }.filter { resolved in
                switch resolved.layer.op {
                case .conv: return true
                case .linear: return resolved.layer.name != net.architecture.headLayer
                default: return false
                }
            }
            guard !quantizable.isEmpty else { return nil }
            return QuantizableBlock(name: block.name, layers: quantizable.map(\.layer.name),
                                    macs: quantizable.reduce(0) { $0 + $1.macs })
        }
    }

    /// Calibrates on the images of `directory` (and its subfolders), each through the
    /// model's own preprocessing, up to `limit` of them in name order.
    public static func calibrate(model: LoadedModel, directory: String, preprocessing: Architecture.Preprocessing? = nil,
                                 limit: Int = 500, batch: Int = 8, threads: Int? = nil,
                                 agreementTarget: Double = defaultAgreementTarget,
                                 log: (String) -> Void = { _ in }) throws -> Int8Calibration {
        let count = min(limit, try imagePaths(in: directory).count)
        guard count > 0 else {
            throw ZooError.invalidArgument("\(directory): no JPEG or PNG images to calibrate int8 on")
        }
        // The last batch repeats the first images to fill up: the histogram sees a few
        // values twice, which moves a percentile very little.
        let batches = try PrecisionCheck.imageBatches(model: model, directory: directory, batch: min(batch, count),
                                                      limit: limit, preprocessing: preprocessing)
        let net = model.network
        return try calibrate(net, weights: model.weights, batches: batches, source: directory, threads: threads,
                             agreementTarget: agreementTarget, images: count, log: log)
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
                               agreementTarget: Double = defaultAgreementTarget,
                               log: (String) -> Void = { _ in }) throws -> Int8Calibration {
        let path = path(besideWeights: weightsPath)
        if let directory {
            let calibration = try calibrate(model: model, directory: directory, preprocessing: preprocessing,
                                            threads: threads, agreementTarget: agreementTarget, log: log)
            try calibration.write(to: path)
            var kept = ""
            if let tuning = calibration.tuning {
                kept = String(format: "; top-1 kept on %.1f%% of them", tuning.agreement * 100)
                    + (calibration.fallbackSummary.map { ", with \($0)" } ?? ", all in int8")
                if tuning.agreement < tuning.target {
                    // Every block out of int8 and still short: the fallback precision's own
                    // rounding moves those answers; that precision alone is as good.
                    kept += String(format: ", short of the %.1f%% target even so (about the same network as --precision %@)",
                                   tuning.target * 100, tuning.fallback)
                }
            }
            log("int8: calibrated on \(calibration.images) images from \(directory)\(kept); scales saved to \(path)")
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
