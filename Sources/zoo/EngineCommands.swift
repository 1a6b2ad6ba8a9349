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
                                      precision: source.precision, calibration: try source.calibration(for: model))
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
    @Option(help: "torchvision, caffe or grayscale (default: the architecture's convention).")
    var preprocess: String?
    @Option(help: "text or json.")
    var format: OutputFormat = .text

    func run() throws {
        try reportingErrors {
            guard !images.isEmpty else { throw ZooError.invalidArgument("no images given") }
            guard top >= 1 else { throw ZooError.invalidArgument("--top must be at least 1") }
            let convention = try preprocess.map { name -> Architecture.Preprocessing in
                guard let p = Architecture.Preprocessing(rawValue: name) else {
                    throw ZooError.invalidArgument("unknown preprocessing '\(name)'; use torchvision, caffe or grayscale")
                }
                return p
            }
            let model = try ModelLoader.load(path: source.weights, architecture: source.arch)
            let predictor = try Predictor(model: model, preprocessing: convention, threads: source.threads,
                                          precision: source.precision,
                                          calibration: try source.calibration(for: model, preprocessing: convention))
            var results: [[String: Any]] = []
            for path in images {
                let ranked = try predictor.classify(path: path, top: top)
                if format == .text {
                    print(path)
                    for p in ranked {
                        print(String(format: "  %6.2f%%  %@", p.probability * 100, p.label))
                    }
                } else {
                    results.append(["image": path, "top": ranked.map { ["index": $0.index, "label": $0.label, "probability": $0.probability] as [String: Any] }])
                }
            }
            if format == .json { print(jsonString(results), terminator: "") }
        }
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

    func run() throws {
        try reportingErrors {
            guard batch >= 1, batch <= 4096 else { throw ZooError.invalidArgument("--batch must be between 1 and 4096") }
            guard iterations >= 1 else { throw ZooError.invalidArgument("--iterations must be at least 1") }
            guard compareBatches >= 1, compareBatches <= 1000 else {
                throw ZooError.invalidArgument("--compare-batches must be between 1 and 1000")
            }
            let model = try ModelLoader.load(path: source.weights, architecture: source.arch)
            let calibration = try source.calibration(for: model)
            let network = try Network(model.network, weights: model.weights, batch: batch, threads: source.threads,
                                      precision: source.precision, calibration: calibration)
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
                var root: [String: Any] = [
                    "architecture": model.report.architecture ?? NSNull(), "batch": result.batch,
                    "threads": result.threads, "iterations": result.iterations, "precision": source.precision.rawValue,
                    "ms_per_batch": result.msPerBatch, "median_ms_per_batch": result.medianMsPerBatch,
                    "min_ms_per_batch": result.minMsPerBatch, "images_per_second": result.imagesPerSecond,
                    "gflops": result.gflops]
                if let check {
                    root["max_relative_logit_error"] = check.maxRelativeError
                    root["top1_agreement"] = check.top1Agreement
                    root["compared_inputs"] = check.inputs
                }
                print(jsonString(root), terminator: "")
            } else {
                print("\(model.report.architecture ?? "?") [\(source.precision.rawValue)]: \(result)")
                if let check { print(check) }
            }
        }
    }
}
