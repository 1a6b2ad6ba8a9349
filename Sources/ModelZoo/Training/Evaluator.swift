import Foundation

/// Accuracy of a model on an ImageFolder: overall, per class, and the confusion matrix.
public struct EvaluationReport: Sendable, Encodable {
    public struct ClassResult: Sendable, Encodable {
        public let name: String
        public let images: Int
        public let correct: Int
        public var accuracy: Double { images == 0 ? 0 : Double(correct) / Double(images) }

        private enum Keys: String, CodingKey { case name = "class", images, correct, accuracy }
        public func encode(to encoder: Encoder) throws {
            var row = encoder.container(keyedBy: Keys.self)
            try row.encode(name, forKey: .name)
            try row.encode(images, forKey: .images)
            try row.encode(correct, forKey: .correct)
            try row.encode(accuracy, forKey: .accuracy)
        }
    }

    /// An image the model got wrong.
    public struct Mistake: Sendable, Encodable {
        public let path: String
        /// Model class names (as in `classNames`).
        public let truth: String
        public let predicted: String
        /// Softmax probability of the predicted class.
        public let confidence: Double

        private enum CodingKeys: String, CodingKey { case path, truth = "true", predicted, confidence }
    }

    /// The model's class names (or "class i"): the confusion matrix's rows and columns.
    public let classNames: [String]
    /// confusion[true][predicted], over the model's classes.
    public let confusion: [[Int]]
    /// One entry per class folder of the data, in folder order.
    public let perClass: [ClassResult]
    public let images: Int
    public let correct: Int
    public let skipped: [String]
    /// Every misclassified image, in the data's order.
    public let misclassified: [Mistake]
    public var accuracy: Double { images == 0 ? 0 : Double(correct) / Double(images) }

    /// `zoo evaluate --format json`.
    public var json: String { encodeJSON(self) }

    private enum Keys: String, CodingKey {
        case accuracy, images, correct, classes, perClass = "per_class", confusion, skipped, misclassified
    }

    public func encode(to encoder: Encoder) throws {
        var root = encoder.container(keyedBy: Keys.self)
        try root.encode(accuracy, forKey: .accuracy)
        try root.encode(images, forKey: .images)
        try root.encode(correct, forKey: .correct)
        try root.encode(classNames, forKey: .classes)
        try root.encode(perClass, forKey: .perClass)
        try root.encode(confusion, forKey: .confusion)
        try root.encode(skipped, forKey: .skipped)
        try root.encode(misclassified, forKey: .misclassified)
    }

    public var text: String {
        var lines = [String(format: "accuracy %.2f%% (%d/%d images)", accuracy * 100, correct, images)]
        let width = max(5, (classNames.map(\.count).max() ?? 5))
        for c in perClass {
            lines.append(String(format: "  %@  %6.2f%%  (%d/%d)", c.name.padding(toLength: width, withPad: " ", startingAt: 0),
                                c.accuracy * 100, c.correct, c.images))
        }
        lines.append("confusion (rows: true class, columns: predicted):")
        let cell = max(width, String(confusion.flatMap { $0 }.max() ?? 0).count) + 1
        let pad = { (s: String) in String(repeating: " ", count: max(0, cell - s.count)) + s }
        lines.append(String(repeating: " ", count: width + 2) + classNames.map(pad).joined())
        for (i, row) in confusion.enumerated() where row.contains(where: { $0 > 0 }) {
            lines.append("  " + classNames[i].padding(toLength: width, withPad: " ", startingAt: 0)
                         + row.map { pad(String($0)) }.joined())
        }
        if !skipped.isEmpty { lines.append("skipped \(skipped.count) unreadable image(s)") }
        return lines.joined(separator: "\n")
    }
}

public enum Evaluator {
    /// Classifies every image of `dataPath` (its `val/` when it has `train/` and `val/`).
    /// Folder names are matched to the model's class names when the file stores them;
    /// otherwise folders named by output index ("0", "7") are that class, and any other
    /// names make the i-th sorted folder class i.
    public static func evaluate(model: LoadedModel, dataPath: String, batch: Int = 32, threads: Int? = nil,
                                precision: Precision = .fp32, calibration: Int8Calibration? = nil,
                                convolutions: ConvolutionAlgorithm = .winograd, strict: Bool = false, warn: (String) -> Void,
                                progress: ((Int, Int) -> Void)? = nil) throws -> EvaluationReport {
        let folder = try ImageFolder.forEvaluation(root: dataPath)
        let classes = model.network.classes
        let modelNames = model.classNames ?? (0..<classes).map { "class \($0)" }
        let outputIndex = try outputIndices(folderClasses: folder.classNames, modelNames: model.classNames,
                                            classes: classes, root: folder.root)
        let samples = folder.validation
        let predictor = try Predictor(model: model, threads: threads, precision: precision, calibration: calibration,
                                      convolutions: convolutions, batch: batch, strict: strict)
        let logits = try predictor.logits(paths: samples.map(\.path), labels: samples.map(\.label), warn: warn, progress: progress)
        var confusion = [[Int]](repeating: [Int](repeating: 0, count: classes), count: classes)
        var perClassImages = [Int](repeating: 0, count: folder.classNames.count)
        var perClassCorrect = perClassImages
        var correct = 0
        var mistakes: [EvaluationReport.Mistake] = []
        for row in logits.usableIndices {
            let truth = outputIndex[samples[row].label]
            let predicted = TailTrainer.argmax(logits.values, row: row, width: classes)
            confusion[truth][predicted] += 1
            perClassImages[samples[row].label] += 1
            if predicted == truth {
                perClassCorrect[samples[row].label] += 1; correct += 1
            } else {
                let out = logits.values[(row * classes)..<((row + 1) * classes)].map(Double.init)
                let top = out.max() ?? 0
                let sum = out.reduce(0) { $0 + exp($1 - top) }
                mistakes.append(.init(path: samples[row].path, truth: modelNames[truth], predicted: modelNames[predicted],
                                      confidence: exp(out[predicted] - top) / sum))
            }
        }
        let perClass = folder.classNames.indices.map {
            EvaluationReport.ClassResult(name: folder.classNames[$0], images: perClassImages[$0], correct: perClassCorrect[$0])
        }
        return EvaluationReport(classNames: modelNames, confusion: confusion, perClass: perClass,
                                images: logits.usableIndices.count, correct: correct,
                                skipped: logits.skipped.keys.sorted().map { samples[$0].path }, misclassified: mistakes)
    }

    /// Model output index of each class folder. Without stored names, folders named 0, 1, ...
    /// are taken as output indices (the usual layout for digit and CIFAR-style sets); other
    /// names go by sorted position.
    static func outputIndices(folderClasses: [String], modelNames: [String]?, classes: Int,
                              root: String) throws -> [Int] {
        if let names = modelNames {
            return try folderClasses.map { name in
                guard let index = names.firstIndex(of: name) else {
                    throw ZooError.invalidArgument(
                        "\(root): class folder '\(name)' is not one of the model's classes "
                            + "(\(names.prefix(20).joined(separator: ", "))\(names.count > 20 ? ", ..." : ""))")
                }
                return index
            }
        }
        let numbered = folderClasses.compactMap { Int($0) }
        if numbered.count == folderClasses.count, numbered.allSatisfy({ (0..<classes).contains($0) }) {
            return numbered
        }
        guard folderClasses.count <= classes else {
            throw ZooError.invalidArgument("\(root): \(folderClasses.count) class folders but the model has \(classes) outputs")
        }
        return Array(folderClasses.indices)
    }
}
