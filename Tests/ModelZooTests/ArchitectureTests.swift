import XCTest
@testable import ModelZoo

/// Parameter totals against the published figures, and the rows of the seed tables in
/// ../shared/seeds that are right (see the errata in DESIGN.md).
final class ArchitectureTests: XCTestCase {
    func resolve(_ id: String, classes: Int? = nil, size: Size2? = nil) throws -> ResolvedNetwork {
        try ArchitectureRegistry.find(id).resolve(classes: classes, inputSize: size)
    }

    func testPublishedTotals() throws {
        let expected: [String: Int] = [
            "lenet5": 61_706, "lenet5-classic": 61_706,
            "alexnet": 61_100_840, "alexnet-caffe": 60_965_224, "alexnet-single": 62_378_344,
            "vgg11": 132_863_336, "vgg13": 133_047_848, "vgg16": 138_357_544, "vgg19": 143_667_240,
            "vgg11_bn": 132_868_840, "vgg13_bn": 133_053_736, "vgg16_bn": 138_365_992, "vgg19_bn": 143_678_248,
            "googlenet": 6_624_904,
            "resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
            "resnet101": 44_549_160, "resnet152": 60_192_808,
            "resnet50-keras": 25_583_592,
            // The original Caffe ResNets: torchvision's totals plus conv1's 64 biases.
            "resnet50-caffe": 25_557_096, "resnet101-caffe": 44_549_224, "resnet152-caffe": 60_192_872,
            // Counted from the ONNX zoo graphs (the onnx wheel's light_zfnet512 and
            // light_inception_v1): every weight tensor's element count summed.
            "zfnet512": 87_250_536, "googlenet-caffe": 6_998_552,
        ]
        for (id, total) in expected {
            let net = try resolve(id)
            XCTAssertEqual(net.totalParameters, total, id)
            if let published = net.architecture.publishedParameters {
                XCTAssertEqual(published, total, "\(id) published figure")
            }
        }
        XCTAssertEqual(Set(expected.keys), Set(ArchitectureRegistry.all.map(\.id)), "every spec has a pinned total")
    }

    func testBatchNormBuffersCountedApart() throws {
        XCTAssertEqual(try resolve("resnet50-keras").totalBuffers, 53_120)
        XCTAssertEqual(try resolve("resnet50").totalBuffers, 53_120)
        XCTAssertEqual(try resolve("vgg16").totalBuffers, 0)
        // torchvision's resnet18 state_dict: 9,600 BN channels, each with mean and var.
        XCTAssertEqual(try resolve("resnet18").totalBuffers, 9_600)
    }

    func testNewHeadChangesOnlyTheLastLayer() throws {
        let base = try resolve("resnet18")
        let ten = try resolve("resnet18", classes: 10)
        XCTAssertEqual(base.totalParameters - ten.totalParameters, 990 * 513)
        XCTAssertEqual(ten.layer(named: "fc")?.parameters.map(\.shape), [[10, 512], [10]])
        XCTAssertEqual(ten.layers.last?.output, Shape3(10, 1, 1))
    }

    /// Seed 000 counts weights only (no biases): AlexNet as the course table prints it.
    func testSeed000AlexNetWeightsOnly() throws {
        let net = try resolve("alexnet-single")
        let rows = ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"]
        let weights = rows.map { net.layer(named: $0)?.weightCount ?? -1 }
        XCTAssertEqual(weights, [34_848, 614_400, 884_736, 1_327_104, 884_736, 37_748_736, 16_777_216, 4_096_000])
        let volumes = ["conv1", "pool1", "norm1", "conv2", "pool2", "norm2", "conv3", "conv4", "conv5", "pool5"]
            .map { net.layer(named: $0)?.output.description ?? "?" }
        XCTAssertEqual(volumes, ["96x55x55", "96x27x27", "96x27x27", "256x27x27", "256x13x13", "256x13x13",
                                 "384x13x13", "384x13x13", "256x13x13", "256x6x6"])
    }

    /// Seed 000's VGG16 rows (weights only) and its inception (3a) module, 163,328 weights.
    func testSeed000VGG16AndInception3a() throws {
        let vgg = try resolve("vgg16")
        let convWeights = vgg.layers.filter { $0.layer.op.typeName == "Conv" }.map(\.weightCount)
        XCTAssertEqual(convWeights, [1_728, 36_864, 73_728, 147_456, 294_912, 589_824, 589_824, 1_179_648,
                                     2_359_296, 2_359_296, 2_359_296, 2_359_296, 2_359_296])
        let fcWeights = vgg.layers.filter { $0.layer.op.typeName == "Linear" }.map(\.weightCount)
        XCTAssertEqual(fcWeights, [102_760_448, 16_777_216, 4_096_000])

        let g = try resolve("googlenet-caffe")
        let branch = ["1x1", "3x3_reduce", "3x3", "5x5_reduce", "5x5", "pool_proj"]
            .map { g.layer(named: "inception_3a/" + $0)?.weightCount ?? -1 }
        XCTAssertEqual(branch, [12_288, 18_432, 110_592, 3_072, 12_800, 6_144])
        XCTAssertEqual(branch.reduce(0, +), 163_328)
        XCTAssertEqual(g.layer(named: "inception_3a/output")?.output, Shape3(256, 28, 28))
    }

    /// Seed 002's AlexNet rows count biases too; its VGG16 conv and FC rows are right, its
    /// maxpool row with 65,664 and its total 138,423,208 are not.
    func testSeed002RowsWithBiases() throws {
        let alex = try resolve("alexnet-single")
        let rows = ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"]
            .map { alex.layer(named: $0)?.parameterCount ?? -1 }
        XCTAssertEqual(rows, [34_944, 614_656, 885_120, 1_327_488, 884_992, 37_752_832, 16_781_312, 4_097_000])
        XCTAssertEqual(alex.totalParameters, 62_378_344)

        let vgg = try resolve("vgg16")
        let params = vgg.layers.filter { $0.parameterCount > 0 }.map(\.parameterCount)
        XCTAssertEqual(params, [1_792, 36_928, 73_856, 147_584, 295_168, 590_080, 590_080, 1_180_160,
                                2_359_808, 2_359_808, 2_359_808, 2_359_808, 2_359_808,
                                102_764_544, 16_781_312, 4_097_000])
        XCTAssertTrue(vgg.layers.filter { $0.layer.op.typeName == "MaxPool" }.allSatisfy { $0.parameterCount == 0 })
        XCTAssertEqual(vgg.totalParameters, 138_357_544)
        XCTAssertNotEqual(vgg.totalParameters, 138_423_208)
    }

    /// Seed 004's "35k 307k 884k 663k 442k 37M 16M 4M" is the two-GPU AlexNet's weights,
    /// biases left out, with conv2, conv4 and conv5 in two groups.
    func testSeed004GroupedAlexNet() throws {
        let net = try resolve("alexnet-caffe")
        let weights = ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"]
            .map { net.layer(named: $0)?.weightCount ?? -1 }
        XCTAssertEqual(weights, [34_848, 307_200, 884_736, 663_552, 442_368, 37_748_736, 16_777_216, 4_096_000])
        // The seed's figures exactly as it prints them. It rounds some (34,848 -> 35k) and
        // truncates others (884,736 -> 884k), so each must lie within one unit of its count:
        // a count off by a thousand (a k figure) or a million (an M figure) fails.
        let seed = ["35k", "307k", "884k", "663k", "442k", "37M", "16M", "4M"]
        for (count, figure) in zip(weights, seed) {
            let unit = figure.hasSuffix("M") ? 1_000_000 : 1_000
            let value = try XCTUnwrap(Int(figure.dropLast())) * unit
            XCTAssertLessThan(abs(count - value), unit, "\(figure) against \(count)")
        }
        // The seed's total, 60M: the grouped net's weights without biases.
        XCTAssertEqual(weights.reduce(0, +) / 1_000_000, 60)
    }

    /// Seed 004's VGG16 memory column, row by row, and its true sum: 15,237,608 values,
    /// about 58 MiB in float32 (the seed writes "24M * 4 bytes ~= 96MB").
    func testSeed004VGG16MemoryColumn() throws {
        let net = try resolve("vgg16")
        let column = [net.input.count] + net.layers.filter(\.allocatesOutput).map(\.activationElements)
        XCTAssertEqual(column, [150_528, 3_211_264, 3_211_264, 802_816, 1_605_632, 1_605_632, 401_408,
                                802_816, 802_816, 802_816, 200_704, 401_408, 401_408, 401_408, 100_352,
                                100_352, 100_352, 100_352, 25_088, 4_096, 4_096, 1_000])
        XCTAssertEqual(net.activationElements, 15_237_608)
        XCTAssertEqual(net.forwardMemoryBytes, 60_950_432)
        XCTAssertEqual(Double(net.forwardMemoryBytes) / 1_048_576, 58.1, accuracy: 0.05)
    }

    func testOutputVolumesAtDefaultSizes() throws {
        func volumes(_ id: String, _ names: [String]) throws -> [String] {
            let net = try resolve(id)
            return names.map { net.layer(named: $0)?.output.description ?? "missing \($0)" }
        }
        XCTAssertEqual(try volumes("lenet5", ["conv1", "pool1", "conv2", "pool2", "flatten", "fc1", "fc2", "fc3"]),
                       ["6x28x28", "6x14x14", "16x10x10", "16x5x5", "400x1x1", "120x1x1", "84x1x1", "10x1x1"])
        XCTAssertEqual(try volumes("alexnet", ["features.0", "features.2", "features.3", "features.5",
                                               "features.6", "features.8", "features.10", "features.12", "avgpool"]),
                       ["64x55x55", "64x27x27", "192x27x27", "192x13x13", "384x13x13", "256x13x13",
                        "256x13x13", "256x6x6", "256x6x6"])
        XCTAssertEqual(try volumes("alexnet-caffe", ["conv1", "norm1", "pool1", "conv2", "pool2", "conv5", "pool5"]),
                       ["96x55x55", "96x55x55", "96x27x27", "256x27x27", "256x13x13", "256x13x13", "256x6x6"])
        XCTAssertEqual(try volumes("zfnet512", ["conv1", "pool1", "conv2", "pool2", "conv5", "pool5", "fc6", "fc7"]),
                       ["96x109x109", "96x54x54", "256x25x25", "256x12x12", "512x12x12", "512x6x6",
                        "4096x1x1", "1024x1x1"])
        XCTAssertEqual(try volumes("vgg16", ["features.0", "features.4", "features.9", "features.16",
                                             "features.23", "features.30"]),
                       ["64x224x224", "64x112x112", "128x56x56", "256x28x28", "512x14x14", "512x7x7"])
        XCTAssertEqual(try volumes("vgg19_bn", ["features.1", "features.52", "avgpool", "classifier.6"]),
                       ["64x224x224", "512x7x7", "512x7x7", "1000x1x1"])
        let inception = ["maxpool1", "conv3.bn", "maxpool2", "inception3a", "inception3b", "maxpool3",
                         "inception4a", "inception4e", "maxpool4", "inception5b", "avgpool"]
        XCTAssertEqual(try volumes("googlenet", inception),
                       ["64x56x56", "192x56x56", "192x28x28", "256x28x28", "480x28x28", "480x14x14",
                        "512x14x14", "832x14x14", "832x7x7", "1024x7x7", "1024x1x1"])
        XCTAssertEqual(try volumes("googlenet-caffe", ["pool1/3x3_s2", "pool2/3x3_s2", "inception_3b/output",
                                                       "pool3/3x3_s2", "inception_4e/output", "pool4/3x3_s2",
                                                       "inception_5b/output", "pool5/7x7_s1"]),
                       ["64x56x56", "192x28x28", "480x28x28", "480x14x14", "832x14x14", "832x7x7",
                        "1024x7x7", "1024x1x1"])
        let stages = ["conv1", "maxpool", "layer1.1", "layer2.1", "layer3.1", "layer4.1", "avgpool", "fc"]
        XCTAssertEqual(try volumes("resnet18", stages),
                       ["64x112x112", "64x56x56", "64x56x56", "128x28x28", "256x14x14", "512x7x7",
                        "512x1x1", "1000x1x1"])
        XCTAssertEqual(try volumes("resnet50", ["layer1.2", "layer2.3", "layer3.5", "layer4.2"]),
                       ["256x56x56", "512x28x28", "1024x14x14", "2048x7x7"])
    }

    /// v1 puts the downsampling stride on the first 1x1, v1.5 (torchvision) on the 3x3.
    func testResNetStrideVariants() throws {
        func stride(_ id: String, _ layer: String) throws -> Int {
            guard case .conv(let c)? = try resolve(id).layer(named: layer)?.layer.op else { return -1 }
            return c.stride.h
        }
        XCTAssertEqual(try stride("resnet50", "layer2.0.conv1"), 1)
        XCTAssertEqual(try stride("resnet50", "layer2.0.conv2"), 2)
        XCTAssertEqual(try stride("resnet50-keras", "layer2.0.conv1"), 2)
        XCTAssertNotNil(try resolve("resnet50-keras").layer(named: "layer1.0.conv1")?.parameters.first { $0.role == .bias })
    }

    func testCanonicalNamesAreTorchvisionKeys() throws {
        let names = Set(try resolve("resnet18").parameters.map(\.name) + resolve("resnet18").buffers.map(\.name))
        for key in ["conv1.weight", "bn1.running_var", "layer1.0.conv1.weight", "layer2.0.downsample.0.weight",
                    "layer2.0.downsample.1.running_mean", "fc.weight", "fc.bias"] {
            XCTAssertTrue(names.contains(key), key)
        }
        // torchvision's 122 keys less its 20 num_batches_tracked counters: 20 convs, 20 BNs
        // with four tensors each, and the fc weight and bias.
        XCTAssertEqual(names.count, 20 + 20 * 4 + 2)
        let g = Set(try resolve("googlenet").parameters.map(\.name))
        XCTAssertTrue(g.contains("inception4a.branch3.1.conv.weight"))
        XCTAssertEqual(try resolve("googlenet").layer(named: "inception4a.branch3.1.conv")?.parameters.first?.shape,
                       [48, 16, 3, 3], "torchvision's \"5x5\" branch is a 3x3")
    }

    func testImpossibleInputSizesNameTheLayer() throws {
        XCTAssertThrowsError(try resolve("vgg16", size: Size2(16))) { error in
            guard case .invalidInputSize(_, let layer, _)? = error as? ZooError else { return XCTFail("\(error)") }
            XCTAssertEqual(layer, "features.30")
        }
        XCTAssertThrowsError(try resolve("alexnet", size: Size2(32))) { error in
            guard case .invalidInputSize(_, let layer, _)? = error as? ZooError else { return XCTFail("\(error)") }
            XCTAssertEqual(layer, "features.12")
        }
        XCTAssertThrowsError(try resolve("alexnet-caffe", size: Size2(224))) { error in
            XCTAssertTrue("\(error)".contains("fc6"), "\(error)")
        }
        XCTAssertThrowsError(try resolve("lenet5", classes: 0))
        XCTAssertThrowsError(try ArchitectureRegistry.find("vgg17")) { error in
            XCTAssertTrue("\(error)".contains("vgg16"), "lists the known ids")
        }
        XCTAssertEqual(try resolve("resnet18", size: Size2(64)).layer(named: "layer4.1")?.output, Shape3(512, 2, 2))
    }

    func testPooledSizeRules() {
        XCTAssertEqual(Architecture.pooledSize(112, 3, 2, 0, 0, false), 55)
        XCTAssertEqual(Architecture.pooledSize(112, 3, 2, 0, 0, true), 56)
        XCTAssertEqual(Architecture.pooledSize(14, 2, 2, 0, 0, true), 7)
        // The last window may not start in the trailing padding.
        XCTAssertEqual(Architecture.pooledSize(5, 2, 2, 1, 1, true), 3)
        XCTAssertNil(Architecture.pooledSize(1, 2, 2, 0, 0, false))
    }

    func testAliasesAndCase() throws {
        XCTAssertEqual(try ArchitectureRegistry.find("VGG16").id, "vgg16")
        XCTAssertEqual(try ArchitectureRegistry.find("bvlc_alexnet").id, "alexnet-caffe")
        XCTAssertEqual(try ArchitectureRegistry.find("inception_v1").id, "googlenet-caffe")
        let ids = ArchitectureRegistry.all.flatMap { [$0.id] + $0.aliases }
        XCTAssertEqual(ids.count, Set(ids).count, "ids and aliases are unique")
    }
}
