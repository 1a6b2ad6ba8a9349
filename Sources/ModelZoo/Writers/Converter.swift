import Foundation

/// `zoo convert`: reads any weight file the readers load, verifies it, and writes it in
/// another format with every layout change done, optionally checking that the result
/// computes the same logits.
public enum Converter {
    public struct Options: Sendable {
        public var architecture: String?
        /// nil: from the output's extension.
        public var format: WeightFormat?
        /// Replace an existing output (never the input).
        public var force = false
        /// Reload the output and compare the engine's logits on both.
        public var check = false
        public var threads: Int?
        /// Copy tensors whose bytes are already right file to file (safetensors and ONNX in
        /// and out); off, every tensor goes through memory. The output is the same either way.
        public var copyStoredTensors = true

        public init(architecture: String? = nil, format: WeightFormat? = nil, force: Bool = false,
                    check: Bool = false, threads: Int? = nil) {
            self.architecture = architecture; self.format = format; self.force = force
            self.check = check; self.threads = threads
        }
    }

    /// The result of `--check`: logits of the input and of the written file on one
    /// deterministic random batch.
    public struct CheckResult: Sendable {
        /// The tolerance: the largest difference may be this fraction of the largest logit.
        public static let tolerance: Float = 1e-4
        public let batch: Int
        public let maxAbsDifference: Float
        public let maxAbsLogit: Float
        public var ratio: Float { maxAbsLogit > 0 ? maxAbsDifference / maxAbsLogit : maxAbsDifference }
        public var passed: Bool { ratio <= CheckResult.tolerance }
    }

    public struct Report: Sendable {
        public let input: String
        public let inputFormat: WeightFormat
        public let architecture: String
        public let summary: ModelWriter.Summary
        /// The mapping's notes on the input (folded BatchNorm rebuilt, head replaced...).
        public let notes: [String]
        public let check: CheckResult?
        public let seconds: Double
    }

    /// Thrown by `--check` when the written file computes different logits; the file stays
    /// written (it may still be wanted), the report says how far off it is.
    public struct CheckFailed: Error, CustomStringConvertible {
        public let report: Report
        public var description: String {
            guard let c = report.check else { return "check failed" }
            return "\(report.summary.path) computes different logits from \(report.input): largest difference "
                + String(format: "%.3g", c.maxAbsDifference) + " is " + String(format: "%.3g", c.ratio)
                + " of the largest logit (limit \(CheckResult.tolerance))"
        }
    }

    public static func targetFormat(for output: String, requested: WeightFormat?) throws -> WeightFormat {
        if let requested { return requested }
        guard let format = ModelWriter.format(forPath: output) else {
            throw ZooError.invalidParameter(name: "format", message: "cannot tell the output format from '\(output)': name it .onnx, .h5, .weights.h5, "
                + ".safetensors or .pth, or pass {format} onnx|keras-h5|keras-weights-h5|safetensors|pth")
        }
        return format
    }

    /// Refuses to touch the input, or an existing output without `force`, before any work.
    public static func checkTarget(input: String, output: String, force: Bool) throws {
        try OutputTarget.refuseOverwriting(input: input, output: output, parameter: "output")
        var outputInfo = stat()
        let outputExists = stat(output, &outputInfo) == 0
        if outputExists {
            if (outputInfo.st_mode & S_IFMT) == S_IFDIR {
                throw ZooError.invalidArgument("\(output) is a directory: name the output file")
            }
            if !force {
                throw ZooError.invalidParameter(name: "force", message: "\(output) exists: pass {force} to replace it")
            }
        }
    }

    public static func convert(input: String, output: String, options: Options) throws -> Report {
        let start = DispatchTime.now().uptimeNanoseconds
        let format = try targetFormat(for: output, requested: options.format)
        try checkTarget(input: input, output: output, force: options.force)
        // Opened and verified by shapes once, whichever path writes the output.
        let prepared = try ModelLoader.prepare(path: input, architecture: options.architecture)
        if options.copyStoredTensors, !options.check, format == .safetensors || format == .onnx,
           let report = try convertCopyingStored(prepared, input: input, output: output, format: format, start: start) {
            return report
        }
        let model = try ModelLoader.load(prepared)
        try ModelWriter.checkExpressible(model.network, as: format)
        let source = URL(fileURLWithPath: input).lastPathComponent
        let summary = try ModelWriter.write(model.network, weights: model.weights, classNames: model.storedClassNames,
                                            to: output, format: format, producer: "zoo convert", source: source,
                                            preset: model.preset)
        let architecture = model.report.architecture ?? model.architecture.id
        var check: CheckResult?
        if options.check {
            check = try compare(model, output: output, architecture: architecture, threads: options.threads)
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        let report = Report(input: input, inputFormat: model.file.format, architecture: architecture, summary: summary,
                            notes: model.report.notes, check: check, seconds: seconds)
        if let check, !check.passed { throw CheckFailed(report: report) }
        return report
    }

    /// The conversion at disk speed: tensors the input holds as contiguous float32
    /// little-endian bytes (safetensors, ONNX raw_data, contiguous uncompressed HDF5
    /// datasets) never pass through this process's memory whole. Those already in canonical
    /// layout are checked for NaN and Inf through a read-only mapping and copied into the
    /// output by the kernel (`copy_file_range`); Keras kernels (HWIO, dense [in, out]) are
    /// transposed in tiles from a read-only mapping of the input through a buffer of a few
    /// MB straight into the output, checked for NaN and Inf on the way (`StoredTensor`).
    /// The others (constants, other types, chunked or compressed datasets) are loaded as
    /// usual. nil when nothing is in place or a value is not finite: the ordinary path then
    /// converts, or reports the problem as it always does.
    static func convertCopyingStored(_ prepared: ModelLoader.Prepared, input: String, output: String,
                                     format: WeightFormat, start: UInt64) throws -> Report? {
        guard let spans = prepared.file as? ProvidesStoredSpans else { return nil }
        // What the input holds in place is known before any value is read: with nothing,
        // the ordinary path reads the file once, not twice.
        var stored: [String: StoredTensor] = [:]
        var elsewhere: [TensorBinding] = []
        for binding in prepared.mapping.bindings {
            if let tensor = storedTensor(binding, in: spans) {
                stored[binding.canonical.name] = tensor
            } else {
                elsewhere.append(binding)
            }
        }
        guard !stored.isEmpty else { return nil }
        var weights: [String: Tensor] = [:]
        for binding in elsewhere {
            weights[binding.canonical.name] = try prepared.mapping.loadWeight(binding, from: prepared.file)
        }
        guard Verifier.nonFiniteProblems(prepared.mapping, loaded: weights).isEmpty else { return nil }
        try ModelWriter.checkExpressible(prepared.network, as: format)
        // The copied tensors are checked for NaN and Inf on the other core while this one
        // writes: the output keeps its temporary name until the check has passed. The
        // transposed ones are checked band by band as they are written.
        let copiedSpans = stored.keys.sorted().compactMap { stored[$0] }.filter { $0.transform == .none }.map(\.span)
        let scan = ScanResult()
        let group = DispatchGroup()
        DispatchQueue.global().async(group: group) { scan.result = Result { try StoredSpan.nonFiniteCounts(copiedSpans) } }
        defer { group.wait() }
        let summary: ModelWriter.Summary
        do {
            summary = try ModelWriter.write(
                prepared.network, weights: weights, stored: stored, classNames: prepared.file.metadata[ZooMetadata.classNames].map { ZooMetadata.decode(classNames: $0) },
                to: output, format: format, producer: "zoo convert", source: URL(fileURLWithPath: input).lastPathComponent,
                preset: prepared.preset,
                beforeCommit: {
                    group.wait()
                    guard let result = scan.result else { throw NonFiniteStored() }
                    guard try result.get().allSatisfy({ $0.nan == 0 && $0.inf == 0 }) else { throw NonFiniteStored() }
                })
        } catch is NonFiniteStored {
            return nil
        } catch is StoredTensor.NonFinite {
            return nil
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        return Report(input: input, inputFormat: prepared.file.format,
                      architecture: prepared.report.architecture ?? prepared.architecture.id, summary: summary,
                      notes: prepared.report.notes, check: nil, seconds: seconds)
    }

    /// The tensor a binding takes from the input, when the input holds its float32 bytes in
    /// place and they need no change or a transpose `StoredTensor` streams; nil otherwise.
    static func storedTensor(_ binding: TensorBinding, in spans: ProvidesStoredSpans) -> StoredTensor? {
        guard let record = binding.source, let span = spans.storedSpan(of: record.name),
              span.byteCount == binding.canonical.count * MemoryLayout<Float>.size,
              checkedElementCount(record.shape) == binding.canonical.count else { return nil }
        switch binding.transform {
        case .none:
            return StoredTensor(span: span, sourceShape: record.shape)
        case .hwioToOIHW, .transpose, .transposeFromHWCFlatten:
            // Streamed from a mapping read as 32-bit words: the offset must be aligned.
            guard span.offset % 4 == 0, binding.transform.canonicalShape(of: record.shape) == binding.canonical.shape,
                  let plan = StreamedTranspose(binding.transform, sourceShape: record.shape),
                  plan.rows * plan.cols * MemoryLayout<Float>.size == span.byteCount else {
                return nil
            }
            return StoredTensor(span: span, transform: binding.transform, sourceShape: record.shape)
        case .constant, .dividedByFactor:
            return nil
        }
    }

    /// The copied tensors hold NaN or Inf: the ordinary path reports them.
    private struct NonFiniteStored: Error {}

    /// Written by the scan's thread before the group it runs in is left, read after
    /// waiting on that group.
    private final class ScanResult: @unchecked Sendable {
        var result: Result<[(nan: Int, inf: Int)], Error>?
    }

    /// Reloads `output` as the same architecture and runs both through the engine.
    static func compare(_ model: LoadedModel, output: String, architecture: String, threads: Int?) throws -> CheckResult {
        let batch = 2
        let input = RandomWeights.input(model.network, batch: batch, seed: 20240601)
        let expected = try Network(model.network, weights: model.weights, batch: batch, threads: threads).forward(input)
        let reloaded = try ModelLoader.load(path: output, architecture: architecture,
                                            inputSize: Size2(model.network.input.h, model.network.input.w))
        guard reloaded.network.input == model.network.input else {
            throw ZooError.badTensor(path: output, tensor: "input",
                                     reason: "reloads with input \(reloaded.network.input), the source has \(model.network.input)")
        }
        let actual = try Network(reloaded.network, weights: reloaded.weights, batch: batch, threads: threads).forward(input)
        guard actual.shape == expected.shape else {
            throw ZooError.badTensor(path: output, tensor: "logits",
                                     reason: "reloaded network gives logits \(actual.shape), the source \(expected.shape)")
        }
        var maxDifference: Float = 0, maxLogit: Float = 0
        for (a, b) in zip(actual.data, expected.data) {
            let difference = abs(a - b)
            if !(difference <= maxDifference) { maxDifference = difference.isNaN ? .infinity : difference }
            maxLogit = max(maxLogit, abs(b))
        }
        return CheckResult(batch: batch, maxAbsDifference: maxDifference, maxAbsLogit: maxLogit)
    }

    /// `zoo init`: random weights for an architecture, written in any format.
    public static func writeRandom(architecture id: String, to output: String, format requested: WeightFormat?,
                                   seed: UInt64, classes: Int?, inputSize: Size2?, force: Bool) throws -> ModelWriter.Summary {
        let format = try targetFormat(for: output, requested: requested)
        if !force, FileManager.default.fileExists(atPath: output) {
            throw ZooError.invalidParameter(name: "force", message: "\(output) exists: pass {force} to replace it")
        }
        let net = try ArchitectureRegistry.find(id).resolve(classes: classes, inputSize: inputSize)
        // A head for a million classes is 16 GB of VGG weights: say so before allocating.
        let bytes = UInt64(net.totalParameters + net.totalBuffers) * 4
        guard bytes <= ProcessInfo.processInfo.physicalMemory / 2 else {
            throw ZooError.invalidArgument("\(id) with \(net.classes) classes has \(grouped(net.totalParameters)) parameters "
                + "(\(bytes / 1_048_576) MiB): more than half this machine's memory")
        }
        try ModelWriter.checkExpressible(net, as: format)
        let weights = RandomWeights.make(net, seed: seed)
        return try ModelWriter.write(net, weights: weights, classNames: nil, to: output, format: format,
                                     producer: "zoo init (random weights, seed \(seed))")
    }
}
