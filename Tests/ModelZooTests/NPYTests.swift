import XCTest
@testable import ModelZoo

final class NPYTests: XCTestCase {
    private func fixture(_ name: String) -> String { FormatFixtures.path("npy", name) }

    func testReadsEveryAcceptedVariant() throws {
        for name in ["f4_2d.npy", "f8.npy", "f2.npy", "be_f4.npy", "scalar.npy", "vec3.npy", "zero_rows.npy", "v2.npy", "v3.npy"] {
            let expected = try XCTUnwrap(FormatFixtures.expected("npy", name).values.first)
            let tensor = try NPY.read(path: fixture(name))
            XCTAssertEqual(tensor.shape, expected.shape, name)
            XCTAssertEqual(tensor.data, expected.values.map { Float($0) }, name)
        }
    }

    func testNPYFileExposesTheArrayUnderTheFileStem() throws {
        let file = try NPYFile(path: fixture("f8.npy"))
        XCTAssertEqual(file.format, .npy)
        XCTAssertEqual(file.tensors, [TensorRecord(name: "f8", shape: [2, 2], dtype: .float64, byteCount: 32)])
        try FormatFixtures.assertMatches(file, ["f8": try XCTUnwrap(FormatFixtures.expected("npy", "f8.npy")["f8"])])
        FormatFixtures.assertThrows(try file.load("other"), containing: ["other", "'f8'"])
    }

    func testRefusesFortranOrderIntegersAndTruncation() {
        FormatFixtures.assertThrows(try NPY.read(path: fixture("fortran.npy")), containing: ["fortran.npy", "Fortran"])
        FormatFixtures.assertThrows(try NPY.read(path: fixture("int32.npy")), containing: ["int32.npy", "<i4"])
        FormatFixtures.assertThrows(try NPY.read(path: fixture("truncated.npy")), containing: ["truncated", "needs 48 bytes"])
        FormatFixtures.assertThrows(try NPY.read(path: FormatFixtures.path("hdf5", "random.h5")), containing: ["NUMPY"])
        FormatFixtures.assertThrows(try NPY.read(path: fixture("missing.npy")), containing: ["no such file"])
    }

    func testHeaderParserCopesWithOldAndOddSpellings() throws {
        var parser = PythonLiteralParser("{\"descr\": '<f4', 'fortran_order': False, 'shape': (3L, 4L), }")
        guard case let .dictionary(entries) = try parser.parseValue() else { return XCTFail("not a dict") }
        XCTAssertEqual(entries["shape"], .tuple([.integer(3), .integer(4)]))
        var empty = PythonLiteralParser("{'shape': (), 'x': [1,]}")
        guard case let .dictionary(second) = try empty.parseValue() else { return XCTFail("not a dict") }
        XCTAssertEqual(second["shape"], .tuple([]))
        XCTAssertEqual(second["x"], .tuple([.integer(1)]))
        var broken = PythonLiteralParser("{'shape': (3,")
        XCTAssertThrowsError(try broken.parseValue())
    }

    func testWritesVersion1FilesNumpyReads() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("zoo-npy-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let cases: [(String, Tensor)] = [
            ("matrix.npy", Tensor(shape: [2, 3], data: [1, 2, 3, 4, 5, -6.5])),
            ("vector.npy", Tensor(shape: [3], data: [0.5, 0, -1])),
            ("scalar.npy", Tensor(shape: [], data: [9])),
        ]
        for (name, tensor) in cases {
            let path = directory.appendingPathComponent(name).path
            try NPY.write(tensor, to: path)
            XCTAssertEqual(try NPY.read(path: path), tensor)
            let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
            XCTAssertEqual(Array(bytes.prefix(8)), [0x93] + Array("NUMPY".utf8) + [1, 0])
            XCTAssertEqual((bytes.count - tensor.count * 4) % 64, 0, "data starts 64-byte aligned")
        }
        let script = """
        import sys, numpy as np
        for p in sys.argv[1:]:
            a = np.load(p)
            print(a.dtype, a.shape, a.ravel().tolist())
        """
        guard let output = try runPython(script, arguments: cases.map { directory.appendingPathComponent($0.0).path }) else {
            throw XCTSkip("python3 with numpy is not available")
        }
        XCTAssertEqual(output, "float32 (2, 3) [1.0, 2.0, 3.0, 4.0, 5.0, -6.5]\nfloat32 (3,) [0.5, 0.0, -1.0]\nfloat32 () [9.0]\n")
    }
}
