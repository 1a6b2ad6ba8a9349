import XCTest
@testable import ModelZoo

/// Name and layout mappings are pure functions of names and shapes: tested without files.
final class MappingTests: XCTestCase {
    func record(_ name: String, _ shape: [Int]) -> TensorRecord {
        TensorRecord(name: name, shape: shape, dtype: .float32, byteCount: shape.reduce(4, *))
    }

    func canonicalRecords(_ id: String, classes: Int? = nil) throws -> [TensorRecord] {
        let net = try ArchitectureRegistry.find(id).resolve(classes: classes)
        return (net.parameters + net.buffers).map { record($0.name, $0.shape) }
    }

    func source(_ records: [TensorRecord]) -> SourceModel {
        let (layers, loose, prefix) = CanonicalNameGrouping.group(records)
        return SourceModel(layers: layers, looseTensors: loose, evidence: GraphEvidence(), convention: "test",
                           pairing: .byName, strippedPrefix: prefix)
    }

    func testCanonicalNamesMapWithoutProblems() throws {
        for id in ["resnet18", "vgg16_bn", "googlenet", "alexnet"] {
            let mapping = try XCTUnwrap(WeightMapping.map(source(try canonicalRecords(id)), onto: ArchitectureRegistry.find(id)))
            XCTAssertEqual(mapping.problems, [], id)
            XCTAssertTrue(mapping.bindings.allSatisfy { $0.source?.name == $0.canonical.name && $0.transform == .none }, id)
        }
    }

    func testReplacedHeadIsTheSameArchitecture() throws {
        let mapping = try XCTUnwrap(WeightMapping.map(source(try canonicalRecords("resnet18", classes: 7)),
                                                      onto: ArchitectureRegistry.find("resnet18")))
        XCTAssertEqual(mapping.problems, [])
        XCTAssertEqual(mapping.network.classes, 7)
        XCTAssertTrue(mapping.notes.contains { $0.contains("7 classes") })
    }

    func testWrongShapeNamesBothTensors() throws {
        var records = try canonicalRecords("resnet18")
        let i = try XCTUnwrap(records.firstIndex { $0.name == "layer2.0.conv2.weight" })
        records[i] = record("layer2.0.conv2.weight", [128, 128, 5, 5])
        let mapping = try XCTUnwrap(WeightMapping.map(source(records), onto: ArchitectureRegistry.find("resnet18")))
        XCTAssertEqual(mapping.problems, [MappingProblem(fileTensor: "layer2.0.conv2.weight", canonical: "layer2.0.conv2.weight",
                                                         kind: .wrongShape, expected: "[128, 128, 3, 3]",
                                                         actual: "[128, 128, 5, 5]")])
    }

    func testMissingTensorIsReported() throws {
        let records = try canonicalRecords("vgg11").filter { $0.name != "features.3.bias" }
        let mapping = try XCTUnwrap(WeightMapping.map(source(records), onto: ArchitectureRegistry.find("vgg11")))
        XCTAssertEqual(mapping.problems.map(\.kind), [.missing])
        XCTAssertEqual(mapping.problems.first?.canonical, "features.3.bias")
    }

    /// torch.onnx.export in eval mode folds every BatchNorm into the conv before it: the
    /// conv gains a bias, the BN disappears; the mapping rebuilds an identity BN.
    func testFoldedBatchNormIsRebuilt() throws {
        let net = try ArchitectureRegistry.find("resnet18").resolve()
        var records: [TensorRecord] = []
        var n = 100
        for layer in net.layers {
            guard case .conv(let c) = layer.layer.op, let w = layer.parameters.first else { continue }
            records.append(record("onnx::Conv_\(n)", w.shape)); records.append(record("onnx::Conv_\(n + 1)", [c.outChannels]))
            n += 2
        }
        records += [record("fc.weight", [1000, 512]), record("fc.bias", [1000])]
        var layers: [SourceLayer] = []
        for i in stride(from: 0, to: records.count - 2, by: 2) {
            layers.append(SourceLayer(name: "conv\(i)", kind: .conv, layout: .canonical,
                                      tensors: [.weight: records[i], .bias: records[i + 1]]))
        }
        layers.append(SourceLayer(name: "fc", kind: .dense, layout: .canonical,
                                  tensors: [.weight: records[records.count - 2], .bias: records[records.count - 1]]))
        let src = SourceModel(layers: layers, looseTensors: [], evidence: GraphEvidence(), convention: "torch.onnx", pairing: .byGraph)
        let mapping = try XCTUnwrap(WeightMapping.map(src, onto: ArchitectureRegistry.find("resnet18")))
        XCTAssertEqual(mapping.problems, [])
        XCTAssertTrue(mapping.batchNormFolded)
        let bn1 = mapping.bindings.filter { $0.canonical.layer == "bn1" }
        XCTAssertEqual(bn1.first { $0.canonical.role == .bias }?.source?.name, "onnx::Conv_101")
        XCTAssertEqual(bn1.first { $0.canonical.role == .weight }?.transform, .constant(1))
        XCTAssertEqual(Verifier.expectedLearnable(mapping), 11_689_512 - 4_800)
    }

    /// Keras applications' VGG16 names, HWIO kernels, [in, out] dense, H,W,C flatten.
    func testKerasVGG16NamesAndLayouts() throws {
        let net = try ArchitectureRegistry.find("vgg16").resolve()
        var records: [TensorRecord] = []
        let blocks = [2, 2, 3, 3, 3]
        var convs = net.layers.filter { $0.layer.op.typeName == "Conv" }.makeIterator()
        for (b, count) in blocks.enumerated() {
            for i in 1...count {
                let name = "block\(b + 1)_conv\(i)"
                let w = try XCTUnwrap(convs.next()?.parameters.first?.shape)
                records.append(record("\(name)/\(name)/kernel:0", [w[2], w[3], w[1], w[0]]))
                records.append(record("\(name)/\(name)/bias:0", [w[0]]))
            }
        }
        for (name, inF, outF) in [("fc1", 25088, 4096), ("fc2", 4096, 4096), ("predictions", 4096, 1000)] {
            records.append(record("\(name)/\(name)/kernel:0", [inF, outF]))
            records.append(record("\(name)/\(name)/bias:0", [outF]))
        }
        // HDF5 lists groups alphabetically; creation order must come back.
        var generator = SplitMix64(seed: 16)
        records.shuffle(using: &generator)
        let (layers, loose) = KerasGrouping.group(records)
        XCTAssertEqual(loose, [])
        XCTAssertEqual(layers.map(\.name).prefix(3), ["block1_conv1", "block1_conv2", "block2_conv1"])
        let src = SourceModel(layers: layers, looseTensors: [], evidence: GraphEvidence(), convention: "keras", pairing: .byCreationOrder)
        let mapping = try XCTUnwrap(WeightMapping.map(src, onto: ArchitectureRegistry.find("vgg16")))
        XCTAssertEqual(mapping.problems, [])
        XCTAssertEqual(mapping.bindings.first { $0.canonical.name == "features.0.weight" }?.transform, .hwioToOIHW)
        XCTAssertEqual(mapping.bindings.first { $0.canonical.name == "classifier.0.weight" }?.transform,
                       .transposeFromHWCFlatten(c: 512, h: 7, w: 7))
        XCTAssertEqual(mapping.bindings.first { $0.canonical.name == "classifier.3.weight" }?.transform, .transpose)
    }

    func testKerasCreationOrder() {
        let names = ["conv2d_10", "conv2d", "conv2d_2", "conv2d_1", "dense", "conv2d_11"]
        let sorted = names.sorted { KerasGrouping.creationOrderKey($0).lexicographicallyPrecedes(KerasGrouping.creationOrderKey($1)) }
        XCTAssertEqual(sorted.filter { $0.hasPrefix("conv") }, ["conv2d", "conv2d_1", "conv2d_2", "conv2d_10", "conv2d_11"])
        let resnet = ["conv2_block1_0_conv", "conv2_block1_1_conv", "conv2_block1_3_conv", "conv1_conv", "conv2_block2_1_conv"]
        let r = resnet.sorted { KerasGrouping.creationOrderKey($0).lexicographicallyPrecedes(KerasGrouping.creationOrderKey($1)) }
        XCTAssertEqual(r, ["conv1_conv", "conv2_block1_1_conv", "conv2_block1_3_conv", "conv2_block1_0_conv", "conv2_block2_1_conv"])
    }

    func testKeras3VarsRoles() {
        let records = [record("layers/batch_normalization/vars/0", [8]), record("layers/batch_normalization/vars/1", [8]),
                       record("layers/batch_normalization/vars/2", [8]), record("layers/batch_normalization/vars/3", [8]),
                       record("layers/conv2d/vars/0", [3, 3, 1, 8]), record("layers/conv2d/vars/1", [8]),
                       record("optimizer/vars/0", [1])]
        let (layers, loose) = KerasGrouping.group(records)
        XCTAssertEqual(layers.map(\.kind), [.batchNorm, .conv])
        XCTAssertEqual(layers[0].tensors[.runningVar]?.name, "layers/batch_normalization/vars/3")
        XCTAssertEqual(loose.map(\.name), ["optimizer/vars/0"])
    }

    func testLayoutTransformsMoveValuesRight() {
        // HWIO [1, 2, 2, 3]: value encodes (y, x, i, o) as y*1000 + x*100 + i*10 + o.
        var hwio: [Float] = []
        for y in 0..<1 { for x in 0..<2 { for i in 0..<2 { for o in 0..<3 { hwio.append(Float(y * 1000 + x * 100 + i * 10 + o)) } } } }
        let oihw = LayoutTransform.hwioToOIHW.apply(Tensor(shape: [1, 2, 2, 3], data: hwio), canonicalShape: [3, 2, 1, 2])
        XCTAssertEqual(oihw.data[((2 * 2 + 1) * 1 + 0) * 2 + 1], 112, "o=2, i=1, y=0, x=1")

        // Keras dense after flattening C=2, H=1, W=2 (H,W,C order) into 3 outputs.
        let (c, h, w, out) = (2, 1, 2, 3)
        var dense = [Float](repeating: 0, count: c * h * w * out)
        for y in 0..<h { for x in 0..<w { for ch in 0..<c { for o in 0..<out {
            dense[((y * w + x) * c + ch) * out + o] = Float(ch * 100 + x * 10 + o)
        } } } }
        let t = LayoutTransform.transposeFromHWCFlatten(c: c, h: h, w: w)
            .apply(Tensor(shape: [4, 3], data: dense), canonicalShape: [3, 4])
        // Canonical column (ch, y, x) = ch*2 + x; row o.
        XCTAssertEqual(t.data[2 * 4 + (1 * 2 + 0)], 102, "o=2, ch=1, x=0")
        XCTAssertEqual(t.data[0 * 4 + (0 * 2 + 1)], 10, "o=0, ch=0, x=1")
    }
}
