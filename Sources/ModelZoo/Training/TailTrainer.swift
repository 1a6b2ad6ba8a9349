import Foundation

/// Trains the tail of a transfer plan (the new head and any `--train-last` layers) on cached
/// features: softmax cross-entropy, mini-batch SGD with momentum 0.9 and weight decay on the
/// weights, a seeded shuffle per epoch, a cosine learning-rate schedule, and the best epoch
/// by validation accuracy kept. Each finished epoch can be checkpointed, and a run resumed
/// from the checkpoint gives the same result as one that was never interrupted.
public final class TailTrainer {
    public struct Hyperparameters: Sendable, Equatable {
        public var epochs = 30
        public var batch = 32
        public var learningRate = 0.01
        public var momentum = 0.9
        public var weightDecay = 1e-4
        public var seed: UInt64 = 0
        /// How the trained BatchNorm layers normalise while training. Frozen by default: on
        /// the small sets fine-tuning sees, batch statistics of a few dozen images are noisy
        /// and move the running statistics away from the ones the pretrained weights were
        /// fitted to. Validation and the saved model always use the running statistics.
        public var batchNormStatistics: BatchNormStatistics = .frozen
        public init() {}
    }

    public struct EpochReport: Sendable {
        public let epoch: Int
        public let epochs: Int
        public let loss: Double
        public let trainAccuracy: Double
        /// nil without a validation set.
        public let validationAccuracy: Double?
        public let learningRate: Double
        public let imagesPerSecond: Double
        public let isBest: Bool

        /// "epoch 3/10  loss 0.412  train 91.2%  val 88.0%  lr 0.0050  1234 img/s"
        public var line: String {
            let val = validationAccuracy.map { String(format: "%.1f%%", $0 * 100) } ?? "-"
            return String(format: "epoch %d/%d  loss %.3f  train %.1f%%  val %@  lr %.4f  %.0f img/s%@",
                          epoch, epochs, loss, trainAccuracy * 100, val, learningRate, imagesPerSecond,
                          isBest ? "  *" : "")
        }
    }

    public struct Outcome {
        /// Trained tensors at the best epoch, by canonical name.
        public let weights: [String: Tensor]
        public let bestEpoch: Int
        public let bestValidationAccuracy: Double?
        public let finalTrainAccuracy: Double
        /// Epochs run in this call (fewer than the total after a resume).
        public let epochsRun: Int
    }

    public let plan: TransferPlan
    public let hyper: Hyperparameters
    /// Bytes the compiled programs may take together.
    let memoryBudget: UInt64
    let parameters: [TrainableParameter]
    /// BatchNorm running statistics of the trained layers: fixed when frozen, updated by
    /// every training step when live.
    let statistics: [RunningStatistic]
    /// The tail compiled per batch size (the last batch of an epoch may be short).
    private var programs: [Int: TrainingProgram] = [:]
    /// Forward-only programs for validation at sizes no training program has (and, with
    /// live statistics, at every size: training programs normalise with the batch's).
    private var evaluators: [Int: TrainingProgram] = [:]
    private var live: Bool { hyper.batchNormStatistics == .live }

    /// Builds the tail from `weights` (the pretrained values of every trained layer but the
    /// head) and a freshly initialised head: weights uniform in +-1/sqrt(fan_in), as
    /// torch.nn.Linear draws them, biases 0.
    public convenience init(plan: TransferPlan, pretrained weights: [String: Tensor], hyper: Hyperparameters) throws {
        try self.init(plan: plan, pretrained: weights, hyper: hyper, memoryBudget: TrainingProgram.defaultMemoryBudget)
    }

    init(plan: TransferPlan, pretrained weights: [String: Tensor], hyper: Hyperparameters, memoryBudget: UInt64) throws {
        self.memoryBudget = memoryBudget
        guard hyper.epochs >= 1, hyper.epochs <= 100_000 else {
            throw ZooError.invalidParameter(name: "epochs", message: "{epochs} must be between 1 and 100000, got \(hyper.epochs)")
        }
        guard hyper.batch >= 1, hyper.batch <= 65536 else {
            throw ZooError.invalidParameter(name: "batch", message: "{batch} must be between 1 and 65536, got \(hyper.batch)")
        }
        guard hyper.learningRate > 0, hyper.learningRate.isFinite else {
            throw ZooError.invalidParameter(name: "learningRate", message: "{learningRate} must be a positive number, got \(hyper.learningRate)")
        }
        guard hyper.weightDecay >= 0, hyper.weightDecay.isFinite else {
            throw ZooError.invalidParameter(name: "weightDecay", message: "{weightDecay} must be 0 or more, got \(hyper.weightDecay)")
        }
        // One value per channel makes a batch variance of 0 (torch refuses it in training).
        guard hyper.batchNormStatistics == .frozen || hyper.batch >= 2 else {
            throw ZooError.invalidParameter(
                name: "batch", message: "{batch} must be 2 or more with live BatchNorm statistics, got \(hyper.batch)")
        }
        self.plan = plan
        self.hyper = hyper
        var generator = SplitMix64(seed: hyper.seed ^ 0x4845_4144)  // "HEAD"
        let headName = plan.target.architecture.headLayer
        var parameters: [TrainableParameter] = []
        var statistics: [RunningStatistic] = []
        for resolved in plan.trainedLayers {
            let layer = resolved.layer
            var isBatchNorm = false
            if case .batchNorm = layer.op { isBatchNorm = true }
            for spec in resolved.parameters {
                if layer.name == headName {
                    let fanIn = spec.shape.dropFirst().reduce(1, *)
                    let bound = 1 / Double(max(fanIn, 1)).squareRoot()
                    let values: [Float] = spec.role == .weight
                        ? (0..<spec.count).map { _ in Float((generator.nextUniform() * 2 - 1) * bound) }
                        : [Float](repeating: 0, count: spec.count)
                    parameters.append(TrainableParameter(name: spec.name, shape: spec.shape, value: values,
                                                         decays: spec.role == .weight))
                    continue
                }
                guard let tensor = weights[spec.name], tensor.shape == spec.shape else {
                    throw ZooError.engineFailure(layer: layer.name, reason: "pretrained '\(spec.name)' is missing or misshapen")
                }
                // BatchNorm's scale is a "weight" too, but decaying it toward 0 would switch
                // channels off: only conv and linear weights decay.
                parameters.append(TrainableParameter(name: spec.name, shape: spec.shape, value: tensor.data,
                                                     decays: spec.role == .weight && !isBatchNorm))
            }
            for spec in resolved.buffers {
                guard let tensor = weights[spec.name], tensor.shape == spec.shape else {
                    throw ZooError.engineFailure(layer: layer.name, reason: "BatchNorm statistic '\(spec.name)' is missing or misshapen")
                }
                statistics.append(RunningStatistic(name: spec.name, shape: spec.shape, value: tensor.data))
            }
        }
        self.parameters = parameters
        self.statistics = statistics
        // Compiled now so that an unsupported layer fails before any epoch runs.
        _ = try program(batch: min(hyper.batch, 65536))
    }

    /// The tail compiled for `batch` rows: for a training step (`training`, with live
    /// statistics if so set) or for evaluation (the running statistics).
    func program(batch: Int, training: Bool = true) throws -> TrainingProgram {
        let liveStep = training && live
        if training || !live, let program = programs[batch] { return program }
        if !training, let program = evaluators[batch] { return program }
        let byName = Dictionary(uniqueKeysWithValues: parameters.map { ($0.name, $0) })
        let shared = Dictionary(uniqueKeysWithValues: statistics.map { ($0.name, $0) })
        // One budget for all of them: every program stays compiled for the whole run.
        let taken = (programs.values.map(\.allocatedBytes) + evaluators.values.map(\.allocatedBytes)).reduce(0, +)
        let program = try TrainingProgram(layers: plan.trainedLayers, inputName: plan.featureLayer,
                                          inputShape: plan.featureShape, parameters: byName, statistics: shared,
                                          batch: batch, live: liveStep, backward: training,
                                          memoryBudget: memoryBudget > taken ? memoryBudget - taken : 0)
        if training { programs[batch] = program } else { evaluators[batch] = program }
        return program
    }

    /// Cosine decay from the base rate to 0 over the run, evaluated at the start of `epoch`
    /// (0-based), so the last epoch still learns.
    public func learningRate(epoch: Int) -> Double {
        hyper.learningRate * 0.5 * (1 + cos(Double.pi * Double(epoch) / Double(hyper.epochs)))
    }

    /// Logits for rows of `features` (at most the training batch of them), computed by the
    /// program that then holds what backward needs.
    func logits(_ rows: [Int], of features: FeatureSet, training: Bool = false) throws
        -> (TrainingProgram, UnsafeBufferPointer<Float>) {
        let program = try program(batch: rows.count, training: training)
        let d = features.dimension
        features.values.withUnsafeBufferPointer { values in
            for (i, row) in rows.enumerated() {
                (program.input + i * d).update(from: values.baseAddress! + row * d, count: d)
            }
        }
        try program.forward()
        return (program, UnsafeBufferPointer(start: program.output, count: rows.count * plan.target.classes))
    }

    /// Fraction of `features`' usable rows the current tail classifies right.
    public func accuracy(on features: FeatureSet) throws -> Double {
        let rows = features.usableIndices
        guard !rows.isEmpty else { return 0 }
        let classes = plan.target.classes
        var correct = 0
        for range in validationChunks(rows.count) {
            let chunk = Array(rows[range])
            let out = try logits(chunk, of: features).1
            for (i, row) in chunk.enumerated() where Self.argmax(out, row: i, width: classes) == features.labels[row] {
                correct += 1
            }
        }
        return Double(correct) / Double(rows.count)
    }

    static func argmax<C: RandomAccessCollection>(_ values: C, row: Int, width: Int) -> Int where C.Element == Float, C.Index == Int {
        var best = 0
        for j in 1..<max(width, 1) where values[row * width + j] > values[row * width + best] { best = j }
        return best
    }

    /// The training steps' row ranges over `count` rows: `hyper.batch` at a time, except that
    /// with live statistics a last batch of one joins the batch before it (the statistics of
    /// a single image are degenerate: zero variance on 1x1 maps).
    func trainingChunks(_ count: Int) -> [Range<Int>] {
        var ranges: [Range<Int>] = []
        var start = 0
        while start < count {
            var end = min(start + hyper.batch, count)
            if live, count - end == 1 { end = count }
            ranges.append(start..<end)
            start = end
        }
        return ranges
    }

    /// Evaluation's row ranges: `hyper.batch` at a time.
    func validationChunks(_ count: Int) -> [Range<Int>] {
        stride(from: 0, to: count, by: hyper.batch).map { $0..<min($0 + hyper.batch, count) }
    }

    /// Runs epochs from `checkpoint`'s next epoch (or the first) to the last, calling
    /// `report` after each and `save` with the state to checkpoint. `stopAfter` ends the
    /// run early after that many epochs in total (used to simulate an interruption).
    public func train(train: FeatureSet, validation: FeatureSet?, resumeFrom checkpoint: TrainingCheckpoint?,
                      stopAfter: Int? = nil, save: ((TrainingCheckpoint) throws -> Void)? = nil,
                      report: (EpochReport) -> Void) throws -> Outcome {
        let rows = train.usableIndices
        guard !rows.isEmpty else { throw ZooError.invalidArgument("no readable training images") }
        let classes = plan.target.classes
        var firstEpoch = 0
        var best: (epoch: Int, accuracy: Double, values: [String: [Float]])? = nil
        var lastTrainAccuracy = 0.0
        if let checkpoint {
            try restore(checkpoint)
            firstEpoch = checkpoint.finishedEpochs
            best = (checkpoint.bestEpoch, checkpoint.bestAccuracy, checkpoint.best)
        }
        let valRows = validation.map { $0.usableIndices } ?? []
        // Every batch size the run will use is compiled now: a tail that does not fit in
        // memory stops here, not after an epoch of work.
        for size in Set(trainingChunks(rows.count).map(\.count)) { _ = try program(batch: size, training: true) }
        for size in Set(validationChunks(valRows.count).map(\.count)) { _ = try program(batch: size, training: false) }
        let lastEpoch = min(hyper.epochs, stopAfter ?? hyper.epochs)
        var epochsRun = 0
        for epoch in firstEpoch..<max(firstEpoch, lastEpoch) {
            let started = DispatchTime.now().uptimeNanoseconds
            let rate = learningRate(epoch: epoch)
            var order = rows
            var generator = SplitMix64(seed: hyper.seed &+ 0x9E37 &* UInt64(epoch + 1))
            ImageFolder.shuffle(&order, &generator)
            var lossSum = 0.0, correct = 0
            for range in trainingChunks(order.count) {
                let chunk = Array(order[range])
                let (program, out) = try logits(chunk, of: train, training: true)
                let grad = program.outputGradient
                for (i, row) in chunk.enumerated() {
                    let label = train.labels[row]
                    let base = i * classes
                    var maxLogit = -Float.infinity
                    for j in 0..<classes { maxLogit = max(maxLogit, out[base + j]) }
                    var sum = 0.0
                    for j in 0..<classes { sum += exp(Double(out[base + j] - maxLogit)) }
                    for j in 0..<classes {
                        let p = exp(Double(out[base + j] - maxLogit)) / sum
                        grad[base + j] = Float((p - (j == label ? 1 : 0)) / Double(chunk.count))
                    }
                    lossSum += log(sum) - Double(out[base + label] - maxLogit)
                    if Self.argmax(out, row: i, width: classes) == label { correct += 1 }
                }
                try program.backward()
                step(rate: rate)
            }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
            let loss = lossSum / Double(order.count)
            guard loss.isFinite else {
                throw ZooError.invalidArgument(
                    "training diverged at epoch \(epoch + 1) (loss is \(loss)); try a smaller --lr than \(hyper.learningRate)")
            }
            lastTrainAccuracy = Double(correct) / Double(order.count)
            let valAccuracy: Double? = valRows.isEmpty ? nil : try validation.map { try accuracy(on: $0) }
            // Without a validation set the last epoch is the one kept.
            let score = valAccuracy ?? Double(epoch)
            let isBest = best == nil || score > (best?.accuracy ?? -1)
            if isBest { best = (epoch + 1, score, snapshot()) }
            epochsRun += 1
            report(EpochReport(epoch: epoch + 1, epochs: hyper.epochs, loss: loss, trainAccuracy: lastTrainAccuracy,
                               validationAccuracy: valAccuracy, learningRate: rate,
                               imagesPerSecond: Double(order.count) / max(seconds, 1e-9), isBest: isBest))
            if let save, let best {
                try save(TrainingCheckpoint(finishedEpochs: epoch + 1, values: snapshot(), momentum: momentumSnapshot(),
                                            bestEpoch: best.epoch, bestAccuracy: best.accuracy, best: best.values))
            }
        }
        let chosen = best?.values ?? snapshot()
        var result: [String: Tensor] = [:]
        for p in parameters { result[p.name] = Tensor(shape: p.shape, data: chosen[p.name] ?? p.values) }
        // Live: the running statistics as they were at the best epoch go out with its weights.
        if live { for s in statistics { result[s.name] = Tensor(shape: s.shape, data: chosen[s.name] ?? s.values) } }
        return Outcome(weights: result, bestEpoch: best?.epoch ?? 0,
                       bestValidationAccuracy: valRows.isEmpty ? nil : best?.accuracy,
                       finalTrainAccuracy: lastTrainAccuracy, epochsRun: epochsRun)
    }

    /// SGD as torch.optim.SGD does it: g += wd * w; m = mu * m + g; w -= lr * m.
    private func step(rate: Double) {
        let lr = Float(rate), mu = Float(hyper.momentum), wd = Float(hyper.weightDecay)
        for p in parameters {
            let w = p.value.baseAddress!, g = p.gradient.baseAddress!, m = p.momentum.baseAddress!
            let decay = p.decays ? wd : 0
            for k in 0..<p.count {
                let grad = g[k] + decay * w[k]
                m[k] = mu * m[k] + grad
                w[k] -= lr * m[k]
            }
        }
    }

    /// Trained values, and with live statistics the running statistics too (they change
    /// with training, so a checkpoint and the best epoch must carry them).
    private func snapshot() -> [String: [Float]] {
        var values = Dictionary(uniqueKeysWithValues: parameters.map { ($0.name, $0.values) })
        if live { for s in statistics { values[s.name] = s.values } }
        return values
    }

    /// Running statistics have no momentum: zeros, so checkpoints store one shape per name.
    private func momentumSnapshot() -> [String: [Float]] {
        var momenta = Dictionary(uniqueKeysWithValues: parameters.map { ($0.name, $0.momenta) })
        if live { for s in statistics { momenta[s.name] = [Float](repeating: 0, count: s.count) } }
        return momenta
    }

    private func restore(_ checkpoint: TrainingCheckpoint) throws {
        for p in parameters {
            guard let value = checkpoint.values[p.name], value.count == p.count,
                  let momentum = checkpoint.momentum[p.name], momentum.count == p.count,
                  let best = checkpoint.best[p.name], best.count == p.count else {
                throw ZooError.invalidArgument("the checkpoint does not hold '\(p.name)' at shape \(p.shape); "
                                               + "it was made for another model: delete it or run without --resume")
            }
            p.set(values: value, momenta: momentum)
        }
        guard live else { return }
        for s in statistics {
            guard let value = checkpoint.values[s.name], value.count == s.count else {
                throw ZooError.invalidArgument("the checkpoint does not hold '\(s.name)' at shape \(s.shape); "
                                               + "it was made for another model: delete it or run without --resume")
            }
            s.set(value)
        }
    }

    /// Shapes of the trained tensors, for checkpoints.
    public var parameterShapes: [String: [Int]] {
        var shapes = Dictionary(uniqueKeysWithValues: parameters.map { ($0.name, $0.shape) })
        if live { for s in statistics { shapes[s.name] = s.shape } }
        return shapes
    }
}
