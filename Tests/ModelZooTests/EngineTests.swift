import Foundation
import XCTest
@testable import ModelZoo

/// The oneDNN engine against the plain Swift reference, layer type by layer type and on whole
/// networks, plus torch-made expectations for the two LeNets (Fixtures/engine).
final class EngineTests: XCTestCase {
    // MARK: - Helpers

    /// A throwaway architecture around a few layers, resolved at `size`.
    private func tinyNetwork(channels: Int, size: Size2, _ build: @escaping @Sendable (NetworkBuilder) -> Void)
        throws -> ResolvedNetwork {
        let architecture = Architecture(
            id: "test", title: "test", family: .lenet, variant: "test", namingSource: "test",
            inputChannels: channels, defaultInputSize: size, acceptsOtherInputSizes: true,
            defaultClasses: 1, headLayer: "none", publishedParameters: nil, preprocessing: .torchvision
        ) { _ in
            let builder = NetworkBuilder()
            build(builder)
            return builder.layers
        }
        return try architecture.resolve()
    }

    /// Largest difference relative to the reference's largest magnitude.
    private func relativeError(_ actual: Tensor, _ expected: Tensor) -> Float {
        let scale = max(expected.data.map(abs).max() ?? 0, 1e-6)
        let worst = zip(actual.data, expected.data).map { abs($0 - $1) }.max() ?? 0
        return worst / scale
    }

    /// Runs `net` through oneDNN and the reference and compares.
    @discardableResult
    private func assertEngineMatchesReference(_ net: ResolvedNetwork, batch: Int = 2, seed: UInt64 = 7,
                                              tolerance: Float = 1e-4, convolutions: ConvolutionAlgorithm = .winograd,
                                              file: StaticString = #filePath, line: UInt = #line) throws -> Network {
        let weights = RandomWeights.make(net, seed: seed)
        let input = RandomWeights.input(net, batch: batch, seed: seed + 1)
        let network = try Network(net, weights: weights, batch: batch, threads: 2, convolutions: convolutions)
        let actual = try network.forward(input)
        let expected = try ReferenceEngine.forward(net, weights: weights, input: input)
        XCTAssertEqual(actual.shape, expected.shape, file: file, line: line)
        XCTAssertEqual(actual.shape, network.outputShape, file: file, line: line)
        let error = relativeError(actual, expected)
        XCTAssertLessThanOrEqual(error, tolerance, "\(net.architecture.id): relative error \(error)", file: file, line: line)
        return network
    }

    // MARK: - Layers

    func testGroupedConvolutionWithAsymmetricPaddingAndStride() throws {
        let net = try tinyNetwork(channels: 4, size: Size2(9, 11)) { b in
            b.conv("conv", 6, kernel: Size2(3, 2), stride: Size2(2, 1),
                   padding: Padding(top: 0, left: 1, bottom: 2, right: 0), groups: 2, act: .relu)
        }
        XCTAssertEqual(net.layers[0].output, Shape3(6, 5, 11))
        try assertEngineMatchesReference(net)
    }

    func testConvolutionWithoutBiasAndTanh() throws {
        let net = try tinyNetwork(channels: 3, size: Size2(8)) { b in
            b.conv("conv", 5, kernel: 3, pad: 1, bias: false, act: .tanh)
        }
        try assertEngineMatchesReference(net)
    }

    func testBatchNormIsFoldedIntoConvolution() throws {
        let net = try tinyNetwork(channels: 3, size: Size2(10)) { b in
            b.conv("conv", 16, kernel: 3, stride: 2, pad: 1, bias: false)
            b.batchNorm("bn", epsilon: 1e-3, act: .relu)
            b.conv("conv2", 16, kernel: 1)
            b.batchNorm("bn2", epsilon: 1e-5)
        }
        try assertEngineMatchesReference(net)
    }

    func testStandaloneBatchNormWithReluAndTanh() throws {
        let net = try tinyNetwork(channels: 16, size: Size2(6)) { b in
            b.maxPool("pool", kernel: 2, stride: 1)
            b.batchNorm("bn", epsilon: 1e-5, act: .relu)
            b.maxPool("pool2", kernel: 2, stride: 1)
            b.batchNorm("bn2", epsilon: 1e-3, act: .tanh)
        }
        try assertEngineMatchesReference(net)
    }

    func testMaxPoolCeilModeAndPadding() throws {
        let net = try tinyNetwork(channels: 3, size: Size2(8)) { b in
            b.maxPool("ceil", kernel: 3, stride: 2, ceil: true)          // 8 -> 4 (floor would give 3)
            b.maxPool("padded", kernel: 3, stride: 2, pad: 1)            // 4 -> 2
        }
        XCTAssertEqual(net.layers[0].output, Shape3(3, 4, 4))
        try assertEngineMatchesReference(net)
        let asymmetric = try tinyNetwork(channels: 2, size: Size2(7)) { b in
            b.maxPool("pool", kernel: 3, stride: 2, padding: Padding(top: 0, left: 0, bottom: 1, right: 1), ceil: true)
        }
        try assertEngineMatchesReference(asymmetric)
    }

    func testAvgPoolCountIncludePadBothWays() throws {
        for include in [true, false] {
            let net = try tinyNetwork(channels: 3, size: Size2(7)) { b in
                b.avgPool("pool", kernel: 3, stride: 2, padding: Padding(1), countIncludePad: include)
            }
            try assertEngineMatchesReference(net)
        }
    }

    func testAvgPoolCeilModeOverhang() throws {
        // Declared padding plus a ceil overhang: the divisor counts the first, not the second.
        for include in [true, false] {
            let net = try tinyNetwork(channels: 2, size: Size2(6)) { b in
                b.avgPool("pool", kernel: 3, stride: 2, padding: Padding(1), ceil: true, countIncludePad: include)
            }
            XCTAssertEqual(net.layers[0].output, Shape3(2, 4, 4))
            try assertEngineMatchesReference(net)
            let unpadded = try tinyNetwork(channels: 2, size: Size2(8)) { b in
                b.avgPool("pool", kernel: 3, stride: 2, ceil: true, countIncludePad: include)
            }
            try assertEngineMatchesReference(unpadded)
        }
        // A hand-checked corner: 1x1 input plane of 4s, window 2 stride 2 ceil, padding 0:
        // the overhang is never counted, so the mean is 4, not 1.
        let x = Tensor(shape: [1, 1, 3, 3], data: [Float](repeating: 4, count: 9))
        let spec = PoolSpec(kernel: Size2(2), stride: Size2(2), padding: .zero, ceilMode: true, countIncludePad: true)
        XCTAssertEqual(ReferenceEngine.avgPool(x, spec).data, [4, 4, 4, 4])
    }

    func testAdaptiveAveragePooling() throws {
        for (input, output) in [(8, 4), (5, 3), (3, 6), (4, 4), (7, 1)] {
            let net = try tinyNetwork(channels: 3, size: Size2(input)) { b in
                b.conv("conv", 4, kernel: 1)
                b.adaptiveAvgPool("pool", output)
            }
            try assertEngineMatchesReference(net)
        }
        // torchvision's windows for 5 -> 3: rows 0..<2, 1..<4, 3..<5.
        let x = Tensor(shape: [1, 1, 5, 1], data: [1, 2, 3, 4, 5])
        XCTAssertEqual(ReferenceEngine.adaptiveAvgPool(x, Size2(3, 1)).data, [1.5, 3, 4.5])
    }

    func testLRNAcrossChannelsCaffeConvention() throws {
        for (alpha, k) in [(1e-4, 1.0), (5e-4, 2.0), (0.5, 1.0)] {
            let net = try tinyNetwork(channels: 7, size: Size2(5)) { b in
                b.conv("conv", 16, kernel: 3, pad: 1, act: .relu)
                b.lrn("norm", size: 5, alpha: alpha, beta: 0.75, k: k)
            }
            try assertEngineMatchesReference(net)
        }
        // alpha is divided by size: one channel of value 2, size 5, alpha 5, beta 1, k 1
        // gives 2 / (1 + 5/5 * 4) = 0.4.
        let x = Tensor(shape: [1, 1, 1, 1], data: [2])
        let y = ReferenceEngine.lrn(x, LRNSpec(size: 5, alpha: 5, beta: 1, k: 1))
        XCTAssertEqual(y.data[0], 0.4, accuracy: 1e-6)
    }

    func testInnerProductAfterBlockedConvolutionKeepsCHWOrder() throws {
        let net = try tinyNetwork(channels: 3, size: Size2(6)) { b in
            b.conv("conv", 32, kernel: 3, act: .relu)
            b.maxPool("pool", kernel: 2, stride: 2)
            b.flatten()
            b.dropout("drop", 0.5)
            b.linear("fc1", 20, act: .tanh)
            b.linear("fc2", 7, bias: false)
        }
        let network = try assertEngineMatchesReference(net)
        XCTAssertEqual(network.outputShape, [2, 7])
    }

    func testConcatOfBranches() throws {
        let net = try tinyNetwork(channels: 8, size: Size2(7)) { b in
            let input = b.conv("stem", 32, kernel: 3, pad: 1, act: .relu)
            let a = b.conv("a", 16, kernel: 1, act: .relu, from: input)
            b.conv("b0", 8, kernel: 1, act: .relu, from: input)
            let c = b.conv("b1", 24, kernel: 3, pad: 1, act: .relu)
            b.maxPool("p", kernel: 3, stride: 1, pad: 1, ceil: true, from: input)
            let d = b.conv("p1", 16, kernel: 1, act: .relu)
            b.concat("cat", [a, c, d])
            b.conv("after", 8, kernel: 1)
        }
        // Direct convolutions at batch 1: channels-last, every branch writes its slice. The
        // blocked layout (from batch 2, or wherever Winograd may run): the 24-channel branch
        // would start the third slice mid-block, so a concat copies.
        let single = try assertEngineMatchesReference(net, batch: 1, convolutions: .direct)
        XCTAssertFalse(single.executionPlan.contains("cat: concat"), "\(single.executionPlan)")
        for (batch, convolutions) in [(2, ConvolutionAlgorithm.direct), (1, .winograd), (2, .winograd)] {
            let blocked = try assertEngineMatchesReference(net, batch: batch, convolutions: convolutions)
            XCTAssertTrue(blocked.executionPlan.contains("cat: concat"), "\(blocked.executionPlan)")
        }
    }

    /// Inception-style branches whose channel counts fill whole 16-channel blocks write their
    /// slices of the concat in both layouts, including a branch read by a BatchNorm folded
    /// into its conv; a concat branch read by another layer as well gets its own buffer.
    func testConcatBranchesWriteTheirSlicesInPlace() throws {
        let net = try tinyNetwork(channels: 16, size: Size2(9)) { b in
            let input = b.conv("stem", 32, kernel: 3, pad: 1, act: .relu)
            let a = b.conv("a", 16, kernel: 1, act: .relu, from: input)
            b.conv("b0", 16, kernel: 1, bias: false, from: input)
            b.batchNorm("b0.bn", epsilon: 1e-3, act: .relu)
            let c = b.conv("b1", 48, kernel: 3, pad: 1, act: .relu)
            b.maxPool("p", kernel: 3, stride: 1, pad: 1, ceil: true, from: input)
            let d = b.conv("p1", 32, kernel: 1, act: .relu)
            let cat = b.concat("cat", [a, c, d])
            let e = b.conv("e", 16, kernel: 1, act: .relu, from: cat)
            let f = b.conv("f", 16, kernel: 3, pad: 1, act: .relu, from: cat)
            b.concat("cat2", [e, f])
            b.conv("g", 16, kernel: 1, from: e)
            b.concat("cat3", ["cat2", "g"])
        }
        for batch in [1, 3] {
            let network = try assertEngineMatchesReference(net, batch: batch)
            let plan = network.executionPlan
            XCTAssertFalse(plan.contains("cat: concat"), "batch \(batch): \(plan)")
            // `e` is read by `g` too: cat2 copies.
            XCTAssertTrue(plan.contains("cat2: concat"), "batch \(batch): \(plan)")
        }
    }

    /// float32 3x3 stride-1 convolutions run oneDNN's Winograd kernel, also when one
    /// accumulates a residual sum or writes a concat's slice, but not on an RGB input or as a
    /// small layer on a small map (where it measured slower); `.direct` turns it off.
    func testWinogradWhereItPays() throws {
        let net = try tinyNetwork(channels: 3, size: Size2(16)) { b in
            let stem = b.conv("rgb", 16, kernel: 3, pad: 1, act: .relu)
            b.conv("c1", 32, kernel: 3, pad: 1, bias: false, from: stem)
            b.batchNorm("c1.bn", epsilon: 1e-5, act: .relu)
            b.conv("c2", 16, kernel: 3, pad: 1, bias: false)
            let r = b.batchNorm("c2.bn", epsilon: 1e-5)
            let y = b.add("block", [r, stem], act: .relu)
            let a = b.conv("a", 16, kernel: 1, act: .relu, from: y)
            let c = b.conv("branch", 32, kernel: 3, pad: 1, act: .relu, from: y)
            b.concat("cat", [a, c])
            b.maxPool("pool", kernel: 2, stride: 2)
            b.conv("small", 16, kernel: 3, pad: 1)
        }
        for batch in [1, 2] {
            let network = try assertEngineMatchesReference(net, batch: batch)
            let winograd = Set(network.kernels.filter { $0.implementation.contains("wino") }.map(\.layer))
            XCTAssertEqual(winograd, ["c1", "c2", "branch"], "batch \(batch): \(network.kernels)")
            XCTAssertFalse(network.executionPlan.contains("cat: concat"), "batch \(batch): \(network.executionPlan)")
            XCTAssertFalse(network.executionPlan.contains("block: binary"), "batch \(batch): \(network.executionPlan)")
            let direct = try assertEngineMatchesReference(net, batch: batch, convolutions: .direct)
            XCTAssertFalse(direct.kernels.contains { $0.implementation.contains("wino") }, "\(direct.kernels)")
        }
    }

    /// oneDNN runs an inner product over a 4-d source as a plain GEMM; the engine gives it a
    /// flat [N, C*H*W] view so that from two images on the brgemm kernels run (AlexNet's fc6
    /// twice as fast). One image is a matrix-vector product, where the GEMM kernel over
    /// row-major weights is the faster one.
    func testInnerProductKernelsByBatch() throws {
        let net = try tinyNetwork(channels: 3, size: Size2(12)) { b in
            b.conv("conv", 32, kernel: 3, act: .relu)
            b.maxPool("pool", kernel: 2, stride: 2)
            b.flatten()
            b.linear("fc1", 64, act: .relu)
            b.linear("fc2", 5)
        }
        for (batch, kernel) in [(1, "gemm:jit"), (4, "brgemm")] {
            let network = try assertEngineMatchesReference(net, batch: batch)
            let kernels = Dictionary(network.kernels.map { ($0.layer, $0.implementation) }, uniquingKeysWith: { a, _ in a })
            for layer in ["fc1", "fc2"] {
                XCTAssertTrue(kernels[layer]?.contains(kernel) ?? false, "batch \(batch): \(network.kernels)")
            }
        }
    }

    func testResidualAddsFusedAndPlain() throws {
        let net = try tinyNetwork(channels: 16, size: Size2(8)) { b in
            let stem = b.conv("stem", 16, kernel: 3, pad: 1, bias: false)
            b.batchNorm("stem.bn", epsilon: 1e-5, act: .relu)
            let x = b.current
            // Identity shortcut: nothing reads x after the add, so c2 accumulates into x's buffer.
            b.conv("c1", 16, kernel: 3, pad: 1, bias: false, from: x)
            b.batchNorm("c1.bn", epsilon: 1e-5, act: .relu)
            b.conv("c2", 16, kernel: 3, pad: 1, bias: false)
            let r = b.batchNorm("c2.bn", epsilon: 1e-5)
            let y = b.add("block1", [r, x], act: .relu)
            // Downsampling block: both operands are deferred convs.
            b.conv("d1", 32, kernel: 3, stride: 2, pad: 1, bias: false, from: y)
            b.batchNorm("d1.bn", epsilon: 1e-5, act: .relu)
            b.conv("d2", 32, kernel: 3, pad: 1, bias: false)
            let r2 = b.batchNorm("d2.bn", epsilon: 1e-5)
            b.conv("ds", 32, kernel: 1, stride: 2, bias: false, from: y)
            let s = b.batchNorm("ds.bn", epsilon: 1e-5)
            let z = b.add("block2", [r2, s], act: .relu)
            // Plain add of two non-conv values, and of a value with itself.
            let p = b.maxPool("p", kernel: 3, stride: 1, pad: 1, from: z)
            b.add("plain", [p, z])
            b.add("twice", ["plain", "plain"])
            _ = stem
        }
        try assertEngineMatchesReference(net)
    }

    func testSoftmax() throws {
        let architecture = Architecture(
            id: "softmax-test", title: "t", family: .lenet, variant: "t", namingSource: "t", inputChannels: 2,
            defaultInputSize: Size2(3), acceptsOtherInputSizes: true, defaultClasses: 4, headLayer: "fc",
            publishedParameters: nil, preprocessing: .torchvision
        ) { classes in
            [Layer(name: "flatten", op: .flatten, inputs: [Layer.networkInput]),
             Layer(name: "fc", op: .linear(outFeatures: classes, bias: true), inputs: ["flatten"]),
             Layer(name: "prob", op: .softmax, inputs: ["fc"])]
        }
        try assertEngineMatchesReference(try architecture.resolve())
    }

    func testResNetPlanFusesBatchNormActivationsAndResidualAdds() throws {
        let net = try ArchitectureRegistry.find("resnet18").resolve(classes: 10, inputSize: Size2(64))
        let network = try Network(net, weights: RandomWeights.make(net, seed: 2), batch: 1, threads: 1)
        let plan = network.executionPlan
        // 20 convolutions (BN, ReLU and the residual sums inside them), max pool, average
        // pool, inner product, and one reorder of the NCHW input: nothing else.
        XCTAssertEqual(plan.filter { $0.hasSuffix(": convolution") }.count, 20, "\(plan)")
        XCTAssertEqual(plan.filter { $0.hasSuffix(": pooling") }.count, 2, "\(plan)")
        XCTAssertEqual(plan.filter { $0.hasSuffix(": inner_product") }.count, 1, "\(plan)")
        XCTAssertLessThanOrEqual(plan.count, 24, "\(plan)")
        XCTAssertFalse(plan.contains { $0.contains("binary") || $0.contains("eltwise") || $0.contains("batch_norm") }, "\(plan)")
        // Activations share storage: far less than the sum of every layer's output.
        let everyOutput = net.activationElements * 4
        XCTAssertLessThan(network.activationMemoryBytes, everyOutput / 3)
    }

    func testThreadCountReachesOpenMP() throws {
        guard let before = OpenMPRuntime.maxThreads() else { throw XCTSkip("oneDNN is not on OpenMP here") }
        OpenMPRuntime.setThreads(3)
        XCTAssertEqual(OpenMPRuntime.maxThreads(), 3)
        OpenMPRuntime.setThreads(before)
    }

    // MARK: - Errors

    func testWrongInputShapeIsRefusedWithClearError() throws {
        let net = try ArchitectureRegistry.find("lenet5").resolve()
        let network = try Network(net, weights: RandomWeights.make(net, seed: 1), batch: 2, threads: 1)
        XCTAssertThrowsError(try network.forward(Tensor(zeros: [1, 1, 32, 32]))) { error in
            XCTAssertEqual(error as? ZooError, .engineFailure(
                layer: "input", reason: "lenet5 compiled for input [2, 1, 32, 32] (batch, channels, height, width), got [1, 1, 32, 32]"))
        }
    }

    func testMissingAndMisshapenWeightsNameTheTensor() throws {
        let net = try ArchitectureRegistry.find("lenet5").resolve()
        var weights = RandomWeights.make(net, seed: 1)
        weights["fc2.weight"] = nil
        XCTAssertThrowsError(try Network(net, weights: weights, batch: 1)) { error in
            XCTAssertEqual(error as? ZooError, .engineFailure(layer: "fc2", reason: "weight 'fc2.weight' is missing"))
        }
        weights = RandomWeights.make(net, seed: 1)
        weights["conv1.weight"] = Tensor(zeros: [6, 1, 3, 3])
        XCTAssertThrowsError(try Network(net, weights: weights, batch: 1)) { error in
            XCTAssertEqual(error as? ZooError, .engineFailure(
                layer: "conv1", reason: "weight 'conv1.weight' has shape [6, 1, 3, 3], expected [6, 1, 5, 5]"))
        }
        XCTAssertThrowsError(try Network(net, weights: RandomWeights.make(net, seed: 1), batch: 0))
    }

    func testEnvironmentAdvice() {
        XCTAssertTrue(EngineEnvironment.needsReexec(environment: [:]))
        XCTAssertTrue(EngineEnvironment.needsReexec(environment: ["OMP_NUM_THREADS": "2"]))
        XCTAssertFalse(EngineEnvironment.needsReexec(environment: ["ZOO_OMP_REEXEC": "1"]))
        XCTAssertFalse(EngineEnvironment.needsReexec(environment: ["OMP_WAIT_POLICY": "passive"]))
        let variables = EngineEnvironment.requiredVariables(threads: 3, environment: [:])
        XCTAssertEqual(variables["OMP_NUM_THREADS"], "3")
        XCTAssertEqual(variables["OMP_WAIT_POLICY"], "active")
        XCTAssertEqual(EngineEnvironment.defaultThreads(environment: ["OMP_NUM_THREADS": "5"]), 5)
    }

    // MARK: - Whole networks

    func testLeNetsMatchReference() throws {
        for id in ["lenet5", "lenet5-classic"] {
            try assertEngineMatchesReference(try ArchitectureRegistry.find(id).resolve(), batch: 3)
        }
    }

    func testResNetsAtSmallInputMatchReference() throws {
        try assertEngineMatchesReference(try ArchitectureRegistry.find("resnet18").resolve(classes: 10, inputSize: Size2(32)),
                                         batch: 1)
        // Bottlenecks with the stride on the first 1x1 and biased convs; 25M weights are slow
        // to draw in a debug build.
        if heavy {
            try assertEngineMatchesReference(try ArchitectureRegistry.find("resnet50-keras").resolve(classes: 10, inputSize: Size2(32)),
                                             batch: 1)
        }
    }

    func testGoogLeNetAtSmallInputMatchesReference() throws {
        // Batch 1 in channels-last, batch 2 in the blocked layout; every inception module
        // writes its branches in place in both.
        for batch in [1, 2] {
            let network = try assertEngineMatchesReference(
                try ArchitectureRegistry.find("googlenet").resolve(classes: 10, inputSize: Size2(64)), batch: batch)
            XCTAssertFalse(network.executionPlan.contains { $0.hasSuffix(": concat") }, "\(network.executionPlan)")
        }
    }

    func testAlexNetWithUnevenAdaptivePoolMatchesReference() throws {
        try XCTSkipUnless(heavy, "set ZOO_HEAVY_TESTS=1")
        try assertEngineMatchesReference(try ArchitectureRegistry.find("alexnet").resolve(classes: 10, inputSize: Size2(127)),
                                         batch: 1)
    }

    func testCaffeNetworksWithLRNMatchReference() throws {
        try XCTSkipUnless(heavy, "set ZOO_HEAVY_TESTS=1")
        for id in ["alexnet-caffe", "googlenet-caffe", "zfnet512"] {
            try assertEngineMatchesReference(try ArchitectureRegistry.find(id).resolve(classes: 10), batch: 1)
        }
    }

    private var heavy: Bool { ProcessInfo.processInfo.environment["ZOO_HEAVY_TESTS"] == "1" }

    /// Every architecture compiles and returns [1, classes]; zero weights and small inputs
    /// where the network allows keep this to about ten seconds.
    func testEveryArchitectureCompilesAndHasTheRightOutputShape() throws {
        for architecture in ArchitectureRegistry.all {
            let size = architecture.acceptsOtherInputSizes ? Size2(64) : nil
            let net = try architecture.resolve(classes: 5, inputSize: size)
            var weights: [String: Tensor] = [:]
            for spec in net.parameters + net.buffers {
                weights[spec.name] = Tensor(zeros: spec.shape)
            }
            for spec in net.buffers where spec.role == .runningVar {
                weights[spec.name] = Tensor(shape: spec.shape, data: [Float](repeating: 1, count: spec.count))
            }
            let network = try Network(net, weights: weights, batch: 1, threads: 2)
            let output = try network.forward(Tensor(zeros: [1, net.input.c, net.input.h, net.input.w]))
            XCTAssertEqual(output.shape, [1, 5], architecture.id)
        }
    }

    // MARK: - Torch-made expectations

    func testLeNetsMatchTorchFixtures() throws {
        for id in ["lenet5", "lenet5-classic"] {
            let directory = Self.fixtures.appendingPathComponent("engine").appendingPathComponent(id)
            let net = try ArchitectureRegistry.find(id).resolve()
            var weights: [String: Tensor] = [:]
            for spec in net.parameters {
                weights[spec.name] = try TestNPY.load(directory.appendingPathComponent(spec.name + ".npy"))
            }
            let input = try TestNPY.load(directory.appendingPathComponent("input.npy"))
            let expected = try TestNPY.load(directory.appendingPathComponent("output.npy"))
            let network = try Network(net, weights: weights, batch: input.shape[0], threads: 2)
            let actual = try network.forward(input)
            XCTAssertEqual(actual.shape, expected.shape, id)
            XCTAssertLessThanOrEqual(relativeError(actual, expected), 1e-5, id)
            let reference = try ReferenceEngine.forward(net, weights: weights, input: input)
            XCTAssertLessThanOrEqual(relativeError(reference, expected), 1e-5, id)
        }
    }

    static let fixtures: URL = {
        var url = URL(fileURLWithPath: #filePath)
        while url.path != "/" {
            url.deleteLastPathComponent()
            if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { break }
        }
        return url.appendingPathComponent("Fixtures")
    }()

    // MARK: - Benchmark (ZOO_BENCH=1, release build recommended)

    /// Prints the figures (a benchmark, not a timed test), and checks what the figures are
    /// made of: the network timed computes the same logits as the Swift reference engine on
    /// a seeded input, and the counts are the ones asked for (a benchmark of a wrong or
    /// empty computation fails here).
    func testBenchmarkFiguresAreOfTheRightComputation() throws {
        let environment = ProcessInfo.processInfo.environment
        try XCTSkipUnless(environment["ZOO_BENCH"] == "1", "set ZOO_BENCH=1")
        let ids = (environment["ZOO_BENCH_MODELS"] ?? "resnet18,vgg16,alexnet,googlenet,resnet50")
            .split(separator: ",").map(String.init)
        let batches = (environment["ZOO_BENCH_BATCHES"] ?? "1,8").split(separator: ",").compactMap { Int($0) }
        for id in ids {
            let net = try ArchitectureRegistry.find(id).resolve()
            let weights = RandomWeights.make(net, seed: 3)
            let probe = RandomWeights.input(net, batch: 1, seed: 11)
            let reference = try ReferenceEngine.forward(net, weights: weights, input: probe)
            for batch in batches {
                let network = try Network(net, weights: weights, batch: batch)
                let iterations = batch == 1 ? 30 : 10
                let result = try network.benchmark(iterations: iterations, warmup: 3)
                print("BENCH \(id) \(result)")
                XCTAssertEqual(result.batch, batch, id)
                XCTAssertEqual(result.iterations, iterations, id)
                XCTAssertEqual(result.macsPerImage, net.totalMACs, id)
                XCTAssertTrue(result.minMsPerBatch > 0 && result.minMsPerBatch <= result.medianMsPerBatch, "\(id) \(result)")
                let repeated = Tensor(shape: [batch] + Array(probe.shape.dropFirst()),
                                      data: Array((0..<batch).map { _ in probe.data }.joined()))
                let logits = try network.forward(repeated)
                let first = Tensor(shape: [1] + Array(logits.shape.dropFirst()), data: Array(logits.data.prefix(reference.count)))
                XCTAssertLessThanOrEqual(relativeError(first, reference), 1e-4, "\(id) batch \(batch)")
            }
        }
    }
}

/// Just enough of the .npy format (v1.0, little-endian float32, C order) to read the files
/// Tools/make_engine_fixtures.py writes; the library's own reader is tested elsewhere.
enum TestNPY {
    struct Failure: Error, CustomStringConvertible { let description: String }

    static func load(_ url: URL) throws -> Tensor {
        let bytes = [UInt8](try Data(contentsOf: url))
        guard bytes.count > 10, bytes[0] == 0x93, Array(bytes[1...5]) == Array("NUMPY".utf8), bytes[6] == 1 else {
            throw Failure(description: "\(url.path): not an .npy v1 file")
        }
        let headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
        guard bytes.count >= 10 + headerLength,
              let header = String(bytes: bytes[10..<(10 + headerLength)], encoding: .ascii) else {
            throw Failure(description: "\(url.path): truncated header")
        }
        guard header.contains("'descr': '<f4'"), header.contains("'fortran_order': False"),
              let open = header.range(of: "'shape': ("), let close = header[open.upperBound...].firstIndex(of: ")") else {
            throw Failure(description: "\(url.path): expected little-endian float32 in C order, header \(header)")
        }
        let shape = header[open.upperBound..<close].split(separator: ",")
            .compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        let count = shape.reduce(1, *)
        let start = 10 + headerLength
        guard bytes.count - start == count * 4 else {
            throw Failure(description: "\(url.path): \(bytes.count - start) data bytes for shape \(shape)")
        }
        var data = [Float](repeating: 0, count: count)
        data.withUnsafeMutableBytes { destination in
            bytes.withUnsafeBytes { source in
                destination.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[start...]))
            }
        }
        return Tensor(shape: shape, data: data)
    }
}
