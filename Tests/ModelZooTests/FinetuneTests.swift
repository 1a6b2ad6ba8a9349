import Foundation
import XCTest
@testable import ModelZoo

/// Transfer learning on the committed LeNet-5 digits fixtures: the 0-4 model's backbone with
/// a new head learns digits 5-9 far better than a random backbone; the fine-tuned file works
/// with `predict` and `evaluate`; bad input gets a message and never a half-written OUT; the
/// Swift backward passes agree with finite differences.
final class FinetuneTests: XCTestCase {
    var scratch: URL!

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("zoo-ft-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: scratch)
    }

    let pretrained = CLI.fixture("lenet/lenet5_digits04.onnx")
    let digits = CLI.fixture("digits59")

    func path(_ name: String) -> String { scratch.appendingPathComponent(name).path }

    /// The defaults (an L-BFGS logistic-regression head), as a no-option `zoo finetune` runs.
    func options(weights: String, out: String, data: String? = nil) -> FineTuner.Options {
        var o = FineTuner.Options(weightsPath: weights, dataPath: data ?? digits, outputPath: out)
        o.threads = 1
        return o
    }

    /// SGD with the settings the README's SGD example uses.
    func sgdOptions(weights: String, out: String, data: String? = nil) -> FineTuner.Options {
        var o = options(weights: weights, out: out, data: data)
        o.optimizer = .sgd
        o.hyper.epochs = 40
        o.hyper.learningRate = 0.03
        return o
    }

    func quiet(_ logs: UnsafeMutablePointer<[String]>? = nil) -> FineTuner.Callbacks {
        FineTuner.Callbacks(log: { logs?.pointee.append($0) }, warn: { logs?.pointee.append("warning: " + $0) })
    }

    /// A class folder tree copied from digits59/train: `classes` folders, `perClass` images each.
    func makeFolder(_ name: String, classes: [String], perClass: Int) throws -> String {
        let root = scratch.appendingPathComponent(name)
        for c in classes {
            let source = URL(fileURLWithPath: digits).appendingPathComponent("train").appendingPathComponent(c)
            let target = root.appendingPathComponent(c)
            try FileManager.default.createDirectory(at: target, withIntermediateDirectories: true)
            let files = try FileManager.default.contentsOfDirectory(atPath: source.path).sorted().prefix(perClass)
            for f in files {
                try FileManager.default.copyItem(at: source.appendingPathComponent(f), to: target.appendingPathComponent(f))
            }
        }
        return root.path
    }

    // MARK: - It learns

    /// The pretrained 0-4 backbone, frozen up to fc2, with a new fc3 for 5-9 fitted by the
    /// default (L-BFGS logistic regression, C chosen on val): 90.7% (68/75) on the held-out
    /// val images, where SGD at its old defaults (30 epochs, lr 0.01) gave 88.0-89.3% across
    /// seeds 0-3 and SGD at 40 epochs, lr 0.03 gave 93.3% (one seed; the best epoch picked on
    /// the same val images). scikit-learn on the same features and grid: 90.7% as well
    /// (testHeadFitAgreesWithScikitLearn).
    ///
    /// What the convex fit changed: an untrained backbone initialised as torch.nn does
    /// reached 53.3% with SGD (its fc2 outputs are tiny, and SGD at lr 0.03 barely moves a
    /// head on them), but the standardised logistic regression reaches 90.7% on the very same
    /// features, as do He-scaled random features (`RandomWeights`, 90.7%). So on this easy
    /// set the 0-4 backbone's fc2 is no better than random ReLU projections of the digits once
    /// the head is fitted properly; the test pins both findings so a change is noticed.
    func testPretrainedVersusUntrainedBackbone() throws {
        let result = try FineTuner.run(options(weights: pretrained, out: path("pre.safetensors")), callbacks: quiet())
        let pre = try XCTUnwrap(result.bestValidationAccuracy)
        XCTAssertEqual(result.optimizer, .lbfgs)
        XCTAssertEqual(result.classNames, ["5", "6", "7", "8", "9"])
        XCTAssertEqual(result.featureLayer, "fc2")
        XCTAssertEqual(result.trainImages, 150)
        XCTAssertEqual(result.validationImages, 75)
        XCTAssertEqual(try XCTUnwrap(result.headFit).chosenPoint.c, 1)

        let net = try ArchitectureRegistry.find("lenet5").resolve(classes: 5)
        func accuracy(backbone weights: [String: Tensor], _ name: String, sgd: Bool = false) throws -> Double {
            let weightsPath = path(name + ".safetensors")
            if !FileManager.default.fileExists(atPath: weightsPath) {
                _ = try ModelWriter.write(net, weights: weights, classNames: nil, to: weightsPath, format: .safetensors,
                                          producer: "test")
            }
            let out = path(name + (sgd ? "-sgd" : "-lbfgs") + ".safetensors")
            let o = sgd ? sgdOptions(weights: weightsPath, out: out) : options(weights: weightsPath, out: out)
            return try XCTUnwrap(try FineTuner.run(o, callbacks: quiet()).bestValidationAccuracy)
        }
        let untrained = try accuracy(backbone: torchDefaultWeights(net, seed: 0), "untrained")
        let untrainedSGD = try accuracy(backbone: torchDefaultWeights(net, seed: 0), "untrained", sgd: true)
        let heRandom = try accuracy(backbone: RandomWeights.make(net, seed: 7), "he-random")
        print(String(format: "digits 5-9 val accuracy: pretrained 0-4 backbone %.1f%%, untrained (torch init) %.1f%% "
                        + "(SGD: %.1f%%), He-scaled random %.1f%%", pre * 100, untrained * 100, untrainedSGD * 100,
                     heRandom * 100))
        XCTAssertGreaterThanOrEqual(pre, PRETRAINED_THRESHOLD)
        XCTAssertLessThanOrEqual(untrainedSGD, 0.6, "SGD cannot use the untrained backbone's tiny features")
        XCTAssertGreaterThanOrEqual(untrained, 0.85, "the standardised convex fit can")
        XCTAssertGreaterThanOrEqual(heRandom, 0.85, "random He-scaled features are strong on these digits")

        // The written file's accuracy on val, measured independently by the evaluator: the
        // standardisation folded into fc3 leaves a plain Linear layer on raw fc2 features.
        let model = try ModelLoader.load(path: path("pre.safetensors"))
        XCTAssertEqual(model.classNames, ["5", "6", "7", "8", "9"])
        XCTAssertEqual(Set(model.weights.keys), Set(try ModelLoader.load(path: pretrained).weights.keys))
        let report = try Evaluator.evaluate(model: model, dataPath: digits, threads: 1, warn: { _ in })
        XCTAssertEqual(report.images, 75)
        XCTAssertEqual(report.accuracy, pre, accuracy: 1e-9)
        XCTAssertEqual(report.confusion.flatMap { $0 }.reduce(0, +), 75)
        XCTAssertEqual(report.misclassified.count, 75 - report.correct)
    }

    /// The old default, kept as `--optimizer sgd`: at 40 epochs and lr 0.03 it still learns.
    func testSGDHeadStillLearns() throws {
        let result = try FineTuner.run(sgdOptions(weights: pretrained, out: path("sgd.safetensors")), callbacks: quiet())
        XCTAssertEqual(result.optimizer, .sgd)
        XCTAssertNil(result.headFit)
        XCTAssertGreaterThanOrEqual(try XCTUnwrap(result.bestValidationAccuracy), 0.88)
    }

    /// Training fc2 as well (its gradients through ReLU), on features at fc1's output.
    func testTrainLastAlsoTrainsEarlierLayers() throws {
        var o = sgdOptions(weights: pretrained, out: path("tl.safetensors"))
        o.optimizer = nil  // --train-last alone selects SGD
        o.trainLast = 1
        o.hyper.epochs = 15
        let result = try FineTuner.run(o, callbacks: quiet())
        XCTAssertEqual(result.optimizer, .sgd)
        XCTAssertEqual(result.featureLayer, "fc1")
        XCTAssertEqual(result.trainedLayers, ["fc2", "fc3"])
        XCTAssertGreaterThanOrEqual(try XCTUnwrap(result.bestValidationAccuracy), 0.9)
        let before = try ModelLoader.load(path: pretrained).weights
        let after = try ModelLoader.load(path: path("tl.safetensors")).weights
        XCTAssertEqual(after["conv1.weight"], before["conv1.weight"], "frozen layers are copied unchanged")
        XCTAssertEqual(after["fc1.weight"], before["fc1.weight"])
        XCTAssertNotEqual(after["fc2.weight"], before["fc2.weight"])

        o.trainLast = 5
        XCTAssertThrowsError(try FineTuner.run(o, callbacks: quiet())) { error in
            XCTAssertTrue("\(error)".contains("only 4 blocks with parameters"), "\(error)")
        }
    }

    // MARK: - Command line

    func testCommandLineFinetunePredictEvaluate() throws {
        let out = path("digits59.safetensors")
        let run = try CLI.run(["finetune", "--weights", pretrained, "--data", digits, "--out", out,
                               "--epochs", "5", "--lr", "0.03"])
        XCTAssertEqual(run.status, 0, run.stderr)
        let epochLines = run.stdout.split(separator: "\n").filter { $0.hasPrefix("epoch ") }
        XCTAssertEqual(epochLines.count, 5, run.stdout)
        let first = try XCTUnwrap(epochLines.first)
        XCTAssertNotNil(first.range(of: #"^epoch 1/5  loss \d+\.\d{3}  train \d+\.\d%  val \d+\.\d%  lr 0\.0300  \d+ img/s"#,
                                    options: .regularExpression), String(first))
        XCTAssertTrue(run.stdout.contains("extracted features of 225 images"))

        // Same backbone and data: the features come from the cache.
        let again = try CLI.run(["finetune", "--weights", pretrained, "--data", digits, "--out", out, "--epochs", "2"])
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertTrue(again.stdout.contains("reusing cached features"), again.stdout)

        let predict = try CLI.run(["predict", "--weights", out, "--top", "1", "--format", "json",
                                   CLI.fixture("digits_samples/digit_7_1496.png")])
        XCTAssertEqual(predict.status, 0, predict.stderr)
        let parsed = try JSONSerialization.jsonObject(with: Data(predict.stdout.utf8)) as? [[String: Any]]
        let top = (parsed?.first?["top"] as? [[String: Any]])?.first?["label"] as? String
        XCTAssertEqual(top, "7", predict.stdout)
        let samples = try FileManager.default.contentsOfDirectory(atPath: CLI.fixture("digits_samples"))
            .filter { $0.hasPrefix("digit_") && $0.hasSuffix(".png") }.sorted()
        let text = try CLI.run(["predict", "--weights", out, "--top", "1"]
                               + samples.map { CLI.fixture("digits_samples/" + $0) })
        XCTAssertEqual(text.status, 0, text.stderr)
        let printed = text.stdout.split(separator: "\n").filter { $0.hasPrefix("  ") }
            .compactMap { $0.split(separator: " ").last.map(String.init) }
        XCTAssertEqual(printed.count, samples.count)
        XCTAssertTrue(printed.allSatisfy { ["5", "6", "7", "8", "9"].contains($0) }, "\(printed)")

        let evaluate = try CLI.run(["evaluate", "--weights", out, "--data", digits, "--format", "json"])
        XCTAssertEqual(evaluate.status, 0, evaluate.stderr)
        let json = try CLI.json(evaluate)
        for key in ["accuracy", "per_class", "confusion", "images"] { XCTAssertNotNil(json[key], key) }
        XCTAssertEqual(json["images"] as? Int, 75)
        XCTAssertEqual((json["per_class"] as? [[String: Any]])?.map { $0["class"] as? String }, ["5", "6", "7", "8", "9"])
        XCTAssertEqual((json["confusion"] as? [[Int]])?.count, 5)
    }

    /// An interrupted run leaves no OUT but a checkpoint; `--resume` finishes it with the
    /// very weights an uninterrupted run writes.
    func testResumeContinuesFromLastFinishedEpoch() throws {
        let whole = path("whole.safetensors"), resumed = path("resumed.safetensors")
        let common = ["--weights", pretrained, "--data", digits, "--epochs", "6", "--lr", "0.03", "--threads", "1"]
        XCTAssertEqual(try CLI.run(["finetune", "--out", whole] + common).status, 0)
        let stopped = try CLI.run(["finetune", "--out", resumed, "--stop-after", "2"] + common)
        XCTAssertEqual(stopped.status, 0, stopped.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: resumed))
        XCTAssertTrue(FileManager.default.fileExists(atPath: FineTuner.checkpointPath(for: resumed)))
        let finished = try CLI.run(["finetune", "--out", resumed, "--resume"] + common)
        XCTAssertEqual(finished.status, 0, finished.stderr)
        XCTAssertTrue(finished.stdout.contains("resuming after epoch 2 of 6"), finished.stdout)
        XCTAssertFalse(finished.stdout.contains("epoch 1/6"), finished.stdout)
        XCTAssertFalse(FileManager.default.fileExists(atPath: FineTuner.checkpointPath(for: resumed)))
        let a = try SafetensorsFile(path: whole), b = try SafetensorsFile(path: resumed)
        XCTAssertEqual(try a.load("fc3.weight"), try b.load("fc3.weight"))
        XCTAssertEqual(try a.load("fc3.bias"), try b.load("fc3.bias"))

        // A checkpoint from other settings is refused, not silently used.
        XCTAssertEqual(try CLI.run(["finetune", "--out", resumed, "--stop-after", "1"] + common).status, 0)
        let other = try CLI.run(["finetune", "--out", resumed, "--resume", "--seed", "9"] + common)
        XCTAssertNotEqual(other.status, 0)
        XCTAssertTrue(other.stderr.contains("checkpoint was made with other"), other.stderr)
    }

    // MARK: - Bad input

    func testEmptyClassFolderAndSingleClassAreRefused() throws {
        let root = try makeFolder("empty", classes: ["5", "6"], perClass: 3)
        try FileManager.default.createDirectory(atPath: root + "/7", withIntermediateDirectories: true)
        let out = path("empty.safetensors")
        XCTAssertThrowsError(try FineTuner.run(options(weights: pretrained, out: out, data: root), callbacks: quiet())) {
            XCTAssertTrue("\($0)".contains("class folder '7' holds no JPEG or PNG images"), "\($0)")
        }
        let single = try makeFolder("single", classes: ["5"], perClass: 3)
        let result = try CLI.run(["finetune", "--weights", pretrained, "--data", single, "--out", out])
        XCTAssertEqual(result.status, 1)
        XCTAssertTrue(result.stderr.contains("only one class folder ('5')"), result.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    }

    func testUnreadableImageIsSkippedWithWarningOrRefusedWhenStrict() throws {
        let root = try makeFolder("corrupt", classes: ["5", "6", "7"], perClass: 4)
        let bad = root + "/6/broken.png"
        try Data("this is not a PNG".utf8).write(to: URL(fileURLWithPath: bad))
        var logs: [String] = []
        var o = options(weights: pretrained, out: path("c.safetensors"), data: root)
        o.hyper.epochs = 2
        o.validationFraction = 0.25
        let result = try withUnsafeMutablePointer(to: &logs) { try FineTuner.run(o, callbacks: quiet($0)) }
        XCTAssertEqual(result.skippedImages, [bad])
        XCTAssertTrue(logs.contains { $0.hasPrefix("warning: skipping \(bad)") }, "\(logs)")

        let strict = try CLI.run(["finetune", "--weights", pretrained, "--data", root, "--out", path("s.safetensors"),
                                  "--strict", "--no-cache"])
        XCTAssertEqual(strict.status, 2)
        XCTAssertTrue(strict.stderr.contains(bad), strict.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("s.safetensors")))
    }

    /// An RGB 64x64 JPEG among 32x32 grey PNGs goes through the grey preprocessing.
    func testMixedSizesAndChannelsAreConverted() throws {
        let root = try makeFolder("mixed", classes: ["5", "6", "7"], perClass: 4)
        let jpeg = root + "/7/rgb.jpg"
        try FileManager.default.copyItem(atPath: CLI.fixture("digits_samples/digit_3_0744_rgb64.jpg"), toPath: jpeg)
        var o = options(weights: pretrained, out: path("m.safetensors"), data: root)
        o.hyper.epochs = 2
        o.validationFraction = 0
        var logs: [String] = []
        let result = try withUnsafeMutablePointer(to: &logs) { try FineTuner.run(o, callbacks: quiet($0)) }
        XCTAssertEqual(result.trainImages, 13)
        XCTAssertTrue(result.skippedImages.isEmpty)
        XCTAssertFalse(logs.contains { $0.hasPrefix("warning") }, "\(logs)")
        XCTAssertNil(result.bestValidationAccuracy)
    }

    /// --bn live: refused without --train-last (only the head would train, and it has no
    /// BatchNorm) and with a batch of one, naming the flag.
    func testLiveBatchNormNeedsTrainLastAndBatchOfTwo() throws {
        let out = path("bn.safetensors")
        let alone = try CLI.run(["finetune", "--weights", pretrained, "--data", digits, "--out", out, "--bn", "live"])
        XCTAssertNotEqual(alone.status, 0)
        XCTAssertTrue(alone.stderr.contains("--bn live applies to --train-last K"), alone.stderr)
        let one = try CLI.run(["finetune", "--weights", pretrained, "--data", digits, "--out", out, "--bn", "live",
                               "--train-last", "1", "--batch", "1", "--epochs", "1"])
        XCTAssertEqual(one.status, 1)
        XCTAssertTrue(one.stderr.contains("--batch must be 2 or more with live BatchNorm statistics, got 1"), one.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    }

    func testWeightsForAnotherArchitectureAndOutputOverInputAreRefused() throws {
        let out = path("x.safetensors")
        let wrong = try CLI.run(["finetune", "--weights", pretrained, "--arch", "resnet18", "--data", digits, "--out", out])
        XCTAssertEqual(wrong.status, 1)
        XCTAssertTrue(wrong.stderr.contains("not a usable resnet18"), wrong.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))

        let copy = path("input.onnx")
        try FileManager.default.copyItem(atPath: pretrained, toPath: copy)
        let before = try Data(contentsOf: URL(fileURLWithPath: copy))
        let same = try CLI.run(["finetune", "--weights", copy, "--data", digits, "--out", scratch.path + "/./input.onnx"])
        XCTAssertEqual(same.status, 1)
        XCTAssertTrue(same.stderr.contains("refusing to overwrite the input file"), same.stderr)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: copy)), before)

        let unknown = try CLI.run(["finetune", "--weights", pretrained, "--data", digits, "--out", path("x.bin")])
        XCTAssertTrue(unknown.stderr.contains("cannot tell the output format"), unknown.stderr)
    }

    /// A failed run keeps an existing OUT as it was, and a failed write leaves no partial file.
    func testFailedRunsLeaveOutputUntouched() throws {
        let out = path("keep.safetensors")
        try Data("previous model".utf8).write(to: URL(fileURLWithPath: out))
        let single = try makeFolder("one", classes: ["9"], perClass: 2)
        XCTAssertNotEqual(try CLI.run(["finetune", "--weights", pretrained, "--data", single, "--out", out]).status, 0)
        XCTAssertEqual(try String(contentsOfFile: out, encoding: .utf8), "previous model")

        // OUT names a folder: the rename fails after training; nothing is left behind.
        let blocked = path("blocked.safetensors")
        try FileManager.default.createDirectory(atPath: blocked + "/inside", withIntermediateDirectories: true)
        var o = options(weights: pretrained, out: blocked)
        o.hyper.epochs = 1
        o.cacheFeatures = false
        XCTAssertThrowsError(try FineTuner.run(o, callbacks: quiet())) { error in
            guard case ZooError.writeFailed = error else { return XCTFail("\(error)") }
        }
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: scratch.path).filter { $0.contains(".tmp-") }
        XCTAssertEqual(leftovers, [])
    }

    // MARK: - Pieces

    func testValidationSplitIsStratifiedAndSeeded() throws {
        let root = try makeFolder("split", classes: ["5", "6", "8"], perClass: 10)
        let a = try ImageFolder.forTraining(root: root, validationFraction: 0.2, seed: 3)
        let b = try ImageFolder.forTraining(root: root, validationFraction: 0.2, seed: 3)
        let c = try ImageFolder.forTraining(root: root, validationFraction: 0.2, seed: 4)
        XCTAssertEqual(a.classNames, ["5", "6", "8"])
        XCTAssertEqual(a.validation, b.validation)
        XCTAssertNotEqual(a.validation, c.validation)
        for label in 0..<3 {
            XCTAssertEqual(a.validation.filter { $0.label == label }.count, 2)
            XCTAssertEqual(a.train.filter { $0.label == label }.count, 8)
        }
        XCTAssertTrue(Set(a.train.map(\.path)).isDisjoint(with: a.validation.map(\.path)))
        let folders = try ImageFolder.forTraining(root: digits, validationFraction: 0.2, seed: 0)
        XCTAssertEqual(folders.split, .folders)
    }
}

/// Measured 90.7% (68/75) with the default L-BFGS head: see
/// testPretrainedVersusUntrainedBackbone. One image below it still passes, because
/// oneDNN's features may differ in the last bits on another CPU and move a borderline image.
private let PRETRAINED_THRESHOLD = 0.89

/// Weights as an untrained torch.nn model has them: every weight and bias uniform in
/// +-1/sqrt(fan_in) (Conv2d and Linear's default reset_parameters).
func torchDefaultWeights(_ net: ResolvedNetwork, seed: UInt64) -> [String: Tensor] {
    var generator = SplitMix64(seed: seed)
    var weights: [String: Tensor] = [:]
    for layer in net.layers {
        let fanIn = layer.parameters.first { $0.role == .weight }.map { $0.shape.dropFirst().reduce(1, *) } ?? 1
        let bound = 1 / Double(max(fanIn, 1)).squareRoot()
        for spec in layer.parameters {
            weights[spec.name] = Tensor(shape: spec.shape,
                                        data: (0..<spec.count).map { _ in Float((generator.nextUniform() * 2 - 1) * bound) })
        }
    }
    return weights
}
