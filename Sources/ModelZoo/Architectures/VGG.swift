extension Architecture {
    /// VGG configurations as in the paper's table 1 (A, B, D, E); `0` is a max pool.
    static let vggConfigs: [Int: [Int]] = [
        11: [64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0],
        13: [64, 64, 0, 128, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0],
        16: [64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0],
        19: [64, 64, 0, 128, 128, 0, 256, 256, 256, 256, 0, 512, 512, 512, 512, 0,
             512, 512, 512, 512, 0],
    ]

    static let vggPublished: [String: Int] = [
        "vgg11": 132_863_336, "vgg13": 133_047_848, "vgg16": 138_357_544, "vgg19": 143_667_240,
        "vgg11_bn": 132_868_840, "vgg13_bn": 133_053_736, "vgg16_bn": 138_365_992, "vgg19_bn": 143_678_248,
    ]

    /// torchvision's VGG: `features.N` indices count every module (conv, BN, ReLU, pool),
    /// which is why the BN variants' indices differ. `widthDivisor` and `hidden` (1 and 4096
    /// in every published net) let tests build narrow nets real exporters can write small.
    static func vgg(depth: Int, batchNorm: Bool, widthDivisor: Int = 1, hidden: Int = 4096, id: String? = nil) -> Architecture {
        let id = id ?? "vgg\(depth)" + (batchNorm ? "_bn" : "")
        return Architecture(
            id: id, title: "VGG\(depth)" + (batchNorm ? "-BN" : ""), family: .vgg,
            variant: batchNorm ? "torchvision, with BatchNorm" : "torchvision (Keras and Caffe weights map onto it)",
            namingSource: "torchvision state_dict",
            defaultInputSize: Size2(224), acceptsOtherInputSizes: true,
            headLayer: "classifier.6", publishedParameters: vggPublished[id],
            preprocessing: .torchvision, dataset: .imagenet1k,
            aliases: batchNorm ? ["vgg\(depth)-bn"] : ["vgg-\(depth)"]
        ) { classes in
            let b = NetworkBuilder()
            var index = 0
            for width in vggConfigs[depth]!.map({ $0 / widthDivisor }) {
                if width == 0 {
                    b.maxPool("features.\(index)", kernel: 2, stride: 2)
                    index += 1
                } else if batchNorm {
                    b.conv("features.\(index)", width, kernel: 3, pad: 1)
                    b.batchNorm("features.\(index + 1)", epsilon: 1e-5, act: .relu)
                    index += 3
                } else {
                    b.conv("features.\(index)", width, kernel: 3, pad: 1, act: .relu)
                    index += 2
                }
            }
            b.adaptiveAvgPool("avgpool", 7)
            b.flatten()
            b.linear("classifier.0", hidden, act: .relu)
            b.dropout("classifier.2", 0.5)
            b.linear("classifier.3", hidden, act: .relu)
            b.dropout("classifier.5", 0.5)
            b.linear("classifier.6", classes)
            return b.layers
        }
    }
}
