import ArgumentParser
import Foundation
import ModelZoo

/// For Tools/fuzz.py: checks each file named on standard input, one JSON line per file,
/// flushed before the next file is read, so a crash or a hang points at the file that
/// caused it. Not listed in `zoo --help`.
struct FuzzBatch: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fuzz-batch", abstract: "Check files named on standard input (Tools/fuzz.py).",
        shouldDisplay: false)

    func run() throws {
        let encoder = JSONEncoder()
        while let line = readLine() {
            let path = line.trimmingCharacters(in: .whitespaces)
            if path.isEmpty { continue }
            FileHandle.standardOutput.write(Data("start \(path)\n".utf8))
            let outcome = UntrustedFileCheck.run(path: path)
            var json = (try? encoder.encode(outcome)) ?? Data()
            json.append(UInt8(ascii: "\n"))
            FileHandle.standardOutput.write(json)
        }
    }
}
