extension Architecture {
    /// One Inception module's widths: 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool projection.
    struct InceptionWidths {
        let name: String, b1: Int, b2r: Int, b2: Int, b3r: Int, b3: Int, b4: Int
    }

    /// Table 1 of the GoogLeNet paper.
    static let inceptionTable: [InceptionWidths] = [
        .init(name: "3a", b1: 64, b2r: 96, b2: 128, b3r: 16, b3: 32, b4: 32),
        .init(name: "3b", b1: 128, b2r: 128, b2: 192, b3r: 32, b3: 96, b4: 64),
        .init(name: "4a", b1: 192, b2r: 96, b2: 208, b3r: 16, b3: 48, b4: 64),
        .init(name: "4b", b1: 160, b2r: 112, b2: 224, b3r: 24, b3: 64, b4: 64),
        .init(name: "4c", b1: 128, b2r: 128, b2: 256, b3r: 24, b3: 64, b4: 64),
        .init(name: "4d", b1: 112, b2r: 144, b2: 288, b3r: 32, b3: 64, b4: 64),
        .init(name: "4e", b1: 256, b2r: 160, b2: 320, b3r: 32, b3: 128, b4: 128),
        .init(name: "5a", b1: 256, b2r: 160, b2: 320, b3r: 32, b3: 128, b4: 128),
        .init(name: "5b", b1: 384, b2r: 192, b2: 384, b3r: 48, b3: 128, b4: 128),
    ]

    /// torchvision's GoogLeNet: BasicConv2d = conv without bias + BN (eps 1e-3) + ReLU,
    /// ceil-mode pooling, no aux heads. Its "5x5" branch really uses a 3x3 kernel (a known
    /// quirk kept for weight compatibility), which the published 6,624,904 counts.
    static let googlenetTorchvision = Architecture(
        id: "googlenet", title: "GoogLeNet", family: .googlenet,
        variant: "torchvision (BatchNorm eps 1e-3, no aux heads, 3x3 in the \"5x5\" branch)",
        namingSource: "torchvision state_dict",
        defaultInputSize: Size2(224), acceptsOtherInputSizes: true,
        headLayer: "fc", publishedParameters: 6_624_904,
        preprocessing: .torchvision, dataset: .imagenet1k, aliases: ["inception_v1-torchvision", "googlenet-torchvision"]
    ) { classes in
        let b = NetworkBuilder()
        func basic(_ name: String, _ out: Int, kernel: Int, stride: Int = 1, pad: Int = 0, from: String? = nil) -> String {
            b.conv(name + ".conv", out, kernel: kernel, stride: stride, pad: pad, bias: false, from: from)
            return b.batchNorm(name + ".bn", epsilon: 1e-3, act: .relu)
        }
        _ = basic("conv1", 64, kernel: 7, stride: 2, pad: 3)
        b.maxPool("maxpool1", kernel: 3, stride: 2, ceil: true)
        _ = basic("conv2", 64, kernel: 1)
        _ = basic("conv3", 192, kernel: 3, pad: 1)
        b.maxPool("maxpool2", kernel: 3, stride: 2, ceil: true)
        for w in inceptionTable {
            let block = "inception" + w.name
            let input = b.current
            let br1 = basic(block + ".branch1", w.b1, kernel: 1, from: input)
            _ = basic(block + ".branch2.0", w.b2r, kernel: 1, from: input)
            let br2 = basic(block + ".branch2.1", w.b2, kernel: 3, pad: 1)
            _ = basic(block + ".branch3.0", w.b3r, kernel: 1, from: input)
            let br3 = basic(block + ".branch3.1", w.b3, kernel: 3, pad: 1)
            b.maxPool(block + ".branch4.0", kernel: 3, stride: 1, pad: 1, ceil: true, from: input)
            let br4 = basic(block + ".branch4.1", w.b4, kernel: 1)
            b.concat(block, [br1, br2, br3, br4])
            if w.name == "3b" { b.maxPool("maxpool3", kernel: 3, stride: 2, ceil: true) }
            if w.name == "4e" { b.maxPool("maxpool4", kernel: 2, stride: 2, ceil: true) }
        }
        b.adaptiveAvgPool("avgpool", 1)
        b.flatten()
        b.dropout("dropout", 0.2)
        b.linear("fc", classes)
        return b.layers
    }

    /// The Caffe bvlc GoogLeNet (the ONNX zoo's inception_v1): convs with biases, LRN,
    /// no BN, a real 5x5 branch, Caffe's ceil-mode pooling, 7x7 average pool at the end.
    /// Names are the Caffe layer names.
    static let googlenetCaffe = googlenetCaffe()

    /// `widthDivisor` (1 in the published net) divides every conv's width, for narrow test nets.
    static func googlenetCaffe(widthDivisor d: Int = 1, id: String = "googlenet-caffe") -> Architecture { Architecture(
        id: id, title: "GoogLeNet", family: .googlenet,
        variant: "Caffe bvlc_googlenet (LRN, no BN; the ONNX zoo's inception_v1)",
        namingSource: "Caffe bvlc_googlenet layer names",
        defaultInputSize: Size2(224), acceptsOtherInputSizes: false,
        headLayer: "loss3/classifier", publishedParameters: nil,
        preprocessing: .caffe, dataset: .imagenet1k, aliases: ["inception_v1", "bvlc_googlenet"]
    ) { classes in
        let b = NetworkBuilder()
        b.conv("conv1/7x7_s2", 64 / d, kernel: 7, stride: 2, pad: 3, act: .relu)
        b.maxPool("pool1/3x3_s2", kernel: 3, stride: 2, ceil: true)
        b.lrn("pool1/norm1", size: 5, alpha: 1e-4, beta: 0.75, k: 1)
        b.conv("conv2/3x3_reduce", 64 / d, kernel: 1, act: .relu)
        b.conv("conv2/3x3", 192 / d, kernel: 3, pad: 1, act: .relu)
        b.lrn("conv2/norm2", size: 5, alpha: 1e-4, beta: 0.75, k: 1)
        b.maxPool("pool2/3x3_s2", kernel: 3, stride: 2, ceil: true)
        for w in inceptionTable {
            let block = "inception_" + w.name
            let input = b.current
            let br1 = b.conv(block + "/1x1", max(1, w.b1 / d), kernel: 1, act: .relu, from: input)
            b.conv(block + "/3x3_reduce", max(1, w.b2r / d), kernel: 1, act: .relu, from: input)
            let br2 = b.conv(block + "/3x3", max(1, w.b2 / d), kernel: 3, pad: 1, act: .relu)
            b.conv(block + "/5x5_reduce", max(1, w.b3r / d), kernel: 1, act: .relu, from: input)
            let br3 = b.conv(block + "/5x5", max(1, w.b3 / d), kernel: 5, pad: 2, act: .relu)
            b.maxPool(block + "/pool", kernel: 3, stride: 1, pad: 1, ceil: true, from: input)
            let br4 = b.conv(block + "/pool_proj", max(1, w.b4 / d), kernel: 1, act: .relu)
            b.concat(block + "/output", [br1, br2, br3, br4])
            if w.name == "3b" { b.maxPool("pool3/3x3_s2", kernel: 3, stride: 2, ceil: true) }
            if w.name == "4e" { b.maxPool("pool4/3x3_s2", kernel: 3, stride: 2, ceil: true) }
        }
        b.avgPool("pool5/7x7_s1", kernel: 7, stride: 1)
        b.dropout("pool5/drop_7x7_s1", 0.4)
        b.flatten()
        b.linear("loss3/classifier", classes)
        return b.layers
    } }
}
