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
        var worst = 0.0
        var agree = 0, total = 0
        for input in inputs {
            let a = try reference.forward(input)
            let b = try reduced.forward(input)
            let width = a.count / batch
            for row in 0..<batch where limit.map({ total < $0 }) ?? true {
                let x = a.data[(row * width)..<((row + 1) * width)]
                let y = b.data[(row * width)..<((row + 1) * width)]
                let scale = Double(x.map { abs($0) }.max() ?? 0)
                let difference = Double(zip(x, y).map { abs($0 - $1) }.max() ?? 0)
                if scale > 0 { worst = max(worst, difference / scale) }
                if x.indices.max(by: { x[$0] < x[$1] }) == y.indices.max(by: { y[$0] < y[$1] }) { agree += 1 }
                total += 1
            }
        }
        return PrecisionCheck(precision: precision, inputs: total, maxRelativeError: worst,
                              top1Agreement: Double(agree) / Double(max(total, 1)), source: source)
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
