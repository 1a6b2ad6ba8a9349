import Foundation
import XCTest
@testable import ModelZoo

/// The L-BFGS logistic-regression head, augmented views and the HTML evaluation report:
/// part of the FinetuneTests suite (same fixtures and scratch folder).
extension FinetuneTests {
    // MARK: - Logistic regression

    /// The analytic gradient of the penalised mean cross-entropy against central
    /// differences, on random data with an unpenalised intercept.
    func testLogisticRegressionGradientMatchesFiniteDifferences() {
        var generator = SplitMix64(seed: 21)
        func random() -> Double { generator.nextUniform() * 2 - 1 }
        let rows = 9, d = 4, k = 3
        let problem = LogisticRegression.Problem(rows: rows, dimension: d, classes: k,
                                                 x: (0..<(rows * d)).map { _ in 2 * random() },
                                                 y: (0..<rows).map { $0 % k })
        let theta = (0..<problem.parameterCount).map { _ in random() }
        for lambda in [0.0, 0.37] {
            let (_, gradient) = LogisticRegression.objective(theta, problem, lambda: lambda)
            let h = 1e-6
            for i in theta.indices {
                var plus = theta, minus = theta
                plus[i] += h; minus[i] -= h
                let numeric = (LogisticRegression.objective(plus, problem, lambda: lambda).value
                               - LogisticRegression.objective(minus, problem, lambda: lambda).value) / (2 * h)
                XCTAssertEqual(gradient[i], numeric, accuracy: 1e-7 * max(1, abs(numeric)), "lambda \(lambda) parameter \(i)")
            }
        }
        // L-BFGS from zero reaches a point where the gradient vanishes.
        let minimum = LogisticRegression.minimize(from: [Double](repeating: 0, count: problem.parameterCount)) {
            LogisticRegression.objective($0, problem, lambda: 0.1)
        }
        XCTAssertTrue(minimum.converged)
        let atMinimum = LogisticRegression.objective(minimum.theta, problem, lambda: 0.1)
        XCTAssertLessThanOrEqual(atMinimum.gradient.map(abs).max() ?? 1, 1e-6)
        XCTAssertLessThan(atMinimum.value, LogisticRegression.objective(theta, problem, lambda: 0.1).value)
    }

    /// zoo's fit against scikit-learn's LogisticRegression (lbfgs, multinomial) on the very
    /// features zoo exported, through Tools/check_head_fit.py: the chosen validation
    /// accuracy within one point, every grid point's objective within 1e-4 (relative).
    /// Measured: the same C (1), 90.7% both, objectives equal to 1e-7. Skipped where
    /// scikit-learn is not installed (CI has only numpy, onnx, onnxruntime, h5py).
    func testHeadFitAgreesWithScikitLearn() throws {
        let probe = try Python.run(["-c", "import sklearn, numpy"])
        guard probe.status == 0 else { throw XCTSkip("scikit-learn is not installed (pip install scikit-learn)") }
        let exported = path("features")
        var o = options(weights: pretrained, out: path("probe.safetensors"))
        o.exportFeatures = exported
        let result = try FineTuner.run(o, callbacks: quiet())
        for name in ["train_X.npy", "train_y.npy", "val_X.npy", "val_y.npy", "head_fit.json"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: exported + "/" + name), name)
        }
        XCTAssertEqual(try NPY.read(path: exported + "/train_X.npy").shape, [150, 84])
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Tools/check_head_fit.py").path
        let check = try Python.run([script, exported, "--json"])
        XCTAssertEqual(check.status, 0, check.stdout + check.stderr)
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(check.stdout.utf8)) as? [String: Any])
        let sklearnAccuracy = try XCTUnwrap(json["sklearn_val_accuracy"] as? Double)
        let zooAccuracy = try XCTUnwrap(result.bestValidationAccuracy)
        print(String(format: "head fit: zoo val %.1f%% (C %g), scikit-learn val %.1f%% (C %@); objective gap %@",
                     zooAccuracy * 100, try XCTUnwrap(result.headFit).chosenPoint.c, sklearnAccuracy * 100,
                     "\(json["sklearn_chosen_C"] ?? "?")", "\(json["max_relative_objective_gap"] ?? "?")"))
        XCTAssertEqual(zooAccuracy, sklearnAccuracy, accuracy: 0.01 + 1e-9)
        XCTAssertLessThanOrEqual(try XCTUnwrap(json["max_relative_objective_gap"] as? Double), 1e-4)
    }

    // MARK: - Augmentation

    /// Views are a pure function of (seed, path, view); crops stay inside the image within
    /// torchvision's scale and ratio ranges (or its centre-crop fallback); `--no-flip` never
    /// flips; the cache key changes with every augmentation setting.
    func testAugmentedViewsAreSeededInBoundsAndCachedByTheirSettings() throws {
        let a = Augmentation(views: 4, flip: true, seed: 3)
        XCTAssertEqual(a.draw(path: "x.png", view: 2, width: 40, height: 30).crop,
                       a.draw(path: "x.png", view: 2, width: 40, height: 30).crop)
        XCTAssertNotEqual(a.draw(path: "x.png", view: 1, width: 40, height: 30).crop,
                          a.draw(path: "x.png", view: 2, width: 40, height: 30).crop)
        var flips = 0
        for view in 0..<400 {
            let (crop, flip) = a.draw(path: "img\(view % 7).png", view: view, width: 40, height: 30)
            XCTAssertTrue(crop.x >= 0 && crop.y >= 0 && crop.x + crop.width <= 40 && crop.y + crop.height <= 30, "\(crop)")
            let share = Double(crop.width * crop.height) / 1200
            XCTAssertTrue(share >= 0.07 && share <= 1.0, "\(crop)")
            if flip { flips += 1 }
        }
        XCTAssertTrue((140...260).contains(flips), "\(flips) flips in 400")
        let noFlip = Augmentation(views: 4, flip: false, seed: 3)
        XCTAssertFalse((0..<100).contains { noFlip.draw(path: "x.png", view: $0, width: 40, height: 30).flip })

        // Through the fine-tuner: N rows per training image, validation untouched, the cache
        // reused for the same settings and not for others.
        let root = try makeFolder("aug", classes: ["5", "6", "7"], perClass: 6)
        var o = options(weights: pretrained, out: path("aug.safetensors"), data: root)
        o.validationFraction = 1.0 / 3
        o.augmentation = Augmentation(views: 3, flip: false)
        let first = try FineTuner.run(o, callbacks: quiet())
        XCTAssertEqual(first.trainImages, 12)
        XCTAssertEqual(first.trainRows, 36)
        XCTAssertEqual(first.validationImages, 6)
        XCTAssertFalse(first.featuresFromCache)
        XCTAssertTrue(try FineTuner.run(o, callbacks: quiet()).featuresFromCache)
        for change in [Augmentation(views: 3, flip: true), Augmentation(views: 2, flip: false)] {
            var other = o
            other.augmentation = change
            XCTAssertFalse(try FineTuner.run(other, callbacks: quiet()).featuresFromCache, "\(change)")
        }
        var reseeded = o
        reseeded.hyper.seed = 5
        XCTAssertFalse(try FineTuner.run(reseeded, callbacks: quiet()).featuresFromCache)
        var plain = o
        plain.augmentation = nil
        let unaugmented = try FineTuner.run(plain, callbacks: quiet())
        XCTAssertFalse(unaugmented.featuresFromCache)
        XCTAssertEqual(unaugmented.trainRows, 12)
    }

    // MARK: - Command line

    func testOptimizerChoiceOnCommandLine() throws {
        let out = path("cli.safetensors")
        let common = ["finetune", "--weights", pretrained, "--data", digits, "--out", out, "--threads", "1"]
        let fit = try CLI.run(common)
        XCTAssertEqual(fit.status, 0, fit.stderr)
        XCTAssertTrue(fit.stdout.contains("head: multinomial logistic regression, L-BFGS on 84 standardised features"), fit.stdout)
        let gridLines = fit.stdout.split(separator: "\n").filter { $0.hasPrefix("  C ") }
        XCTAssertEqual(gridLines.count, HeadFitter.defaultGrid.count, fit.stdout)
        XCTAssertNotNil(gridLines.first?.range(
            of: #"^  C 0\.001 +l2 \d\.\de[+-]\d\d  iterations \d+  loss \d+\.\d{3}  train \d+\.\d%  val \d+\.\d%$"#,
            options: .regularExpression), "\(gridLines.first ?? "")")
        XCTAssertTrue(fit.stdout.contains("chosen C 1 (l2 6.7e-03): train 97.3%, val 90.7%"), fit.stdout)
        XCTAssertFalse(fit.stdout.contains("epoch 1/"), fit.stdout)

        let sgd = try CLI.run(common + ["--optimizer", "sgd", "--epochs", "2"])
        XCTAssertEqual(sgd.status, 0, sgd.stderr)
        XCTAssertTrue(sgd.stdout.contains("epoch 2/2"), sgd.stdout)

        let mixed = try CLI.run(common + ["--optimizer", "lbfgs", "--lr", "0.1"])
        XCTAssertNotEqual(mixed.status, 0)
        XCTAssertTrue(mixed.stderr.contains("--lr set SGD"), mixed.stderr)
        let trainLast = try CLI.run(common + ["--optimizer", "lbfgs", "--train-last", "1"])
        XCTAssertNotEqual(trainLast.status, 0)
        XCTAssertTrue(trainLast.stderr.contains("needs --optimizer sgd"), trainLast.stderr)
        for bad in [["--augment", "0"], ["--no-flip"], ["--optimizer", "adam"]] {
            let run = try CLI.run(common + bad)
            XCTAssertNotEqual(run.status, 0, "\(bad)")
            XCTAssertFalse(run.stderr.isEmpty, "\(bad)")
        }
    }

    /// `evaluate --report DIR`: one self-contained page whose matrix cells are the JSON
    /// confusion and whose thumbnails are the misclassified images, each a PNG data URI.
    func testEvaluateReportIsSelfContainedAndCountsMatch() throws {
        let model = path("report.safetensors")
        XCTAssertEqual(try CLI.run(["finetune", "--weights", pretrained, "--data", digits, "--out", model]).status, 0)
        let dir = path("report")
        let run = try CLI.run(["evaluate", "--weights", model, "--data", digits, "--format", "json", "--report", dir])
        XCTAssertEqual(run.status, 0, run.stderr)
        let json = try CLI.json(run)
        let confusion = try XCTUnwrap(json["confusion"] as? [[Int]])
        let mistakes = try XCTUnwrap(json["misclassified"] as? [[String: Any]])
        let images = try XCTUnwrap(json["images"] as? Int), correct = try XCTUnwrap(json["correct"] as? Int)
        XCTAssertEqual(mistakes.count, images - correct)
        XCTAssertGreaterThan(mistakes.count, 0)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["index.html"], "no temporary file left")

        let html = try String(contentsOfFile: dir + "/index.html", encoding: .utf8)
        let thumbs = html.components(separatedBy: "<img class=\"thumb\" src=\"data:image/png;base64,").dropFirst()
        XCTAssertEqual(thumbs.count, mistakes.count)
        for thumb in thumbs {
            let encoded = String(thumb.prefix { $0 != "\"" })
            let png = try XCTUnwrap(Data(base64Encoded: encoded))
            XCTAssertEqual(Array(png.prefix(8)), [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        }
        let cell = try NSRegularExpression(pattern: #"data-true="(\d+)" data-pred="(\d+)"[^>]*>(\d+)</td>"#)
        var seen = 0
        for match in cell.matches(in: html, range: NSRange(html.startIndex..., in: html)) {
            let number = { (i: Int) in Int((html as NSString).substring(with: match.range(at: i))) ?? -1 }
            XCTAssertEqual(confusion[number(1)][number(2)], number(3), "cell \(number(1)),\(number(2))")
            seen += 1
        }
        XCTAssertEqual(seen, 25)
        for external in ["src=\"http", "href=\"http", "<script", "url("] { XCTAssertFalse(html.contains(external), external) }
        for m in mistakes {
            let truth = try XCTUnwrap(m["true"] as? String), predicted = try XCTUnwrap(m["predicted"] as? String)
            XCTAssertTrue(html.contains("true \(truth)<br><span class=\"wrong\">predicted \(predicted)</span>"))
        }

        let file = path("not-a-folder")
        try Data("x".utf8).write(to: URL(fileURLWithPath: file))
        let refused = try CLI.run(["evaluate", "--weights", model, "--data", digits, "--report", file])
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.stderr.contains("is a file"), refused.stderr)
        XCTAssertEqual(try String(contentsOfFile: file, encoding: .utf8), "x")
    }
}
