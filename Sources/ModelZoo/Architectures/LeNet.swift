extension Architecture {
    /// LeNet-5 on 32x32 grey images, as frameworks build it today (ReLU, max pooling),
    /// and the 1998 form with tanh and average pooling. Names follow the usual PyTorch
    /// tutorial module (conv1, conv2, fc1..fc3). The 1998 paper's partial C3 connection
    /// table and trainable subsampling are not modelled: no framework ships them.
    static func lenet5(classic: Bool) -> Architecture {
        let act: Activation = classic ? .tanh : .relu
        return Architecture(
            id: classic ? "lenet5-classic" : "lenet5",
            title: "LeNet-5",
            family: .lenet,
            variant: classic ? "1998 form: tanh, average pooling" : "modern form: ReLU, max pooling",
            namingSource: "PyTorch tutorial module (conv1, conv2, fc1, fc2, fc3)",
            inputChannels: 1, defaultInputSize: Size2(32), acceptsOtherInputSizes: false,
            defaultClasses: 10, headLayer: "fc3", publishedParameters: 61_706,
            preprocessing: .grayscaleUnit, dataset: .digits, aliases: classic ? ["lenet-classic"] : ["lenet", "lenet-5"]
        ) { classes in
            let b = NetworkBuilder()
            b.conv("conv1", 6, kernel: 5, act: act)
            if classic { b.avgPool("pool1", kernel: 2, stride: 2) } else { b.maxPool("pool1", kernel: 2, stride: 2) }
            b.conv("conv2", 16, kernel: 5, act: act)
            if classic { b.avgPool("pool2", kernel: 2, stride: 2) } else { b.maxPool("pool2", kernel: 2, stride: 2) }
            b.flatten()
            b.linear("fc1", 120, act: act)
            b.linear("fc2", 84, act: act)
            b.linear("fc3", classes)
            return b.layers
        }
    }
}
