extension Architecture {
    /// torchvision's AlexNet: the "one weird trick" widths 64/192/384/256/256, no LRN,
    /// adaptive 6x6 pooling before the classifier, so any input from 63x63 up runs.
    static let alexnetTorchvision = Architecture(
        id: "alexnet", title: "AlexNet", family: .alexnet,
        variant: "torchvision (64/192/384/256/256, no LRN)",
        namingSource: "torchvision state_dict",
        defaultInputSize: Size2(224), acceptsOtherInputSizes: true,
        headLayer: "classifier.6", publishedParameters: 61_100_840,
        preprocessing: .torchvision, dataset: .imagenet1k, aliases: ["alexnet-torchvision"]
    ) { classes in
        let b = NetworkBuilder()
        b.conv("features.0", 64, kernel: 11, stride: 4, pad: 2, act: .relu)
        b.maxPool("features.2", kernel: 3, stride: 2)
        b.conv("features.3", 192, kernel: 5, pad: 2, act: .relu)
        b.maxPool("features.5", kernel: 3, stride: 2)
        b.conv("features.6", 384, kernel: 3, pad: 1, act: .relu)
        b.conv("features.8", 256, kernel: 3, pad: 1, act: .relu)
        b.conv("features.10", 256, kernel: 3, pad: 1, act: .relu)
        b.maxPool("features.12", kernel: 3, stride: 2)
        b.adaptiveAvgPool("avgpool", 6)
        b.flatten()
        b.dropout("classifier.0", 0.5)
        b.linear("classifier.1", 4096, act: .relu)
        b.dropout("classifier.3", 0.5)
        b.linear("classifier.4", 4096, act: .relu)
        b.linear("classifier.6", classes)
        return b.layers
    }

    /// The Caffe-style AlexNet with LRN, in two widths: the original two-GPU net
    /// (bvlc_alexnet: conv2, conv4 and conv5 grouped in two) and the single-GPU table the
    /// course notes print (no groups). Caffe applies LRN before pooling.
    /// `widthDivisor` and `hidden` (1 and 4096 in the published nets) let tests build
    /// narrow nets small enough to commit.
    static func alexnetCaffe(grouped: Bool, widthDivisor d: Int = 1, hidden: Int = 4096, id: String? = nil) -> Architecture {
        Architecture(
            id: id ?? (grouped ? "alexnet-caffe" : "alexnet-single"),
            title: "AlexNet",
            family: .alexnet,
            variant: grouped
                ? "original two-GPU (Caffe bvlc_alexnet): grouped conv2/4/5, LRN"
                : "single-GPU, as course tables print it: 96/256/384/384/256, no groups, LRN",
            namingSource: "Caffe bvlc_alexnet layer names",
            defaultInputSize: Size2(227), acceptsOtherInputSizes: false,
            headLayer: "fc8", publishedParameters: grouped ? 60_965_224 : 62_378_344,
            preprocessing: .caffe, dataset: .imagenet1k,
            aliases: grouped ? ["bvlc_alexnet", "alexnet-bvlc"] : ["alexnet-seed"]
        ) { classes in
            let g = grouped ? 2 : 1
            let b = NetworkBuilder()
            b.conv("conv1", 96 / d, kernel: 11, stride: 4, act: .relu)
            if grouped {
                b.lrn("norm1", size: 5, alpha: 1e-4, beta: 0.75, k: 1)
                b.maxPool("pool1", kernel: 3, stride: 2)
            } else {
                b.maxPool("pool1", kernel: 3, stride: 2)
                b.lrn("norm1", size: 5, alpha: 1e-4, beta: 0.75, k: 1)
            }
            b.conv("conv2", 256 / d, kernel: 5, pad: 2, groups: g, act: .relu)
            if grouped {
                b.lrn("norm2", size: 5, alpha: 1e-4, beta: 0.75, k: 1)
                b.maxPool("pool2", kernel: 3, stride: 2)
            } else {
                b.maxPool("pool2", kernel: 3, stride: 2)
                b.lrn("norm2", size: 5, alpha: 1e-4, beta: 0.75, k: 1)
            }
            b.conv("conv3", 384 / d, kernel: 3, pad: 1, act: .relu)
            b.conv("conv4", 384 / d, kernel: 3, pad: 1, groups: g, act: .relu)
            b.conv("conv5", 256 / d, kernel: 3, pad: 1, groups: g, act: .relu)
            b.maxPool("pool5", kernel: 3, stride: 2)
            b.flatten()
            b.linear("fc6", hidden, act: .relu)
            b.dropout("drop6", 0.5)
            b.linear("fc7", hidden, act: .relu)
            b.dropout("drop7", 0.5)
            b.linear("fc8", classes)
            return b.layers
        }
    }

    /// ZFNet as the ONNX model zoo's zfnet512 (a Caffe2 export) has it: 7x7 stride-2 first
    /// conv without padding, stride-2 5x5 conv2, LRN with alpha 5e-4 and k 2, 512-wide
    /// conv3-5 and a 1024-wide fc7.
    static let zfnet = Architecture(
        id: "zfnet512", title: "ZFNet", family: .zfnet,
        variant: "ONNX model zoo zfnet512 (Caffe2 export)",
        namingSource: "ONNX zoo zfnet512 blob names without gpu_0/ and _w_0",
        defaultInputSize: Size2(224), acceptsOtherInputSizes: false,
        headLayer: "fc8", publishedParameters: nil,
        preprocessing: .caffe, dataset: .imagenet1k, aliases: ["zfnet"]
    ) { classes in
        let b = NetworkBuilder()
        b.conv("conv1", 96, kernel: 7, stride: 2, act: .relu)
        b.lrn("norm1", size: 5, alpha: 5e-4, beta: 0.75, k: 2)
        b.maxPool("pool1", kernel: 3, stride: 2)
        b.conv("conv2", 256, kernel: 5, stride: 2, act: .relu)
        b.lrn("norm2", size: 5, alpha: 5e-4, beta: 0.75, k: 2)
        b.maxPool("pool2", kernel: 3, stride: 2)
        b.conv("conv3", 512, kernel: 3, pad: 1, act: .relu)
        b.conv("conv4", 512, kernel: 3, pad: 1, act: .relu)
        b.conv("conv5", 512, kernel: 3, pad: 1, act: .relu)
        b.maxPool("pool5", kernel: 2, stride: 2)
        b.flatten()
        b.linear("fc6", 4096, act: .relu)
        b.linear("fc7", 1024, act: .relu)
        b.linear("fc8", classes)
        return b.layers
    }
}
