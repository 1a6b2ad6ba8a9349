import Foundation

/// What `zoo inspect --load` and `zoo verify` do with a stranger's file, as one call that
/// never throws: the fuzz harness (Tools/fuzz.py) runs thousands of mutated files through
/// one process with it, so a reader that crashes or hangs shows up as the process dying or
/// stalling on a known file.
public enum UntrustedFileCheck {
    public struct Outcome: Codable, Sendable {
        /// The exit status `zoo verify` gives: 0 OK, 1 readable but not a valid model, 2 unreadable.
        public var status: Int
        /// The error or the first problem, as the command line prints it.
        public var message: String
        public var milliseconds: Double
    }

    public static func run(path: String) -> Outcome {
        let start = Date()
        func outcome(_ status: Int, _ message: String) -> Outcome {
            Outcome(status: status, message: message, milliseconds: Date().timeIntervalSince(start) * 1000)
        }
        do {
            let file = try WeightFileOpener.open(path: path)
            _ = InspectReport.make(file)
            try file.forEachLoadedTensor()
            let (report, _) = try Verifier.verify(file, checkValues: true)
            // The first line of what `zoo verify` prints for the first problem, as printed.
            let text = ReportRenderer.verifyText(report).split(separator: "\n")
            let problem = text.first { $0.hasPrefix("  ") }.map { String($0.dropFirst(2)) } ?? ""
            return outcome(report.ok ? 0 : 1, problem)
        } catch {
            return outcome(2, "\(error)")
        }
    }
}
