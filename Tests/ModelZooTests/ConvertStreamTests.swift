import Foundation
import XCTest
@testable import ModelZoo

/// `zoo convert` from Keras HDF5 reads contiguous float32 datasets in place: biases are
/// copied file to file, kernels transposed in bands from a read-only mapping straight into
/// the output (`StoredTensor`). The output must be byte for byte what the ordinary path,
/// through memory, writes, and what the loader reads from the input; a span the file does
/// not hold must never be read.
final class ConvertStreamTests: ScratchDirectoryTestCase {
    override var scratchPrefix: String { "zoo-convert-stream" }

    private func leftovers() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: work.path).filter { $0.hasPrefix(".") }
    }

    /// How many of the input's bindings the fast path takes in place, and how many of those
    /// it transposes.
    private func inPlace(_ input: String) throws -> (stored: Int, transposed: Int) {
        let prepared = try ModelLoader.prepare(path: input, architecture: nil)
        guard let spans = prepared.file as? ProvidesStoredSpans else { return (0, 0) }
        let stored = prepared.mapping.bindings.compactMap { Converter.storedTensor($0, in: spans) }
        return (stored.count, stored.filter { $0.transform != .none }.count)
    }

    /// Converts with the fast path and with everything through memory; checks the bytes are
    /// the same and that every tensor of the output is, bit for bit, what the loader gives
    /// for the input.
    private func checkBothWays(_ input: String, to ext: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let (fast, ordinary) = try convertBothWays(input, to: ext)
        let fastBytes = try Data(contentsOf: URL(fileURLWithPath: fast))
        let ordinaryBytes = try Data(contentsOf: URL(fileURLWithPath: ordinary))
        XCTAssertGreaterThan(fastBytes.count, 1000, input, file: file, line: line)
        XCTAssertTrue(fastBytes == ordinaryBytes, "\(input) -> .\(ext): the two outputs differ", file: file, line: line)
        let expected = try ModelLoader.load(path: input).weights
        let written = try ModelLoader.load(path: fast).weights
        XCTAssertEqual(Set(written.keys), Set(expected.keys), file: file, line: line)
        for (name, tensor) in expected {
            guard let got = written[name] else { continue }
            XCTAssertEqual(got.shape, tensor.shape, name, file: file, line: line)
            XCTAssertTrue(got.data.map(\.bitPattern) == tensor.data.map(\.bitPattern), "\(input): \(name) differs",
                          file: file, line: line)
        }
        XCTAssertEqual(try leftovers(), [], file: file, line: line)
    }

    func testKerasHDF5ConvertsInPlaceToTheSameBytes() throws {
        // A real Keras 2 file (LeNet-5: HWIO kernels, dense [in, out], a flatten permutation).
        let keras2 = CLI.fixture("keras/lenet5_keras1.h5")
        // zoo's own Keras 3 and legacy writers: ResNet18 (no conv biases, BatchNorm) and
        // LeNet-5 at other sizes, so the shapes are not multiples of the 8 x 8 blocks.
        let resnet = path("resnet18.weights.h5")
        _ = try Converter.writeRandom(architecture: "resnet18", to: resnet, format: nil, seed: 11, classes: 10,
                                      inputSize: Size2(64), force: false)
        let lenet3 = path("lenet5.weights.h5")
        _ = try Converter.writeRandom(architecture: "lenet5", to: lenet3, format: nil, seed: 12, classes: 7,
                                      inputSize: nil, force: false)
        let lenet2 = path("lenet5-legacy.h5")
        _ = try Converter.writeRandom(architecture: "lenet5", to: lenet2, format: nil, seed: 13, classes: 13,
                                      inputSize: nil, force: false)
        for input in [keras2, resnet, lenet3, lenet2] {
            let counts = try inPlace(input)
            XCTAssertGreaterThan(counts.transposed, 0, "\(input): no kernel is transposed in place")
            XCTAssertGreaterThan(counts.stored, counts.transposed, "\(input): no tensor is copied as is")
            for ext in ["safetensors", "onnx"] { try checkBothWays(input, to: ext) }
        }
        // A `.keras` archive: its weights entry is stored, so datasets lie in the archive.
        try checkBothWays(CLI.fixture("keras/lenet5_digits.keras"), to: "safetensors")
    }

    func testStreamedTransposeMatchesTheLayoutTransform() throws {
        let cases: [(LayoutTransform, [Int])] = [
            (.hwioToOIHW, [3, 3, 5, 13]), (.hwioToOIHW, [1, 1, 16, 8]), (.hwioToOIHW, [5, 5, 3, 6]),
            (.transpose, [37, 70]), (.transpose, [64, 9]), (.transpose, [1, 5]),
            (.transposeFromHWCFlatten(c: 3, h: 4, w: 5), [60, 11]),
            (.transposeFromHWCFlatten(c: 16, h: 2, w: 2), [64, 40]),
            // A flatten that is not the whole input: a plain transpose, as in memory.
            (.transposeFromHWCFlatten(c: 2, h: 2, w: 2), [12, 3]),
        ]
        var generator = SystemRandomNumberGenerator()
        for (transform, shape) in cases {
            let count = shape.reduce(1, *)
            // Raw bit patterns, NaN payloads included, must come through unchanged.
            let bits = (0..<count).map { _ in UInt32.random(in: 0...UInt32.max, using: &generator) }
            let source = Tensor(shape: shape, data: bits.map { Float(bitPattern: $0) })
            let canonical = try XCTUnwrap(transform.canonicalShape(of: shape))
            let expected = transform.apply(source, canonicalShape: canonical).data.map(\.bitPattern)
            let plan = try XCTUnwrap(StreamedTranspose(transform, sourceShape: shape), "\(transform) \(shape)")
            for bandRows in Set([1, 3, plan.bandRows, plan.cols]) {
                var streamed: [UInt32] = []
                try bits.withUnsafeBufferPointer { words in
                    let base = try XCTUnwrap(words.baseAddress)
                    try plan.stream(from: base, bandRows: bandRows, check: { _ in }, write: { band in
                        streamed += Array(band.bindMemory(to: UInt32.self))
                    })
                }
                XCTAssertEqual(streamed, expected, "\(transform) \(shape) in bands of \(bandRows)")
            }
        }
        XCTAssertNil(StreamedTranspose(.none, sourceShape: [4, 4]))
        XCTAssertNil(StreamedTranspose(.hwioToOIHW, sourceShape: [4, 4]))
        XCTAssertNil(StreamedTranspose(.transpose, sourceShape: [0, 4]))
    }

    func testNonFiniteKernelStopsTheFastPath() throws {
        let net = try ArchitectureRegistry.find("lenet5").resolve(classes: 10, inputSize: nil)
        var weights = RandomWeights.make(net, seed: 3)
        let kernel = try XCTUnwrap(net.parameters.first { $0.shape.count == 4 && $0.name.hasSuffix("weight") }).name
        weights[kernel]?.data[7] = .infinity
        let input = path("inf.weights.h5")
        _ = try ModelWriter.write(net, weights: weights, classNames: nil, to: input, format: .kerasWeightsH5, producer: "test")
        XCTAssertGreaterThan(try inPlace(input).transposed, 0)
        let prepared = try ModelLoader.prepare(path: input, architecture: nil)
        XCTAssertNil(try Converter.convertCopyingStored(prepared, input: input, output: path("a.safetensors"),
                                                        format: .safetensors, start: 0))
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("a.safetensors")))
        XCTAssertEqual(try leftovers(), [], "the temporary output is removed")
        XCTAssertThrowsError(try Converter.convert(input: input, output: path("b.safetensors"), options: .init())) { error in
            XCTAssertTrue("\(error)".contains("not a usable"), "\(error)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("b.safetensors")))
    }

    /// The input shrinks after it was scanned: every span is checked against the file as it
    /// is when it is read, and the conversion fails with the reason instead of reading past
    /// the end.
    func testSpansPastTheEndOfTheFileFailCleanly() throws {
        let input = path("shrinks.weights.h5")
        _ = try Converter.writeRandom(architecture: "lenet5", to: input, format: nil, seed: 5, classes: 10,
                                      inputSize: nil, force: false)
        let prepared = try ModelLoader.prepare(path: input, architecture: nil)
        let spans = try XCTUnwrap(prepared.file as? ProvidesStoredSpans)
        let stored = prepared.mapping.bindings.compactMap { Converter.storedTensor($0, in: spans) }
        let last = try XCTUnwrap(stored.filter { $0.transform != .none }.max { $0.span.offset < $1.span.offset })
        XCTAssertEqual(truncate(input, off_t(last.span.offset + last.span.byteCount / 2)), 0)
        XCTAssertThrowsError(try Converter.convertCopyingStored(prepared, input: input, output: path("out.safetensors"),
                                                                format: .safetensors, start: 0)) { error in
            XCTAssertTrue("\(error)".contains("outside the file"), "\(error)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("out.safetensors")))
        XCTAssertEqual(try leftovers(), [])

        // Spans that were never inside the file: refused before anything is mapped.
        let file = try ReadOnlyFile(path: input)
        for span in [StoredSpan(path: input, offset: file.size + 4096, byteCount: 64),
                     StoredSpan(path: input, offset: file.size - 8, byteCount: 64),
                     StoredSpan(path: input, offset: Int.max - 8, byteCount: 64),
                     StoredSpan(path: input, offset: -4, byteCount: 64)] {
            XCTAssertThrowsError(try MappedSpan(file, span), "\(span)")
            let tensor = StoredTensor(span: span, transform: .transpose, sourceShape: [4, 4])
            XCTAssertThrowsError(try AtomicFileWriter.write(to: path("bad.bin")) { try tensor.write(to: $0) }, "\(span)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: path("bad.bin")))
        }
        XCTAssertEqual(try leftovers(), [])
    }

    /// A dataset whose recorded address points past the end of the file: the scan refuses
    /// it, the input side never offers it as a span, and convert fails in one line.
    func testDatasetAddressPastTheEndIsNeverRead() throws {
        let input = path("lenet5.weights.h5")
        _ = try Converter.writeRandom(architecture: "lenet5", to: input, format: nil, seed: 6, classes: 10,
                                      inputSize: nil, force: false)
        let file = try HDF5File(path: input)
        let record = try XCTUnwrap(file.tensors.filter { $0.shape.count == 4 }.first)
        let span = try XCTUnwrap(file.storedSpan(of: record.name))
        var bytes = try Data(contentsOf: URL(fileURLWithPath: input))
        let address = withUnsafeBytes(of: UInt64(span.offset).littleEndian) { Data($0) }
        let found = bytes.ranges(of: address)
        try XCTSkipUnless(found.count == 1, "the dataset's address occurs \(found.count) times in the file")
        let past = withUnsafeBytes(of: UInt64(bytes.count + 4096).littleEndian) { Data($0) }
        bytes.replaceSubrange(found[0], with: past)
        let hostile = path("hostile.weights.h5")
        try bytes.write(to: URL(fileURLWithPath: hostile))
        if let opened = try? HDF5File(path: hostile) {
            XCTAssertNil(opened.storedSpan(of: record.name), "a span past the end of the file is offered")
        }
        XCTAssertThrowsError(try Converter.convert(input: hostile, output: path("out.safetensors"), options: .init())) { error in
            XCTAssertFalse("\(error)".contains("\n"), "\(error)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("out.safetensors")))
        XCTAssertEqual(try leftovers(), [])
    }
}

private extension Data {
    func ranges(of needle: Data) -> [Range<Int>] {
        var found: [Range<Int>] = []
        var start = startIndex
        while let range = self.range(of: needle, in: start..<endIndex) {
            found.append(range)
            start = range.upperBound
        }
        return found
    }
}
