import Foundation

/// A labelled image set in the ImageFolder convention: one subfolder per class, named after
/// the class, holding JPEG or PNG files. Class names are the folder names, sorted, and a
/// label is an index into them.
public struct ImageFolder: Sendable {
    public struct Sample: Sendable, Equatable {
        public let path: String
        public let label: Int
    }

    /// Where the validation images came from.
    public enum SplitSource: Sendable, Equatable {
        /// `train/` and `val/` subfolders of the data folder.
        case folders
        /// A stratified random share of each class, drawn with a seed.
        case random(fraction: Double, seed: UInt64)
        /// No validation set (a fraction of 0).
        case none
    }

    public let root: String
    public let classNames: [String]
    public let train: [Sample]
    public let validation: [Sample]
    public let split: SplitSource

    static let imageExtensions: Set<String> = ["jpg", "jpeg", "png"]

    /// Scans `root` for training: uses its `train/` and `val/` folders when both exist,
    /// otherwise draws `validationFraction` of each class's images (sorted, then shuffled
    /// with `seed`) as the validation set.
    public static func forTraining(root: String, validationFraction: Double, seed: UInt64) throws -> ImageFolder {
        guard validationFraction >= 0, validationFraction < 1 else {
            throw ZooError.invalidParameter(name: "validationFraction",
                                           message: "{validationFraction} must be at least 0 and below 1, got \(validationFraction)")
        }
        let trainRoot = (root as NSString).appendingPathComponent("train")
        let valRoot = (root as NSString).appendingPathComponent("val")
        if isDirectory(trainRoot) && isDirectory(valRoot) {
            let (names, train) = try scanClasses(trainRoot)
            let (valNames, valByName) = try scanClasses(valRoot)
            let index = Dictionary(uniqueKeysWithValues: names.enumerated().map { ($1, $0) })
            var validation: [Sample] = []
            for sample in valByName {
                let name = valNames[sample.label]
                guard let label = index[name] else {
                    throw ZooError.invalidArgument(
                        "\(valRoot): class folder '\(name)' has no counterpart in \(trainRoot) "
                            + "(training classes: \(names.joined(separator: ", ")))")
                }
                validation.append(Sample(path: sample.path, label: label))
            }
            return ImageFolder(root: root, classNames: names, train: train, validation: validation, split: .folders)
        }
        let (names, all) = try scanClasses(root)
        guard validationFraction > 0 else {
            return ImageFolder(root: root, classNames: names, train: all, validation: [], split: .none)
        }
        var generator = SplitMix64(seed: seed)
        var train: [Sample] = [], validation: [Sample] = []
        for label in names.indices {
            var paths = all.filter { $0.label == label }
            shuffle(&paths, &generator)
            // Every class keeps at least one training image; a class of one gives none to val.
            let take = min(paths.count - 1, max(paths.count > 1 ? 1 : 0,
                                                Int((Double(paths.count) * validationFraction).rounded())))
            validation += paths.prefix(take)
            train += paths.dropFirst(take)
        }
        return ImageFolder(root: root, classNames: names, train: train.sorted { $0.path < $1.path },
                           validation: validation.sorted { $0.path < $1.path },
                           split: .random(fraction: validationFraction, seed: seed))
    }

    /// Scans `root` for evaluation: its `val/` folder when it has `train/` and `val/`,
    /// otherwise its class folders. Every image is in `validation`.
    public static func forEvaluation(root: String) throws -> ImageFolder {
        let valRoot = (root as NSString).appendingPathComponent("val")
        let usesVal = isDirectory((root as NSString).appendingPathComponent("train")) && isDirectory(valRoot)
        let (names, samples) = try scanClasses(usesVal ? valRoot : root, minimumClasses: 1)
        return ImageFolder(root: usesVal ? valRoot : root, classNames: names, train: [], validation: samples,
                           split: usesVal ? .folders : .none)
    }

    /// The class folders of `directory` (sorted by name) and their image files (sorted by
    /// path). Hidden entries and files that are not .jpg/.jpeg/.png are ignored.
    static func scanClasses(_ directory: String, minimumClasses: Int = 2) throws -> ([String], [Sample]) {
        guard isDirectory(directory) else {
            throw ZooError.unreadableFile(path: directory, reason: "not a folder (expected one subfolder per class)")
        }
        let entries: [String]
        do {
            entries = try FileManager.default.contentsOfDirectory(atPath: directory)
        } catch {
            throw ZooError.unreadableFile(path: directory, reason: "cannot list the folder: \(error.localizedDescription)")
        }
        let classes = entries.filter { !$0.hasPrefix(".") && isDirectory((directory as NSString).appendingPathComponent($0)) }
            .sorted()
        guard !classes.isEmpty else {
            throw ZooError.invalidArgument(
                "\(directory): no class folders; expected one subfolder per class holding JPEG or PNG images")
        }
        guard classes.count >= minimumClasses else {
            throw ZooError.invalidArgument(
                "\(directory): only one class folder ('\(classes[0])'); a classifier needs at least two classes")
        }
        var samples: [Sample] = []
        for (label, name) in classes.enumerated() {
            let folder = (directory as NSString).appendingPathComponent(name)
            let files = try imageFiles(in: folder)
            guard !files.isEmpty else {
                throw ZooError.invalidArgument(
                    "\(folder): class folder '\(name)' holds no JPEG or PNG images (.jpg, .jpeg, .png)")
            }
            samples += files.map { Sample(path: $0, label: label) }
        }
        return (classes, samples)
    }

    static func imageFiles(in folder: String) throws -> [String] {
        let entries: [String]
        do {
            entries = try FileManager.default.contentsOfDirectory(atPath: folder)
        } catch {
            throw ZooError.unreadableFile(path: folder, reason: "cannot list the folder: \(error.localizedDescription)")
        }
        return entries.filter { name in
            !name.hasPrefix(".") && imageExtensions.contains((name as NSString).pathExtension.lowercased())
        }.sorted().map { (folder as NSString).appendingPathComponent($0) }
    }

    static func isDirectory(_ path: String) -> Bool {
        var isDir: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDir) && isDir.boolValue
    }

    /// Fisher-Yates with our own generator, so a seed gives the same order everywhere.
    static func shuffle<T>(_ items: inout [T], _ generator: inout SplitMix64) {
        guard items.count > 1 else { return }
        for i in stride(from: items.count - 1, to: 0, by: -1) {
            let j = Int(generator.next() % UInt64(i + 1))
            items.swapAt(i, j)
        }
    }
}
