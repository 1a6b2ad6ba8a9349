import ArgumentParser
import Foundation
import ModelZoo

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Raw forward pass: NCHW float32 .npy in, logits .npy out.",
        discussion: "The input is NCHW whatever the file's own layout (Keras files too): the network is canonical.")

    @OptionGroup var source: ModelOptions
    @Option(help: "Input tensor, float32 [N, C, H, W].")
    var input: String
    @Option(help: "Where to write the logits, float32 [N, classes] (a no-top file: its last feature map, [N, C, H, W]).")
    var output: String

    func run() throws {
        try reportingErrors {
            let x = try NPY.read(path: input)
            guard x.shape.count == 4 else {
                throw ZooError.badTensor(path: input, tensor: "input", reason: "expected NCHW [N, C, H, W], found shape \(x.shape)")
            }
            let model = try ModelLoader.load(path: source.weights, architecture: source.arch, inputSize: Size2(x.shape[2], x.shape[3]))
            let expected = [model.network.input.c, model.network.input.h, model.network.input.w]
            guard Array(x.shape.dropFirst()) == expected else {
                throw ZooError.badTensor(path: input, tensor: "input",
                                         reason: "expected [N, \(expected.map(String.init).joined(separator: ", "))], found \(x.shape)")
            }
            let network = try Network(model.network, weights: model.weights, batch: x.shape[0], threads: source.threads,
                                      precision: source.precision, calibration: try source.calibration(for: model),
                                      convolutions: source.convolutions)
            let logits = try network.forward(x)
            try NPY.write(logits, to: output)
            if model.report.noTop {
                print("\(model.report.architecture ?? "?") (no top): wrote the last feature map \(logits.shape) (NCHW) to \(output)")
            } else {
                print("\(model.report.architecture ?? "?"): wrote logits \(logits.shape) to \(output)")
            }
        }
    }
}

struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Classify JPEG or PNG images and print the top classes with probabilities.")

    @OptionGroup var source: ModelOptions
    @Argument(help: "JPEG or PNG images.")
    var images: [String]
    @Option(help: "How many classes to print per image.")
    var top: Int = 5
    @Option(help: "torchvision, caffe or grayscale (default: the weights' preset).")
    var preprocess: Architecture.Preprocessing?
    @Option(help: "text or json.")
    var format: OutputFormat = .text
    @Option(help: "Images per forward pass.")
    var batch: Int = 32

    func validate() throws {
        try validating {
            guard batch >= 1, batch <= 4096 else { throw ZooError.invalidArgument("--batch must be between 1 and 4096") }
            guard !images.isEmpty else { throw ZooError.invalidArgument("no images given") }
            guard top >= 1 else { throw ZooError.invalidArgument("--top must be at least 1") }
        }
    }

    func run() throws {
        try reportingErrors {
            let model = try ModelLoader.load(path: source.weights, architecture: source.arch)
            let predictor = try Predictor(model: model, preprocessing: preprocess, threads: source.threads,
                                          precision: source.precision,
                                          calibration: try source.calibration(for: model, preprocessing: preprocess),
                                          convolutions: source.convolutions)
            var results: [PredictionsOfImage] = []
            // Batch by batch, so a long list prints as it goes.
            for start in stride(from: 0, to: images.count, by: batch) {
                let paths = Array(images[start..<min(start + batch, images.count)])
                for (path, ranked) in zip(paths, try predictor.classify(paths: paths, top: top)) {
                    if format == .text {
                        print(path)
                        for p in ranked {
                            print(String(format: "  %6.2f%%  %@", p.probability * 100, p.label))
                        }
                    } else {
                        results.append(PredictionsOfImage(image: path, top: ranked))
                    }
                }
            }
            if format == .json { print(encodeJSON(results), terminator: "") }
        }
    }
}

/// One image's line of `predict --format json`.
struct PredictionsOfImage: Encodable {
    let image: String
    let top: [Predictor.Prediction]
}

/// `bench --format json`: the timing, and the bf16 comparison when there was one.
struct BenchReport: Encodable {
    let architecture: String?
    let precision: Precision
    let convolutions: ConvolutionAlgorithm
    let result: BenchmarkResult
    let check: PrecisionCheck?
    /// The int8 calibration's agreement tuning, when the network ran int8.
    var tuning: Int8Calibration.Tuning? = nil

    enum Keys: String, CodingKey {
        case int8Tuning = "int8_tuning"
        case architecture, batch, threads, iterations, precision, convolutions, msPerBatch = "ms_per_batch"
        case medianMsPerBatch = "median_ms_per_batch", minMsPerBatch = "min_ms_per_batch"
        case imagesPerSecond = "images_per_second", gflops, maxRelativeLogitError = "max_relative_logit_error"
        case top1Agreement = "top1_agreement", comparedInputs = "compared_inputs"
    }

    func encode(to encoder: Encoder) throws {
        var root = encoder.container(keyedBy: Keys.self)
        try root.encode(architecture, forKey: .architecture)
        try root.encode(result.batch, forKey: .batch)
        try root.encode(result.threads, forKey: .threads)
        try root.encode(result.iterations, forKey: .iterations)
        try root.encode(precision.rawValue, forKey: .precision)
        // bf16 and int8 always run direct.
        try root.encode(precision == .fp32 ? convolutions.rawValue : ConvolutionAlgorithm.direct.rawValue, forKey: .convolutions)
        try root.encode(result.msPerBatch, forKey: .msPerBatch)
        try root.encode(result.medianMsPerBatch, forKey: .medianMsPerBatch)
        try root.encode(result.minMsPerBatch, forKey: .minMsPerBatch)
        try root.encode(result.imagesPerSecond, forKey: .imagesPerSecond)
        try root.encode(result.gflops, forKey: .gflops)
        if let check {
            try root.encode(check.maxRelativeError, forKey: .maxRelativeLogitError)
            try root.encode(check.top1Agreement, forKey: .top1Agreement)
            try root.encode(check.inputs, forKey: .comparedInputs)
        }
        try root.encodeIfPresent(tuning, forKey: .int8Tuning)
    }
}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Time forward passes: ms per batch and images per second.")

    @OptionGroup var source: ModelOptions
    @Option(help: "Images per forward pass.")
    var batch: Int = 1
    @Option(help: "Timed passes after warm-up.")
    var iterations: Int = 20
    @Option(help: "text or json.")
    var format: OutputFormat = .text
    @Option(name: .customLong("compare-batches"),
            help: "With --precision bf16 or int8: seeded random batches the outputs are compared with fp32 on.")
    var compareBatches: Int = 4
    @Option(name: .customLong("compare-images"),
            help: ArgumentHelp("With --precision bf16 or int8: compare with fp32 on these images instead (a folder, through the model's preprocessing; int8 calibrated on images should be judged on images).", valueName: "dir"))
    var compareImages: String?

    func validate() throws {
        try validating {
            guard batch >= 1, batch <= 4096 else { throw ZooError.invalidArgument("--batch must be between 1 and 4096") }
            guard iterations >= 1 else { throw ZooError.invalidArgument("--iterations must be at least 1") }
            guard compareBatches >= 1, compareBatches <= 1000 else {
                throw ZooError.invalidArgument("--compare-batches must be between 1 and 1000")
            }
        }
    }

    func run() throws {
        try reportingErrors {
            let model = try ModelLoader.load(path: source.weights, architecture: source.arch)
            let calibration = try source.calibration(for: model)
            let network = try Network(model.network, weights: model.weights, batch: batch, threads: source.threads,
                                      precision: source.precision, calibration: calibration,
                                      convolutions: source.convolutions)
            let result = try network.benchmark(iterations: iterations, warmup: 3)
            var check: PrecisionCheck?
            if source.precision != .fp32 {
                if let compareImages {
                    let inputs = try PrecisionCheck.imageBatches(model: model, directory: compareImages, batch: batch)
                    let count = try PrecisionCheck.imageCount(in: compareImages)
                    check = try PrecisionCheck.compare(model.network, weights: model.weights, precision: source.precision,
                                                       inputs: inputs, source: "\(count) images from \(compareImages)",
                                                       threads: source.threads, calibration: calibration, limit: count)
                } else {
                    let inputs = (0..<compareBatches).map { RandomWeights.input(model.network, batch: batch, seed: 1000 + UInt64($0)) }
                    check = try PrecisionCheck.compare(model.network, weights: model.weights, precision: source.precision,
                                                       inputs: inputs, source: "\(compareBatches * batch) random inputs",
                                                       threads: source.threads, calibration: calibration)
                }
            }
            if format == .json {
                print(encodeJSON(BenchReport(architecture: model.report.architecture, precision: source.precision, convolutions: source.convolutions,
                                             result: result, check: check, tuning: calibration?.tuning)), terminator: "")
            } else {
                // An int8 network the calibration kept partly out of int8 says so in its label.
                let label = [source.precision.rawValue] + (calibration?.fallbackSummary.map { [$0] } ?? [])
                print("\(model.report.architecture ?? "?") [\(label.joined(separator: ", "))]: \(result)")
                if let check { print(check) }
            }
        }
    }
}
