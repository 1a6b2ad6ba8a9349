extension Architecture {
    enum ResNetBlock { case basic, bottleneck }

    /// Where a downsampling bottleneck puts its stride: on the first 1x1 (v1: the paper,
    /// Caffe, Keras) or on the 3x3 (v1.5: torchvision).
    enum ResNetStride { case onFirst1x1, on3x3 }

    static let resnetDepths: [Int: (ResNetBlock, [Int])] = [
        18: (.basic, [2, 2, 2, 2]), 34: (.basic, [3, 4, 6, 3]),
        50: (.bottleneck, [3, 4, 6, 3]), 101: (.bottleneck, [3, 4, 23, 3]),
        152: (.bottleneck, [3, 8, 36, 3]),
    ]

    static let resnetPublished: [Int: Int] = [
        18: 11_689_512, 34: 21_797_672, 50: 25_557_032, 101: 44_549_160, 152: 60_192_808,
    ]

    /// ResNet with torchvision's module names for every variant, so one mapping per source
    /// covers them all. `convBias` and `epsilon` carry the Keras differences; `width` (64 in
    /// every published net) and `blocks` (blocks per stage) let tests build reduced nets real
    /// exporters can write small.
    static func resnet(depth: Int, id: String, variant: String, stride: ResNetStride,
                       convBias: Bool, epsilon: Double, published: Int?, aliases: [String],
                       preprocessing: Preprocessing, dataset: Dataset = .imagenet1k, producers: [String] = [], width: Int = 64,
                       blocks: [Int]? = nil, caffeStem: Bool = false) -> Architecture {
        Architecture(
            id: id, title: "ResNet\(depth)", family: .resnet, variant: variant,
            namingSource: "torchvision state_dict",
            defaultInputSize: Size2(224), acceptsOtherInputSizes: !caffeStem,
            headLayer: "fc", publishedParameters: published,
            preprocessing: preprocessing, dataset: dataset, aliases: aliases, producers: producers
        ) { classes in
            let (kind, standardCounts) = resnetDepths[depth]!
            let counts = blocks ?? standardCounts
            let b = NetworkBuilder()
            b.conv("conv1", width, kernel: 7, stride: 2, pad: 3, bias: convBias || caffeStem)
            b.batchNorm("bn1", epsilon: epsilon, act: .relu)
            if caffeStem {
                b.maxPool("maxpool", kernel: 3, stride: 2, ceil: true)
            } else {
                b.maxPool("maxpool", kernel: 3, stride: 2, pad: 1)
            }
            var inChannels = width
            for (stage, blocks) in counts.enumerated() {
                let width = width << stage
                let outChannels = kind == .basic ? width : width * 4
                for block in 0..<blocks {
                    let name = "layer\(stage + 1).\(block)"
                    let s = (block == 0 && stage > 0) ? 2 : 1
                    let input = b.current
                    switch kind {
                    case .basic:
                        b.conv(name + ".conv1", width, kernel: 3, stride: s, pad: 1, bias: convBias, from: input)
                        b.batchNorm(name + ".bn1", epsilon: epsilon, act: .relu)
                        b.conv(name + ".conv2", width, kernel: 3, pad: 1, bias: convBias)
                        b.batchNorm(name + ".bn2", epsilon: epsilon)
                    case .bottleneck:
                        let s1 = stride == .onFirst1x1 ? s : 1
                        let s3 = stride == .on3x3 ? s : 1
                        b.conv(name + ".conv1", width, kernel: 1, stride: s1, bias: convBias, from: input)
                        b.batchNorm(name + ".bn1", epsilon: epsilon, act: .relu)
                        b.conv(name + ".conv2", width, kernel: 3, stride: s3, pad: 1, bias: convBias)
                        b.batchNorm(name + ".bn2", epsilon: epsilon, act: .relu)
                        b.conv(name + ".conv3", outChannels, kernel: 1, bias: convBias)
                        b.batchNorm(name + ".bn3", epsilon: epsilon)
                    }
                    let residual = b.current
                    var shortcut = input
                    if s != 1 || inChannels != outChannels {
                        b.conv(name + ".downsample.0", outChannels, kernel: 1, stride: s, bias: convBias, from: input)
                        shortcut = b.batchNorm(name + ".downsample.1", epsilon: epsilon)
                    }
                    b.add(name, [residual, shortcut], act: .relu)
                    inChannels = outChannels
                }
            }
            if caffeStem {
                b.avgPool("avgpool", kernel: 7, stride: 1)
            } else {
                b.adaptiveAvgPool("avgpool", 1)
            }
            b.flatten()
            b.linear("fc", classes)
            return b.layers
        }
    }

    static func resnetTorchvision(_ depth: Int) -> Architecture {
        resnet(depth: depth, id: "resnet\(depth)",
               variant: depth >= 50 ? "torchvision v1.5 (stride on the 3x3)" : "torchvision",
               stride: .on3x3, convBias: false, epsilon: 1e-5,
               published: resnetPublished[depth], aliases: ["resnet-\(depth)"],
               preprocessing: .torchvision)
    }

    /// keras.applications.ResNet50: v1 (stride on the first 1x1), biases on every conv,
    /// BN epsilon 1.001e-5, Caffe-style BGR preprocessing.
    static let resnet50Keras = resnet(
        depth: 50, id: "resnet50-keras", variant: "v1 as Keras builds it (conv biases, stride on the 1x1)",
        stride: .onFirst1x1, convBias: true, epsilon: 1.001e-5, published: 25_583_592,
        aliases: ["resnet50-v1-keras", "resnet50-v1"], preprocessing: .caffe, producers: ["keras"])

    /// The original ResNet of He et al. as released for Caffe (KaimingHe/deep-residual-networks):
    /// v1 (stride on the first 1x1 and on the shortcut), a bias on conv1 only, BatchNorm +
    /// Scale elsewhere, a 3x3/2 max pool without padding that rounds up, a 7x7 average pool
    /// before fc1000. Caffe's layer names (`res4b22_branch2a`) are mapped onto torchvision's.
    /// `width` and `blocks` make narrow test nets.
    static func resnetCaffe(_ depth: Int, width: Int = 64, blocks: [Int]? = nil, id: String? = nil) -> Architecture {
        resnet(depth: depth, id: id ?? "resnet\(depth)-caffe",
               variant: "original Caffe release (v1: stride on the first 1x1, conv1 bias, ceil-mode 3x3 max pool, 7x7 average pool)",
               stride: .onFirst1x1, convBias: false, epsilon: 1e-5, published: nil,
               aliases: ["resnet-\(depth)-caffe", "resnet\(depth)-kaiminghe"], preprocessing: .caffe, producers: ["caffe"],
               width: width, blocks: blocks, caffeStem: true)
    }
}
