import Foundation

/// `zoo evaluate --report DIR`: the evaluation as one self-contained HTML page (no scripts,
/// no external files; thumbnails are PNG data URIs), for a person to look at: the confusion
/// matrix as a heat map, per-class accuracy as bars, and every misclassified image with
/// its true and predicted class.
public enum EvaluationHTML {
    /// Longest side of a thumbnail in pixels: larger images are shrunk, smaller ones are
    /// drawn enlarged by the browser (pixelated, so 32 px digits stay legible).
    static let thumbnailSide = 96

    /// Refuses a destination that is an existing file, before any work is done.
    public static func checkDestination(_ directory: String) throws {
        if FileManager.default.fileExists(atPath: directory), !ImageFolder.isDirectory(directory) {
            throw ZooError.invalidParameter(name: "reportDirectory",
                                           message: "{reportDirectory} \(directory) is a file; it names a folder to write index.html into")
        }
    }

    /// Writes DIR/index.html atomically (creating DIR) and returns its path. An image that
    /// can no longer be read gets a placeholder instead of a thumbnail.
    @discardableResult
    public static func write(_ report: EvaluationReport, modelPath: String, dataPath: String, to directory: String) throws -> String {
        try checkDestination(directory)
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw ZooError.writeFailed(path: directory, reason: "cannot create the report folder: \(error.localizedDescription)")
        }
        let path = (directory as NSString).appendingPathComponent("index.html")
        let html = render(report, modelPath: modelPath, dataPath: dataPath)
        try AtomicFileWriter.write(to: path) { try $0.write(Array(html.utf8)) }
        return path
    }

    static func escape(_ text: String) -> String {
        var out = ""
        for ch in text {
            switch ch {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(ch)
            }
        }
        return out
    }

    /// A PNG data URI of the image at `path`, no larger than the thumbnail size; nil when
    /// it cannot be decoded.
    static func thumbnail(_ path: String) -> String? {
        guard let image = try? ImageDecoder.decode(path: path) else { return nil }
        let longest = max(image.width, image.height)
        var small = image
        if longest > thumbnailSide {
            let scale = Double(thumbnailSide) / Double(longest)
            small = ImagePreprocessor.resize(image, width: max(1, Int((Double(image.width) * scale).rounded())),
                                             height: max(1, Int((Double(image.height) * scale).rounded())))
        }
        guard let png = try? ImageEncoder.png(small) else { return nil }
        return "data:image/png;base64," + Data(png).base64EncodedString()
    }

    public static func render(_ report: EvaluationReport, modelPath: String, dataPath: String) -> String {
        let names = report.classNames
        // Rows and columns: the classes that occur in the data or in a prediction, so a
        // 1000-class ImageNet model evaluated on five folders gives a readable matrix.
        let used = names.indices.filter { i in
            report.confusion[i].contains { $0 > 0 } || report.confusion.contains { $0[i] > 0 }
        }
        var h = """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8">
            <title>zoo evaluate: \(escape((modelPath as NSString).lastPathComponent))</title>
            <style>
            body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }
            h1 { font-size: 20px; margin-bottom: 4px; } h2 { font-size: 16px; margin-top: 28px; }
            .meta { color: #666; } .big { font-size: 28px; font-weight: 600; }
            table.confusion { border-collapse: collapse; }
            table.confusion td, table.confusion th { width: 44px; height: 36px; text-align: center; padding: 0; }
            table.confusion th { font-weight: 600; }
            table.confusion td.cell { border: 1px solid #ddd; }
            table.confusion td.diag { outline: 2px solid #2a7; outline-offset: -2px; }
            .axis { color: #666; font-size: 12px; }
            .bar { background: #eee; width: 240px; height: 14px; display: inline-block; vertical-align: middle; }
            .bar > span { background: #2a7; height: 14px; display: block; }
            table.classes td { padding: 2px 10px 2px 0; }
            .grid { display: flex; flex-wrap: wrap; gap: 12px; }
            figure { margin: 0; width: 120px; text-align: center; font-size: 12px; }
            figure img { width: 96px; height: 96px; object-fit: contain; image-rendering: pixelated;
                         background: #f4f4f4; border: 1px solid #ddd; }
            .wrong { color: #c33; font-weight: 600; } .path { color: #888; word-break: break-all; font-size: 10px; }
            </style></head><body>

            """
        h += "<h1>zoo evaluate</h1>\n"
        h += "<div class=\"meta\">model \(escape(modelPath)) &middot; data \(escape(dataPath))</div>\n"
        h += String(format: "<p><span class=\"big\" id=\"accuracy\">%.2f%%</span> accuracy, %d of %d images right",
                    report.accuracy * 100, report.correct, report.images)
        h += report.skipped.isEmpty ? "</p>\n" : " (\(report.skipped.count) unreadable image(s) skipped)</p>\n"

        h += "<h2>Confusion matrix</h2>\n<p class=\"axis\">rows: true class &middot; columns: predicted class "
        h += "&middot; shade: share of the row</p>\n<table class=\"confusion\" id=\"confusion\">\n<tr><th></th>"
        for j in used { h += "<th>\(escape(names[j]))</th>" }
        h += "</tr>\n"
        for i in used {
            let total = report.confusion[i].reduce(0, +)
            h += "<tr><th>\(escape(names[i]))</th>"
            for j in used {
                let count = report.confusion[i][j]
                let share = total == 0 ? 0 : Double(count) / Double(total)
                // Correct cells shade green, mistakes red, so errors stand out at a glance.
                let rgb = i == j ? "34,150,100" : "210,50,50"
                let ink = count == 0 ? "#bbb" : share > 0.55 ? "#fff" : "#222"
                let alpha: Double = count == 0 ? 0 : 0.08 + 0.92 * share
                h += "<td class=\"cell\(i == j ? " diag" : "")\" data-true=\"\(i)\" data-pred=\"\(j)\" "
                    + "style=\"background: rgba(\(rgb),\(String(format: "%.3f", alpha))); color: \(ink)\">\(count)</td>"
            }
            h += "</tr>\n"
        }
        h += "</table>\n"

        h += "<h2>Per-class accuracy</h2>\n<table class=\"classes\">\n"
        for c in report.perClass {
            h += String(format: "<tr><td>%@</td><td><span class=\"bar\"><span style=\"width: %.1f%%\"></span></span></td>"
                            + "<td>%.1f%%</td><td class=\"axis\">%d/%d</td></tr>\n",
                        escape(c.name), c.accuracy * 100, c.accuracy * 100, c.correct, c.images)
        }
        h += "</table>\n"

        h += "<h2>Misclassified images (\(report.misclassified.count))</h2>\n<div class=\"grid\" id=\"misclassified\">\n"
        for m in report.misclassified {
            let name = escape((m.path as NSString).lastPathComponent)
            let image = thumbnail(m.path).map { "<img class=\"thumb\" src=\"\($0)\" alt=\"\(name)\">" }
                ?? "<div class=\"thumb missing\">unreadable</div>"
            h += "<figure class=\"mistake\" title=\"\(escape(m.path))\">\(image)<figcaption>"
            h += String(format: "true %@<br><span class=\"wrong\">predicted %@</span> (%.0f%%)<br><span class=\"path\">%@</span>",
                        escape(m.truth), escape(m.predicted), m.confidence * 100, name)
            h += "</figcaption></figure>\n"
        }
        if report.misclassified.isEmpty { h += "<p>None: every image was classified right.</p>\n" }
        h += "</div>\n</body></html>\n"
        return h
    }
}
