import Foundation
import XCTest
@testable import ModelZoo

/// `zoo convert` and `zoo init`: every format into every other on the committed LeNet
/// fixtures, checked against onnxruntime's logits; onnxruntime running zoo's ONNX output
/// of full-size random networks; the refusals; the Keras naming and layouts.
final class ConvertTests: ScratchDirectoryTestCase {
    override var scratchPrefix: String { "zoo-convert-tests" }

    private func lenet(_ name: String) -> String { CLI.fixture("lenet/" + name) }

    /// Largest |a - b| over the largest |b|.
    private func relativeDifference(_ a: Tensor, _ b: Tensor) -> Float {
        XCTAssertEqual(a.shape, b.shape)
        var difference: Float = 0, scale: Float = 0
        for (x, y) in zip(a.data, b.data) {
            difference = max(difference, abs(x - y))
            scale = max(scale, abs(y))
        }
        return scale > 0 ? difference / scale : difference
    }

    private func logits(weights: String, input: String) throws -> Tensor {
        let out = path("logits-\(UUID().uuidString).npy")
        let run = try CLI.run(["run", "--weights", weights, "--arch", "lenet5", "--input", input, "--output", out])
        XCTAssertEqual(run.status, 0, "zoo run \(weights): \(run.stderr)")
        return try NPY.read(path: out)
    }

    private func directoryListing() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: work.path).sorted()
    }

    // MARK: LeNet fixtures, every format into every other

    func testLeNetFixturesConvertAmongAllFormatsAndKeepOnnxruntimeLogits() throws {
        let expected = try NPY.read(path: lenet("logits_batch8_onnxruntime.npy"))
        let input = lenet("input_batch8.npy")
        let sources = ["lenet5_digits.onnx", "lenet5_digits.h5", "lenet5_digits.weights.h5", "lenet5_digits.safetensors"]
        let targets = ["onnx", "h5", "weights.h5", "safetensors"]
        for source in sources {
            for target in targets {
                let out = path("\(source).\(target)")
                let result = try CLI.run(["convert", lenet(source), out, "--arch", "lenet5"])
                XCTAssertEqual(result.status, 0, "\(source) -> \(target): \(result.stderr)")
                XCTAssertTrue(result.stdout.contains("61,706 parameters"), result.stdout)
                let difference = relativeDifference(try logits(weights: out, input: input), expected)
                XCTAssertLessThan(difference, 1e-5, "\(source) -> \(target)")
            }
        }
    }

    func testConvertToKerasReportsTheLayoutChangesAndCheckPasses() throws {
        let out = path("lenet.h5")
        let result = try CLI.run(["convert", lenet("lenet5_digits.onnx"), out, "--check"])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stdout.contains("10 tensors, 61,706 parameters"), result.stdout)
        XCTAssertTrue(result.stdout.contains("conv kernels OIHW -> HWIO"), result.stdout)
        XCTAssertTrue(result.stdout.contains("rows C,H,W -> H,W,C (16x5x5)"), result.stdout)
        XCTAssertTrue(result.stdout.contains("check: batch 2"), result.stdout)
        XCTAssertTrue(result.stdout.contains(": OK"), result.stdout)

        // The legacy layout Keras reads: layer_names at the root, weight_names per layer,
        // datasets at <layer>/<layer>/kernel:0, HWIO kernels and [in, out] dense.
        let file = try HDF5File(path: out)
        XCTAssertEqual(file.format, .kerasH5)
        XCTAssertEqual(file.kerasLayerNames, ["conv2d", "conv2d_1", "dense", "dense_1", "dense_2"])
        XCTAssertEqual(file.kerasWeightNames(layer: "conv2d"), ["conv2d/kernel:0", "conv2d/bias:0"])
        let kernel = try file.load("conv2d/conv2d/kernel:0")
        XCTAssertEqual(kernel.shape, [5, 5, 1, 6])
        let onnxWeights = try ModelLoader.load(path: lenet("lenet5_digits.onnx")).weights
        let oihw = try XCTUnwrap(onnxWeights["conv1.weight"])
        // HWIO[y][x][i][o] == OIHW[o][i][y][x]
        // HWIO[y=2][x=3][i=0][o=4] against OIHW[o=4][i=0][y=2][x=3].
        let hwioIndex: Int = (2 * 5 + 3) * 6 + 4
        let oihwIndex: Int = (4 * 5 + 2) * 5 + 3
        XCTAssertEqual(kernel.data[hwioIndex], oihw.data[oihwIndex])
        let fc1 = try file.load("dense/dense/kernel:0")
        XCTAssertEqual(fc1.shape, [400, 120])
        let canonical = try XCTUnwrap(onnxWeights["fc1.weight"])
        // Keras row (y * 5 + x) * 16 + c holds canonical column (c * 5 + y) * 5 + x.
        let (c, y, x, o) = (7, 3, 1, 11)
        let kerasIndex: Int = ((y * 5 + x) * 16 + c) * 120 + o
        let canonicalIndex: Int = o * 400 + (c * 5 + y) * 5 + x
        XCTAssertEqual(fc1.data[kerasIndex], canonical.data[canonicalIndex])
    }

    func testKeras3WeightsFileUsesClassCounterPathsAndDeclaredNames() throws {
        let out = path("lenet.weights.h5")
        XCTAssertEqual(try CLI.run(["convert", lenet("lenet5_digits.safetensors"), out]).status, 0)
        let file = try HDF5File(path: out)
        XCTAssertEqual(file.format, .kerasWeightsH5)
        XCTAssertEqual(Set(file.tensors.map(\.name)), Set(["layers/conv2d/vars/0", "layers/conv2d/vars/1",
            "layers/conv2d_1/vars/0", "layers/conv2d_1/vars/1", "layers/dense/vars/0", "layers/dense/vars/1",
            "layers/dense_1/vars/0", "layers/dense_1/vars/1", "layers/dense_2/vars/0", "layers/dense_2/vars/1"]))
        XCTAssertEqual(file.kerasDeclaredLayerNames["dense_2"], "dense_2")
        XCTAssertEqual(file.rootStringAttributes["zoo.architecture"], "lenet5")
    }

    // MARK: Keras naming

    func testKerasApplicationsNamesForVGG16AndResNet50() throws {
        let vgg = try KerasLayout.plan(ArchitectureRegistry.find("vgg16").resolve())
        XCTAssertEqual(vgg.layers.map(\.name).prefix(3), ["block1_conv1", "block1_conv2", "block2_conv1"])
        XCTAssertEqual(vgg.layers.map(\.name).suffix(4), ["block5_conv3", "fc1", "fc2", "predictions"])
        XCTAssertEqual(vgg.weightsFilePaths.suffix(2), ["layers/dense_1", "layers/dense_2"])
        let fc1 = try XCTUnwrap(vgg.layers.first { $0.name == "fc1" }?.weights.first)
        XCTAssertEqual(fc1.kerasShape, [25088, 4096])
        XCTAssertEqual(fc1.transform, .transposeToHWCFlatten(Shape3(512, 7, 7)))

        let resnet = try KerasLayout.plan(ArchitectureRegistry.find("resnet50-keras").resolve())
        let names = resnet.layers.map(\.name)
        // keras.applications' model.layers order within a downsampling block.
        let start = try XCTUnwrap(names.firstIndex(of: "conv2_block1_1_conv"))
        XCTAssertEqual(Array(names[start..<(start + 8)]),
                       ["conv2_block1_1_conv", "conv2_block1_1_bn", "conv2_block1_2_conv", "conv2_block1_2_bn",
                        "conv2_block1_0_conv", "conv2_block1_3_conv", "conv2_block1_0_bn", "conv2_block1_3_bn"])
        XCTAssertEqual(names.first, "conv1_conv")
        XCTAssertEqual(names.last, "predictions")
        let paths = resnet.weightsFilePaths
        XCTAssertEqual(paths[names.firstIndex(of: "conv2_block1_0_conv") ?? 0], "layers/conv2d_3")
    }

    func testKerasRefusesNetworksItCannotExpress() throws {
        for (id, phrase) in [("alexnet-caffe", "local response normalisation"), ("googlenet", "ceil mode"),
                             ("resnet50", "v1.5"), ("googlenet-caffe", "ceil mode")] {
            let net = try ArchitectureRegistry.find(id).resolve()
            XCTAssertThrowsError(try KerasLayout.plan(net), id) { error in
                XCTAssertTrue("\(error)".contains(phrase), "\(id): \(error)")
            }
        }
    }

    // MARK: Refusals and atomic writes

    func testRefusesToOverwriteTheInputEvenWithForce() throws {
        let input = path("in.safetensors")
        try FileManager.default.copyItem(atPath: lenet("lenet5_digits.safetensors"), toPath: input)
        let before = try Data(contentsOf: URL(fileURLWithPath: input))
        let result = try CLI.run(["convert", input, input, "--to", "safetensors", "--force"])
        XCTAssertEqual(result.status, 1)
        XCTAssertTrue(result.stderr.contains("refusing to overwrite the input"), result.stderr)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: input)), before)
        // The same file through another spelling of its path.
        let other = work.appendingPathComponent(".").appendingPathComponent("in.safetensors").path
        XCTAssertEqual(try CLI.run(["convert", input, other, "--force"]).status, 1)
        XCTAssertEqual(try directoryListing(), ["in.safetensors"])
    }

    func testExistingOutputNeedsForce() throws {
        let out = path("out.onnx")
        try Data("keep me".utf8).write(to: URL(fileURLWithPath: out))
        let refused = try CLI.run(["convert", lenet("lenet5_digits.safetensors"), out])
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.stderr.contains("exists: pass --force"), refused.stderr)
        XCTAssertEqual(try String(contentsOfFile: out, encoding: .utf8), "keep me")
        let forced = try CLI.run(["convert", lenet("lenet5_digits.safetensors"), out, "--force"])
        XCTAssertEqual(forced.status, 0, forced.stderr)
        XCTAssertEqual(try ONNXFile(path: out).onnxGraph.producerName, "modelzoo")
        XCTAssertEqual(try directoryListing(), ["out.onnx"])
    }

    func testKerasTargetForLRNNetworkIsRefusedBeforeWriting() throws {
        let source = path("alexnet-caffe.safetensors")
        let made = try CLI.run(["init", "alexnet-caffe", source, "--classes", "10"])
        XCTAssertEqual(made.status, 0, made.stderr)
        let result = try CLI.run(["convert", source, path("alexnet.h5")])
        XCTAssertEqual(result.status, 1)
        XCTAssertTrue(result.stderr.contains("cannot write alexnet-caffe as Keras HDF5"), result.stderr)
        XCTAssertTrue(result.stderr.contains("'norm1'"), result.stderr)
        XCTAssertEqual(try directoryListing(), ["alexnet-caffe.safetensors"])
    }

    func testUnverifiableInputPrintsTheVerifyReport() throws {
        let source = path("lenet.safetensors")
        XCTAssertEqual(try CLI.run(["init", "lenet5", source]).status, 0)
        let result = try CLI.run(["convert", source, path("x.onnx"), "--arch", "vgg16"])
        XCTAssertEqual(result.status, 1)
        XCTAssertTrue(result.stderr.contains("verdict: NOT OK"), result.stderr)
        XCTAssertEqual(try directoryListing(), ["lenet.safetensors"])
        let missing = try CLI.run(["convert", path("nothing.onnx"), path("y.onnx")])
        XCTAssertEqual(missing.status, 2)
        XCTAssertTrue(missing.stderr.contains("nothing.onnx: no such file"), missing.stderr)
    }

    /// A write that fails half way (here: the file-size limit, as a full disk would) leaves
    /// neither the output nor a temporary file behind, for each writer.
    func testFailedWriteLeavesNothingBehind() throws {
        for target in ["out.onnx", "out.h5", "out.weights.h5", "out.safetensors"] {
            let script = "trap '' XFSZ; ulimit -f 64; exec \"$0\" \"$@\""
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            process.arguments = ["-c", script, CLI.zooURL.path, "convert", lenet("lenet5_digits.onnx"), path(target)]
            let err = Pipe()
            process.standardError = err
            process.standardOutput = Pipe()
            try process.run()
            let message = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            XCTAssertEqual(process.terminationStatus, 1, "\(target): \(message)")
            XCTAssertTrue(message.contains("write failed") || message.contains("File too large"), "\(target): \(message)")
            XCTAssertEqual(try directoryListing(), [], target)
        }
        if geteuid() != 0 {
            let locked = work.appendingPathComponent("locked")
            try FileManager.default.createDirectory(at: locked, withIntermediateDirectories: false)
            chmod(locked.path, 0o555)
            defer { chmod(locked.path, 0o755) }
            let result = try CLI.run(["convert", lenet("lenet5_digits.onnx"), locked.appendingPathComponent("x.h5").path])
            XCTAssertEqual(result.status, 1)
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: locked.path), [])
        }
    }

    // MARK: Library pieces

    func testSafetensorsCarriesBatchNormCountersAsInt64AndVerifies() throws {
        let net = try ArchitectureRegistry.find("resnet18").resolve(classes: 10, inputSize: Size2(64))
        let out = path("r18.safetensors")
        let summary = try ModelWriter.write(net, weights: RandomWeights.make(net, seed: 2), classNames: nil, to: out,
                                            format: .safetensors, producer: "test")
        XCTAssertEqual(summary.tensors, net.parameters.count + net.buffers.count + 20)
        let file = try SafetensorsFile(path: out)
        let counter = try XCTUnwrap(file.tensors.first { $0.name == "layer1.0.bn1.num_batches_tracked" })
        XCTAssertEqual(counter.dtype, .int64)
        XCTAssertEqual(counter.shape, [])
        let (report, _) = try Verifier.verify(file, architecture: try ArchitectureRegistry.find("resnet18"))
        XCTAssertTrue(report.ok, "\(report.problems)")
    }

    func testClassNamesTravelThroughEveryFormat() throws {
        let net = try ArchitectureRegistry.find("lenet5").resolve(classes: 3)
        let weights = RandomWeights.make(net, seed: 4)
        let names = ["cat", "dog", "bird, small"]
        for (file, format) in [("c.onnx", WeightFormat.onnx), ("c.h5", .kerasH5), ("c.weights.h5", .kerasWeightsH5),
                               ("c.safetensors", .safetensors)] {
            _ = try ModelWriter.write(net, weights: weights, classNames: names, to: path(file), format: format, producer: "test")
            let model = try ModelLoader.load(path: path(file), architecture: "lenet5")
            XCTAssertEqual(model.classNames, names, file)
            XCTAssertEqual(model.weights["fc3.weight"], weights["fc3.weight"], file)
        }
        let onnx = try ONNXFile(path: path("c.onnx"))
        XCTAssertEqual(onnx.metadata["zoo.architecture"], "lenet5")
        XCTAssertEqual(onnx.opsetVersion, 13)
        XCTAssertEqual(onnx.onnxGraph.inputs.first?.name, "input")
        XCTAssertEqual(onnx.onnxGraph.outputs.first?.name, "logits")
    }

    func testLayoutKernelsRoundTrip() {
        let v = Shape3(3, 4, 5)
        let t = Tensor(shape: [7, v.count], data: (0..<(7 * v.count)).map { Float($0) })
        let keras = LayoutKernels.denseToKeras(t, flatten: v)
        var back = [Float](repeating: -1, count: t.count)
        keras.withUnsafeBufferPointer { src in
            back.withUnsafeMutableBufferPointer { dst in
                LayoutKernels.denseFromKeras(src, rows: v.count, cols: 7, flatten: v, into: dst)
            }
        }
        XCTAssertEqual(back, t.data)
        let conv = Tensor(shape: [4, 2, 3, 3], data: (0..<72).map { Float($0) })
        let hwio = LayoutKernels.convToKeras(conv)
        let reference = LayoutTransform.hwioToOIHW.apply(Tensor(shape: [3, 3, 2, 4], data: hwio), canonicalShape: [4, 2, 3, 3])
        XCTAssertEqual(reference.data, conv.data)
    }

    // MARK: onnxruntime runs zoo's ONNX output of full-size networks

    func testOnnxruntimeRunsConvertedFullSizeNetworks() throws {
        let python = "/usr/bin/env"
        let probe = Process()
        probe.executableURL = URL(fileURLWithPath: python)
        probe.arguments = ["python3", "-c", "import onnxruntime, numpy"]
        probe.standardError = Pipe()
        try probe.run()
        probe.waitUntilExit()
        guard probe.terminationStatus == 0 else { throw XCTSkip("python3 with onnxruntime and numpy is not available") }

        // VGG16 is the big one (528 MB of ONNX): once is enough for its layouts.
        for arch in ["alexnet", "resnet18", "googlenet", "vgg16"] {
            let source = path("\(arch).safetensors")
            let onnx = path("\(arch).onnx")
            let made = try CLI.run(["init", arch, source, "--seed", "11"])
            XCTAssertEqual(made.status, 0, made.stderr)
            let converted = try CLI.run(["convert", source, onnx])
            XCTAssertEqual(converted.status, 0, converted.stderr)

            var generator = SplitMix64(seed: 5)
            let input = Tensor(shape: [2, 3, 224, 224], data: (0..<(2 * 3 * 224 * 224)).map { _ in Float(generator.nextUniform() * 2 - 1) })
            let inputPath = path("input.npy")
            try NPY.write(input, to: inputPath)
            let ours = path("ours.npy"), theirs = path("theirs.npy")
            let run = try CLI.run(["run", "--weights", source, "--input", inputPath, "--output", ours])
            XCTAssertEqual(run.status, 0, run.stderr)

            let script = """
                import sys, numpy as np, onnxruntime as ort
                s = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
                np.save(sys.argv[3], s.run(["logits"], {"input": np.load(sys.argv[2])})[0])
                """
            let peer = Process()
            peer.executableURL = URL(fileURLWithPath: python)
            peer.arguments = ["python3", "-c", script, onnx, inputPath, theirs]
            let err = Pipe()
            peer.standardError = err
            try peer.run()
            let message = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            peer.waitUntilExit()
            XCTAssertEqual(peer.terminationStatus, 0, "\(arch): onnxruntime failed: \(message)")
            let difference = relativeDifference(try NPY.read(path: theirs), try NPY.read(path: ours))
            XCTAssertLessThan(difference, 1e-4, "\(arch): onnxruntime vs zoo")
            for file in [source, onnx, ours, theirs] { try? FileManager.default.removeItem(atPath: file) }
        }
    }
}
