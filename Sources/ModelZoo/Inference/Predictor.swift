import Foundation

/// Image classification with a loaded model: decode, preprocess by the weights' convention,
/// forward, softmax, top classes.
public final class Predictor {
    public struct Prediction: Sendable {
        public let index: Int
        public let label: String
        public let probability: Double
    }

    public let model: LoadedModel
    public let preprocessing: Architecture.Preprocessing
    private let network: Network

    public init(model: LoadedModel, preprocessing: Architecture.Preprocessing? = nil, threads: Int? = nil,
                precision: Precision = .fp32, calibration: Int8Calibration? = nil) throws {
        self.model = model
        self.preprocessing = preprocessing ?? model.architecture.preprocessing
        network = try Network(model.network, weights: model.weights, batch: 1, threads: threads, precision: precision,
                              calibration: calibration)
    }

    /// The input tensor for one image file.
    public func inputTensor(path: String) throws -> Tensor {
        let image = try ImageDecoder.decode(path: path)
        let net = model.network
        let data = ImagePreprocessor.tensorData(image, for: preprocessing, size: Size2(net.input.h, net.input.w),
                                                channels: net.input.c, meanBGR: model.architecture.meanBGR)
        return Tensor(shape: [1, net.input.c, net.input.h, net.input.w], data: data)
    }

    public func probabilities(path: String) throws -> [Double] {
        Self.softmax(try network.forward(try inputTensor(path: path)).data)
    }

    public func classify(path: String, top: Int) throws -> [Prediction] {
        let p = try probabilities(path: path)
        let order = p.indices.sorted { p[$0] > p[$1] }.prefix(top)
        return order.map { i in
            let names = model.classNames
            let label = names.flatMap { i < $0.count ? $0[i] : nil } ?? "class \(i)"
            return Prediction(index: i, label: label, probability: p[i])
        }
    }

    public static func softmax(_ logits: [Float]) -> [Double] {
        guard let maxLogit = logits.max() else { return [] }
        let e = logits.map { exp(Double($0 - maxLogit)) }
        let sum = e.reduce(0, +)
        return e.map { $0 / sum }
    }
}
