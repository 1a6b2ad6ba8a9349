import Foundation
import XCTest
@testable import ModelZoo

/// `zoo convert` between safetensors and ONNX copies the tensors whose bytes are already
/// right file to file (copy_file_range): the output must be byte for byte what the
/// ordinary path, through memory, writes.
final class ConvertCopyTests: ScratchDirectoryTestCase {
    override var scratchPrefix: String { "zoo-convert-copy" }

    /// Converts both ways and returns the two outputs' bytes.
    private func bothWays(_ input: String, to ext: String) throws -> (copied: Data, ordinary: Data) {
        let (copied, ordinary) = try convertBothWays(input, to: ext)
        return (try Data(contentsOf: URL(fileURLWithPath: copied)), try Data(contentsOf: URL(fileURLWithPath: ordinary)))
    }

    func testCopiedOutputIsByteIdenticalToTheOrdinaryOne() throws {
        // ResNet18 carries BatchNorm buffers and the int64 counters safetensors adds.
        let resnet = path("resnet18.safetensors")
        _ = try Converter.writeRandom(architecture: "resnet18", to: resnet, format: nil, seed: 4, classes: 10,
                                      inputSize: Size2(64), force: false)
        let lenet = path("lenet5.safetensors")
        _ = try Converter.convert(input: CLI.fixture("lenet/lenet5_digits.onnx"), output: lenet, options: .init())
        let cases: [(String, String)] = [
            (CLI.fixture("lenet/lenet5_digits.onnx"), "safetensors"),  // torch.onnx.export's raw_data
            (CLI.fixture("lenet/lenet5_digits.onnx"), "onnx"),
            (lenet, "onnx"), (lenet, "safetensors"), (resnet, "onnx"),
        ]
        for (input, ext) in cases {
            let (copied, ordinary) = try bothWays(input, to: ext)
            XCTAssertGreaterThan(copied.count, 1000, input)
            XCTAssertTrue(copied == ordinary, "\(input) -> .\(ext): \(copied.count) vs \(ordinary.count) bytes differ")
            if input == resnet {
                // And back: zoo's own ONNX to safetensors.
                let back = path("back.onnx")
                try copied.write(to: URL(fileURLWithPath: back))
                let (copiedBack, ordinaryBack) = try bothWays(back, to: "safetensors")
                XCTAssertTrue(copiedBack == ordinaryBack)
                XCTAssertEqual(copiedBack.count, try Data(contentsOf: URL(fileURLWithPath: resnet)).count)
            }
        }
    }

    func testTheCopyPathIsTakenAndNonFiniteValuesStillStopIt() throws {
        let input = path("lenet5.safetensors")
        _ = try Converter.convert(input: CLI.fixture("lenet/lenet5_digits.onnx"), output: input, options: .init())
        let taken = try Converter.convertCopyingStored(try ModelLoader.prepare(path: input, architecture: nil), input: input,
                                                       output: path("a.onnx"), format: .onnx, start: 0)
        XCTAssertNotNil(taken)
        // A NaN in a tensor that would be copied: the copy path steps aside and the
        // ordinary one reports the file as it always has.
        let file = try SafetensorsFile(path: input)
        var tensors = try file.tensors.map { ($0.name, try file.load($0.name)) }
        let index = try XCTUnwrap(tensors.firstIndex { $0.0 == "conv2.weight" })
        tensors[index].1.data[5] = .nan
        let broken = path("nan.safetensors")
        try SafetensorsWriter.write(tensors.map { (name: $0.0, tensor: $0.1) }, metadata: file.metadata, to: broken)
        XCTAssertNil(try Converter.convertCopyingStored(try ModelLoader.prepare(path: broken, architecture: nil), input: broken,
                                                        output: path("b.onnx"), format: .onnx, start: 0))
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("b.onnx")))
        // The NaN is found while the bytes are copied: the temporary file goes too.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: work.path).filter { $0.hasPrefix(".") }, [])
        XCTAssertThrowsError(try Converter.convert(input: broken, output: path("c.onnx"), options: .init())) { error in
            XCTAssertTrue("\(error)".contains("not a usable"), "\(error)")
        }
    }

    func testKernelCopyFallsBackAndChecksTheSpan() throws {
        let source = path("source.bin")
        let bytes = Data((0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        try bytes.write(to: URL(fileURLWithPath: source))
        let target = path("target.bin")
        try AtomicFileWriter.write(to: target) { writer in
            try writer.write([1, 2, 3])
            try writer.copy(StoredSpan(path: source, offset: 7, byteCount: 90_000))
            try writer.write([4])
        }
        let written = try Data(contentsOf: URL(fileURLWithPath: target))
        XCTAssertEqual(written, Data([1, 2, 3]) + bytes[7..<90_007] + Data([4]))
        XCTAssertThrowsError(try AtomicFileWriter.write(to: path("short.bin")) { writer in
            try writer.copy(StoredSpan(path: source, offset: 50_000, byteCount: 60_000))
        })
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("short.bin")))
    }
}
