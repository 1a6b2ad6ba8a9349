import XCTest
@testable import ModelZoo

/// The oneDNN trainer (`TrainingProgram`, `TailTrainer`, `TransferBlocks`): gradients of every
/// trainable layer kind against finite differences and torch.autograd, and one epoch of
/// `--train-last 1` on narrow ResNet and GoogLeNet tails against torch's SGD. The torch
/// references are Fixtures/training/, written by Tools/make_training_fixtures.py.
final class TrainingBackwardTests: XCTestCase {
    /// Every layer kind the trainer runs backward, in one small graph (the same graph as
    /// `gradnet` in Tools/make_training_fixtures.py). `cat` and `n1` have several readers,
    /// so their gradients are sums. `act` is ReLU as torch is given it; finite differences
    /// use tanh, whose derivative has no kink for a step to jump across.
    static let gradNet = gradNet(act: .relu)
    static func gradNet(act: Activation) -> Architecture { Architecture(
        id: "gradnet", title: "GradNet", family: .lenet, variant: "test graph", namingSource: "test",
        inputChannels: 4, defaultInputSize: Size2(10), acceptsOtherInputSizes: false, defaultClasses: 5,
        headLayer: "fc", publishedParameters: nil, preprocessing: .grayscaleUnit
    ) { classes in
        let b = NetworkBuilder()
        addEveryLayerKind(to: b, act: act, stem: 6, branch: 4)
        b.adaptiveAvgPool("gap", 1)
        b.flatten()
        b.linear("fc1", 8, act: .tanh)
        b.linear("fc", classes)
        return b.layers
    } }

    /// The trunk both test graphs share: grouped conv, BN, ceil-mode max pool, LRN read by
    /// three branches (conv, conv without bias + BN, padded avg pool + conv), their concat,
    /// and a conv + BN added to it.
    static func addEveryLayerKind(to b: NetworkBuilder, act: Activation, stem: Int, branch: Int) {
        b.conv("c1", stem, kernel: 3, pad: 1, groups: 2, act: act)
        b.batchNorm("bn1", epsilon: 1e-5, act: act)
        b.maxPool("p1", kernel: 3, stride: 2, ceil: true)
        let n1 = b.lrn("n1", size: 5, alpha: 1e-2, beta: 0.75, k: 2)
        let a = b.conv("c2a", branch, kernel: 1, act: act, from: n1)
        b.conv("c2b", branch, kernel: 3, pad: 1, bias: false, from: n1)
        let bb = b.batchNorm("bn2b", epsilon: 1e-3)
        b.avgPool("p2c", kernel: 3, stride: 1, padding: Padding(1), from: n1)
        let c = b.conv("c2c", branch, kernel: 1)
        let cat = b.concat("cat", [a, bb, c])
        b.conv("c3", 3 * branch, kernel: 3, pad: 1)
        let r = b.batchNorm("bn3", epsilon: 1e-5)
        b.add("add", [r, cat], act: act)
    }

    /// torchvision's ResNet18 at base width 4: the net the ResNet references were made with.
    static let narrowResNet18 = Architecture.resnet(
        depth: 18, id: "resnet18w4", variant: "torchvision, base width 4", stride: .on3x3, convBias: false,
        epsilon: 1e-5, published: nil, aliases: [], preprocessing: .torchvision, width: 4)

    /// The live-BatchNorm reference, the plan that trains its block, and its cached features.
    static func liveResNetTail() throws -> (reference: [String: Tensor], plan: TransferPlan, set: FeatureSet) {
        let reference = try fixture("resnet_tail_live.safetensors")
        let plan = try TransferPlan(source: try narrowResNet18.resolve(inputSize: Size2(112)), classes: 3, trainLast: 1)
        let features = try XCTUnwrap(reference["features"])
        let labels = try XCTUnwrap(reference["labels"]).data.map { Int($0) }
        let set = FeatureSet(dimension: plan.featureShape.count, paths: labels.indices.map { "image\($0)" }, labels: labels,
                             values: features.data, skipped: [:])
        return (reference, plan, set)
    }

    static func fixture(_ name: String) throws -> [String: Tensor] {
        let file = try SafetensorsFile(path: CLI.fixture("training/" + name))
        var tensors: [String: Tensor] = [:]
        for record in file.tensors { tensors[record.name] = try file.load(record.name) }
        return tensors
    }

    /// The whole gradnet as a tail (cut before its first layer), with `weights` trained.
    func gradProgram(_ weights: [String: Tensor], batch: Int, arch: Architecture = gradNet, live: Bool = false,
                     memoryBudget: UInt64 = ProcessInfo.processInfo.physicalMemory / 4 * 3)
        throws -> (TrainingProgram, [TrainableParameter]) {
        let net = try arch.resolve()
        var parameters: [TrainableParameter] = []
        var frozen: [String: Tensor] = [:]
        for layer in net.layers {
            for spec in layer.parameters {
                let t = try XCTUnwrap(weights[spec.name], spec.name)
                parameters.append(TrainableParameter(name: spec.name, shape: spec.shape, value: t.data, decays: false))
            }
            for spec in layer.buffers { frozen[spec.name] = try XCTUnwrap(weights[spec.name], spec.name) }
        }
        let program = try TrainingProgram(layers: net.layers, inputName: Layer.networkInput, inputShape: net.input,
                                          parameters: Dictionary(uniqueKeysWithValues: parameters.map { ($0.name, $0) }),
                                          frozen: frozen, batch: batch, live: live, memoryBudget: memoryBudget)
        return (program, parameters)
    }

    /// Every activation and gradient of a trained tail stays allocated: a program whose
    /// buffers would pass its memory budget is refused while compiling, naming the batch
    /// size, instead of allocating until the system kills the process.
    func testProgramOverItsMemoryBudgetIsRefused() throws {
        let weights = RandomWeights.make(try Self.gradNet.resolve(), seed: 5)
        XCTAssertNoThrow(try gradProgram(weights, batch: 64))
        XCTAssertThrowsError(try gradProgram(weights, batch: 64, memoryBudget: 64 * 1024)) { error in
            guard case let ZooError.invalidParameter(name, message) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(name, "batch")
            XCTAssertTrue(message.contains("for 64 rows") && message.contains("smaller {batch}"), message)
        }
    }

    /// loss = sum(dy * logits); returns it after a forward pass on `x`.
    func loss(_ program: TrainingProgram, x: [Float], dy: [Float]) throws -> Double {
        for i in x.indices { program.input[i] = x[i] }
        try program.forward()
        return dy.indices.reduce(0.0) { $0 + Double(dy[$1]) * Double(program.output[$1]) }
    }

    /// Every parameter's gradient against central differences of the float32 forward pass.
    func checkFiniteDifferences(_ arch: Architecture, weights: [String: Tensor], x: [Float], dy: [Float],
                                blocked: Bool, live: Bool = false) throws {
        let (program, parameters) = try gradProgram(weights, batch: dy.count / arch.defaultClasses, arch: arch, live: live)
        XCTAssertEqual(program.blocked, blocked, "layout of the feature maps")
        _ = try loss(program, x: x, dy: dy)
        for i in dy.indices { program.outputGradient[i] = dy[i] }
        try program.backward()
        let h: Float = 1e-3
        var checked = 0
        for p in parameters {
            let analytic = p.values.indices.map { p.gradient[$0] }
            for k in stride(from: 0, to: p.count, by: max(1, p.count / 9)) {
                let saved = p.value[k]
                p.value[k] = saved + h; let up = try loss(program, x: x, dy: dy)
                p.value[k] = saved - h; let down = try loss(program, x: x, dy: dy)
                p.value[k] = saved
                let numeric = (up - down) / Double(2 * h)
                XCTAssertEqual(Double(analytic[k]), numeric, accuracy: 1e-2 * max(1, abs(numeric)), "\(arch.id) \(p.name)[\(k)]")
                checked += 1
            }
        }
        XCTAssertGreaterThan(checked, 100)
    }

    /// Plain NCHW feature maps (channel counts that do not fill blocks of 16).
    func testGradientsMatchFiniteDifferences() throws {
        let weights = try Self.fixture("gradnet.safetensors")
        try checkFiniteDifferences(Self.gradNet(act: .tanh), weights: weights, x: try XCTUnwrap(weights["x"]).data,
                                   dy: try XCTUnwrap(weights["dy"]).data, blocked: false)
    }

    /// nChw16c feature maps: the same layer kinds at 16-channel widths, and a flatten of a
    /// 3x3 map (out of the blocked layout) before the first linear layer.
    static let gradNet16 = Architecture(
        id: "gradnet16", title: "GradNet16", family: .lenet, variant: "test graph", namingSource: "test",
        inputChannels: 16, defaultInputSize: Size2(6), acceptsOtherInputSizes: false, defaultClasses: 5,
        headLayer: "fc", publishedParameters: nil, preprocessing: .grayscaleUnit
    ) { classes in
        let b = NetworkBuilder()
        addEveryLayerKind(to: b, act: .tanh, stem: 16, branch: 16)
        b.flatten()
        b.linear("fc1", 8, act: .tanh)
        b.linear("fc", classes)
        return b.layers
    }

    func testBlockedLayoutGradientsMatchFiniteDifferences() throws {
        let arch = Self.gradNet16
        let net = try arch.resolve()
        let weights = RandomWeights.make(net, seed: 16)
        var generator = SplitMix64(seed: 17)
        let x = (0..<(2 * net.input.count)).map { _ in Float(generator.nextNormal()) }
        let dy = (0..<10).map { _ in Float(generator.nextNormal()) }
        try checkFiniteDifferences(arch, weights: weights, x: x, dy: dy, blocked: true)
    }

    /// Live BatchNorm statistics: the gradient runs through the batch mean and variance too,
    /// which finite differences see because every perturbed forward pass recomputes them.
    func testLiveBatchNormGradientsMatchFiniteDifferences() throws {
        let weights = try Self.fixture("gradnet.safetensors")
        try checkFiniteDifferences(Self.gradNet(act: .tanh), weights: weights, x: try XCTUnwrap(weights["x"]).data,
                                   dy: try XCTUnwrap(weights["dy"]).data, blocked: false, live: true)
    }

    func testLiveBatchNormBlockedLayoutGradientsMatchFiniteDifferences() throws {
        let arch = Self.gradNet16
        let net = try arch.resolve()
        let weights = RandomWeights.make(net, seed: 16)
        var generator = SplitMix64(seed: 18)
        let x = (0..<(2 * net.input.count)).map { _ in Float(generator.nextNormal()) }
        let dy = (0..<10).map { _ in Float(generator.nextNormal()) }
        try checkFiniteDifferences(arch, weights: weights, x: x, dy: dy, blocked: true, live: true)
    }

    /// Every parameter's gradient within 1e-4 of torch.autograd's on the same weights and batch.
    func testGradientsMatchTorchAutograd() throws {
        try checkGradientsAgainstTorch(fixture: "gradnet.safetensors", live: false)
    }

    /// The same with every BatchNorm in model.train(): batch statistics, full gradient.
    func testLiveBatchNormGradientsMatchTorchAutograd() throws {
        try checkGradientsAgainstTorch(fixture: "gradnet_live.safetensors", live: true)
    }

    func checkGradientsAgainstTorch(fixture: String, live: Bool) throws {
        let weights = try Self.fixture(fixture)
        let (program, parameters) = try gradProgram(weights, batch: 3, live: live)
        let dy = try XCTUnwrap(weights["dy"]).data
        _ = try loss(program, x: try XCTUnwrap(weights["x"]).data, dy: dy)
        for i in dy.indices { program.outputGradient[i] = dy[i] }
        try program.backward()
        XCTAssertEqual(parameters.count, 19)
        for p in parameters {
            let expected = try XCTUnwrap(weights["grad." + p.name], p.name)
            XCTAssertEqual(expected.shape, p.shape)
            var worst: Float = 0
            for k in 0..<p.count { worst = max(worst, abs(p.gradient[k] - expected.data[k])) }
            XCTAssertLessThan(worst, 1e-4, "\(p.name): largest difference from torch \(worst)")
        }
    }

    /// One epoch of --train-last 1 (shuffled as the trainer does, batch 4, momentum and
    /// weight decay) ends within 1e-4 of torch.optim.SGD from the same start.
    func checkEpochAgainstTorch(_ arch: Architecture, inputSize: Size2?, fixture: String,
                                trained expected: [String], statistics: [String] = [],
                                bn: BatchNormStatistics = .frozen) throws {
        let reference = try Self.fixture(fixture)
        let source = try arch.resolve(inputSize: inputSize)
        let plan = try TransferPlan(source: source, classes: 3, trainLast: 1)
        var hyper = TailTrainer.Hyperparameters()
        hyper.epochs = 1; hyper.batch = 4; hyper.learningRate = 0.05; hyper.weightDecay = 1e-3; hyper.seed = 0
        hyper.batchNormStatistics = bn
        let trainer = try TailTrainer(plan: plan, pretrained: reference, hyper: hyper)
        XCTAssertEqual(Set(trainer.parameters.map(\.name)), Set(expected))
        // The head starts where torch's did (the trainer draws its own otherwise).
        for p in trainer.parameters where p.name.hasPrefix(arch.headLayer + ".") {
            let start = try XCTUnwrap(reference[p.name]).data
            p.set(values: start, momenta: [Float](repeating: 0, count: p.count))
        }
        let features = try XCTUnwrap(reference["features"])
        let labels = try XCTUnwrap(reference["labels"]).data.map { Int($0) }
        let n = labels.count
        XCTAssertEqual(features.shape.dropFirst().reduce(1, *), plan.featureShape.count)
        let set = FeatureSet(dimension: plan.featureShape.count, paths: (0..<n).map { "image\($0)" }, labels: labels,
                             values: features.data, skipped: [:])
        let outcome = try trainer.train(train: set, validation: nil, resumeFrom: nil, report: { _ in })
        // Frozen runs hand back no statistics (the saved model keeps the pretrained ones).
        XCTAssertEqual(Set(outcome.weights.keys), Set(expected + statistics))
        for name in expected + statistics {
            let ours = try XCTUnwrap(outcome.weights[name], name)
            let torch = try XCTUnwrap(reference["final." + name], name)
            let start = try XCTUnwrap(reference[name], name)
            var worst: Float = 0, moved: Float = 0
            for k in ours.data.indices {
                worst = max(worst, abs(ours.data[k] - torch.data[k]))
                moved = max(moved, abs(torch.data[k] - start.data[k]))
            }
            XCTAssertLessThan(worst, 1e-4, "\(name): largest difference from torch \(worst)")
            XCTAssertGreaterThan(moved, 1e-3, "\(name) should have moved in the epoch")
        }
    }

    func testOneEpochOfNarrowResNetBlockMatchesTorchSGD() throws {
        let arch = Self.narrowResNet18
        let block = ["conv1.weight", "bn1.weight", "bn1.bias", "conv2.weight", "bn2.weight", "bn2.bias"].map { "layer4.1." + $0 }
        try checkEpochAgainstTorch(arch, inputSize: Size2(112), fixture: "resnet_tail.safetensors",
                                   trained: block + ["fc.weight", "fc.bias"])
    }

    /// --bn live: the block in model.train(); its weights and its running statistics after
    /// the epoch within 1e-4 of torch's.
    func testOneEpochOfNarrowResNetBlockWithLiveBatchNormMatchesTorch() throws {
        let arch = Self.narrowResNet18
        let block = ["conv1.weight", "bn1.weight", "bn1.bias", "conv2.weight", "bn2.weight", "bn2.bias"].map { "layer4.1." + $0 }
        let statistics = ["bn1.running_mean", "bn1.running_var", "bn2.running_mean", "bn2.running_var"].map { "layer4.1." + $0 }
        try checkEpochAgainstTorch(arch, inputSize: Size2(112), fixture: "resnet_tail_live.safetensors",
                                   trained: block + ["fc.weight", "fc.bias"], statistics: statistics, bn: .live)
    }

    /// Live statistics of one image are degenerate: a batch of 1 is refused by name.
    func testLiveBatchNormRefusesBatchOfOne() throws {
        let source = try ArchitectureRegistry.find("resnet18").resolve()
        let plan = try TransferPlan(source: source, classes: 3, trainLast: 1)
        var weights: [String: Tensor] = [:]
        for layer in plan.trainedLayers {
            for spec in layer.parameters + layer.buffers {
                weights[spec.name] = Tensor(shape: spec.shape, data: [Float](repeating: 0.01, count: spec.count))
            }
        }
        var hyper = TailTrainer.Hyperparameters()
        hyper.batch = 1
        hyper.batchNormStatistics = .live
        XCTAssertThrowsError(try TailTrainer(plan: plan, pretrained: weights, hyper: hyper)) { error in
            guard case let .invalidParameter(name, _) = error as? ZooError else { return XCTFail("\(error)") }
            XCTAssertEqual(name, "batch")
            XCTAssertTrue("\(error)".contains("live"), "\(error)")
        }
        hyper.batchNormStatistics = .frozen
        XCTAssertNoThrow(try TailTrainer(plan: plan, pretrained: weights, hyper: hyper))
    }

    /// Every batch size a run needs (training, and validation's forward-only programs) is
    /// compiled before the first epoch under one memory budget: a budget that holds the
    /// training program but not also validation's stops the run before any epoch.
    func testTrainerChecksItsMemoryBeforeTheFirstEpoch() throws {
        let (reference, plan, set) = try Self.liveResNetTail()
        var hyper = TailTrainer.Hyperparameters()
        hyper.epochs = 1; hyper.batch = 4; hyper.batchNormStatistics = .live
        let probe = try TailTrainer(plan: plan, pretrained: reference, hyper: hyper)
        let training = try probe.program(batch: 4).allocatedBytes
        let evaluation = try probe.program(batch: 4, training: false).allocatedBytes
        XCTAssertLessThan(evaluation, training * 3 / 4, "forward-only programs keep no gradients")
        let tight = try TailTrainer(plan: plan, pretrained: reference, hyper: hyper, memoryBudget: training + evaluation / 2)
        var epochs = 0
        XCTAssertThrowsError(try tight.train(train: set, validation: set, resumeFrom: nil, report: { _ in epochs += 1 })) { error in
            guard case let .invalidParameter(name, _) = error as? ZooError else { return XCTFail("\(error)") }
            XCTAssertEqual(name, "batch")
        }
        XCTAssertEqual(epochs, 0)
        let enough = try TailTrainer(plan: plan, pretrained: reference, hyper: hyper,
                                     memoryBudget: (training + evaluation) * 2)
        _ = try enough.train(train: set, validation: set, resumeFrom: nil, report: { _ in epochs += 1 })
        XCTAssertEqual(epochs, 1)
    }

    /// With live statistics validation uses the running statistics, not the batch's: the
    /// accuracy of the validation pass does not depend on how the rows are batched.
    func testLiveBatchNormValidationUsesRunningStatistics() throws {
        let (reference, plan, set) = try Self.liveResNetTail()
        var logits: [[Float]] = []
        for batch in [2, 5] {
            var hyper = TailTrainer.Hyperparameters()
            hyper.batch = batch; hyper.batchNormStatistics = .live
            let trainer = try TailTrainer(plan: plan, pretrained: reference, hyper: hyper)
            var all: [Float] = []
            var start = 0
            while start < set.labels.count {
                let rows = Array(start..<min(start + batch, set.labels.count))
                all += Array(try trainer.logits(rows, of: set).1)
                start += rows.count
            }
            logits.append(all)
        }
        XCTAssertEqual(logits[0].count, logits[1].count)
        for k in logits[0].indices { XCTAssertEqual(logits[0][k], logits[1][k], accuracy: 1e-4) }
    }

    /// With live statistics a checkpoint carries the running statistics: a run stopped after
    /// one epoch, written to disk and resumed ends where an uninterrupted run does.
    func testLiveBatchNormResumeRestoresRunningStatistics() throws {
        let (reference, plan, set) = try Self.liveResNetTail()
        var hyper = TailTrainer.Hyperparameters()
        hyper.epochs = 3; hyper.batch = 4; hyper.learningRate = 0.05; hyper.batchNormStatistics = .live
        let whole = try TailTrainer(plan: plan, pretrained: reference, hyper: hyper)
            .train(train: set, validation: nil, resumeFrom: nil, report: { _ in })
        let first = try TailTrainer(plan: plan, pretrained: reference, hyper: hyper)
        var saved: TrainingCheckpoint?
        _ = try first.train(train: set, validation: nil, resumeFrom: nil, stopAfter: 1, save: { saved = $0 }, report: { _ in })
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("bn-live-\(getpid()).safetensors").path
        defer { try? FileManager.default.removeItem(atPath: file) }
        try XCTUnwrap(saved).write(to: file, shapes: first.parameterShapes, fingerprint: "test")
        let resumed = try TailTrainer(plan: plan, pretrained: reference, hyper: hyper)
            .train(train: set, validation: nil, resumeFrom: try TrainingCheckpoint.read(path: file, fingerprint: "test"),
                   report: { _ in })
        let mean = "layer4.1.bn2.running_mean", variance = "layer4.1.bn2.running_var"
        XCTAssertNotEqual(whole.weights[mean], reference[mean], "the running statistics move in live mode")
        XCTAssertEqual(Set(whole.weights.keys), Set(resumed.weights.keys))
        for (name, tensor) in whole.weights { XCTAssertEqual(tensor, resumed.weights[name], name) }
        XCTAssertNotNil(resumed.weights[variance])
    }

    func testOneEpochOfNarrowGoogLeNetModuleMatchesTorchSGD() throws {
        let arch = Architecture.googlenetCaffe(widthDivisor: 16, id: "googlenet-caffe-w16")
        let module = ["1x1", "3x3_reduce", "3x3", "5x5_reduce", "5x5", "pool_proj"].flatMap {
            ["inception_5b/\($0).weight", "inception_5b/\($0).bias"]
        }
        try checkEpochAgainstTorch(arch, inputSize: nil, fixture: "googlenet_tail.safetensors",
                                   trained: module + ["loss3/classifier.weight", "loss3/classifier.bias"])
    }

    /// K counts ResNet blocks, Inception modules and VGG conv stages; single layers elsewhere.
    func testTrainLastCountsBlocks() throws {
        let resnet = try ArchitectureRegistry.find("resnet18").resolve()
        let blocks = TransferBlocks.blocks(of: resnet)
        XCTAssertEqual(blocks.map(\.name), ["conv1..bn1", "layer1.0", "layer1.1", "layer2.0", "layer2.1", "layer3.0",
                                           "layer3.1", "layer4.0", "layer4.1", "fc"])
        XCTAssertEqual(blocks.reduce(0) { $0 + $1.parameters }, 11_689_512)
        let plan = try TransferPlan(source: resnet, classes: 5, trainLast: 2)
        XCTAssertEqual(plan.featureLayer, "layer3.1")
        XCTAssertEqual(plan.trainedLayers.first?.layer.name, "layer4.0.conv1")
        XCTAssertEqual(plan.featureShape, Shape3(256, 14, 14))

        let googlenet = try ArchitectureRegistry.find("googlenet").resolve()
        let g = try TransferPlan(source: googlenet, classes: 5, trainLast: 1)
        XCTAssertEqual(g.featureLayer, "inception5a")
        XCTAssertEqual(TransferBlocks.blocks(of: googlenet).suffix(3).map(\.name), ["inception5a", "inception5b", "fc"])

        let vgg = try ArchitectureRegistry.find("vgg11_bn").resolve()
        let v = try TransferPlan(source: vgg, classes: 5, trainLast: 3)
        XCTAssertEqual(v.featureLayer, "features.21", "the last stage: two convs with their BatchNorms and the pool")
        XCTAssertEqual(v.trainedLayers.prefix(2).map(\.layer.name), ["features.22", "features.23"])

        let lenet = try ArchitectureRegistry.find("lenet5").resolve()
        XCTAssertEqual(try TransferPlan(source: lenet, classes: 3, trainLast: 1).featureLayer, "fc1")
        XCTAssertThrowsError(try TransferPlan(source: resnet, classes: 5, trainLast: 10)) { error in
            XCTAssertTrue("\(error)".contains("only 9 blocks"), "\(error)")
        }
    }

    /// Every architecture in `zoo list` compiles its last block and head for training
    /// (only the tail gets weights, so this stays fast).
    func testEveryArchitectureCompilesItsLastBlock() throws {
        for arch in ArchitectureRegistry.all {
            let source = try arch.resolve()
            let plan = try TransferPlan(source: source, classes: 3, trainLast: 1)
            var weights: [String: Tensor] = [:]
            for layer in plan.trainedLayers {
                for spec in layer.parameters + layer.buffers {
                    weights[spec.name] = Tensor(shape: spec.shape, data: [Float](repeating: spec.role == .runningVar ? 1 : 0.01,
                                                                                 count: spec.count))
                }
            }
            var hyper = TailTrainer.Hyperparameters()
            hyper.batch = 2
            XCTAssertNoThrow(try TailTrainer(plan: plan, pretrained: weights, hyper: hyper), arch.id)
        }
    }
}
