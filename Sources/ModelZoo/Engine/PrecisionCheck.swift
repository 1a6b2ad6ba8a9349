import Foundation

/// How far a reduced-precision network moves the outputs of the float32 one on the same
/// weights and inputs: what `zoo bench --precision bf16` prints beside its timings.
public struct PrecisionCheck: Sendable, CustomStringConvertible {
    public let precision: Precision
    public let inputs: Int
    /// The largest |logit difference| over the largest |float32 logit| of its input.
    public let maxRelativeError: Double
    /// Inputs whose top-1 class is the same in both.
    public let top1Agreement: Double
    /// Where the inputs came from ("8 images from DIR", "16 random inputs").
    public let source: String

    public var description: String {
        String(format: "%@ against fp32 on %@: max relative logit error %.2e, top-1 agreement %.1f%%",
               precision.rawValue, source, maxRelativeError, top1Agreement * 100)
    }

    /// Runs both networks on `inputs` (each [batch, C, H, W]) and compares their outputs.
    /// `limit`: how many of the rows are real inputs (the last batch may be padded).
    public static func compare(_ net: ResolvedNetwork, weights: [String: Tensor], precision: Precision,
                               inputs: [Tensor], source: String, threads: Int? = nil,
                               calibration: Int8Calibration? = nil, limit: Int? = nil) throws -> PrecisionCheck {
        guard let first = inputs.first else {
            throw ZooError.invalidArgument("no inputs to compare the precisions on")
        }
        let batch = first.shape[0]
        let reference = try Network(net, weights: weights, batch: batch, threads: threads)
        let reduced = try Network(net, weights: weights, batch: batch, threads: threads, precision: precision,
                                  calibration: calibration)
        var comparison = LogitComparison(limit: limit)
        for input in inputs {
            comparison.add(reference: try reference.forward(input), try reduced.forward(input))
        }
        return PrecisionCheck(precision: precision, inputs: comparison.rows, maxRelativeError: comparison.worstRelativeError,
                              top1Agreement: comparison.agreement, source: source)
    }

    /// The images of `directory` (recursively) through the model's preprocessing, in
    /// batches of `batch` (the last one padded by repeating its first images).
    public static func imageBatches(model: LoadedModel, directory: String, batch: Int, limit: Int = 1000,
                                    preprocessing: Architecture.Preprocessing? = nil) throws -> [Tensor] {
        let paths = Array(try Int8Calibration.imagePaths(in: directory).prefix(limit))
        guard !paths.isEmpty else { throw ZooError.invalidArgument("\(directory): no JPEG or PNG images") }
        let net = model.network
        let size = Size2(net.input.h, net.input.w)
        let perImage = net.input.count
        var batches: [Tensor] = []
        var start = 0
        while start < paths.count {
            var data = [Float](repeating: 0, count: batch * perImage)
            for slot in 0..<batch {
                let path = paths[(start + slot) % paths.count]
                let image = try ImageDecoder.decode(path: path)
                let values = ImagePreprocessor.tensorData(image, for: preprocessing ?? model.preset.preprocessing, size: size,
                                                          channels: net.input.c, meanBGR: model.preset.meanBGR)
                data.replaceSubrange((slot * perImage)..<((slot + 1) * perImage), with: values)
            }
            batches.append(Tensor(shape: [batch, net.input.c, net.input.h, net.input.w], data: data))
            start += batch
        }
        return batches
    }

    public static func imageCount(in directory: String, limit: Int = 1000) throws -> Int {
        min(limit, try Int8Calibration.imagePaths(in: directory).count)
    }
}

/// Reduced-precision logits beside float32 ones, row by row (one row an input): what
/// `PrecisionCheck` reports and what the int8 agreement tuning steers by.
struct LogitComparison {
    /// Rows counted at most (the last batch may be padded with repeated inputs).
    let limit: Int?
    private(set) var rows = 0
    private(set) var agreeing = 0
    /// The largest |difference| over the largest |float32 logit| of its row.
    private(set) var worstRelativeError = 0.0
    private(set) var squaredError = 0.0
    /// Of the float32 logits around each row's mean.
    private(set) var variance = 0.0

    init(limit: Int? = nil) { self.limit = limit }

    /// Rows whose float32 top-1 class the reduced logits keep.
    var agreement: Double { Double(agreeing) / Double(max(rows, 1)) }
    /// Squared error over the float32 logits' variance, summed over the rows.
    var relativeSquaredError: Double { variance > 0 ? squaredError / variance : 0 }

    /// Both tensors [batch, classes] (or [batch, ...]) from the same inputs.
    mutating func add(reference: Tensor, _ reduced: Tensor) {
        let batch = reference.shape[0]
        let width = reference.count / max(batch, 1)
        for row in 0..<batch where limit.map({ rows < $0 }) ?? true {
            let x = reference.data[(row * width)..<((row + 1) * width)]
            let y = reduced.data[(row * width)..<((row + 1) * width)]
            let scale = Double(x.map { abs($0) }.max() ?? 0)
            let difference = Double(zip(x, y).map { abs($0 - $1) }.max() ?? 0)
            if scale > 0 { worstRelativeError = max(worstRelativeError, difference / scale) }
            let mean = x.reduce(0.0) { $0 + Double($1) } / Double(width)
            for (u, v) in zip(x, y) {
                squaredError += Double(u - v) * Double(u - v)
                variance += (Double(u) - mean) * (Double(u) - mean)
            }
            if x.indices.max(by: { x[$0] < x[$1] }) == y.indices.max(by: { y[$0] < y[$1] }) { agreeing += 1 }
            rows += 1
        }
    }
}
