/// Groups an ONNX graph's weights into layers by walking its nodes in order: a Conv's
/// kernel and bias, a Gemm's or MatMul+Add's weight and bias, a BatchNormalization's four
/// tensors. The graph, not the names, says which tensors form a layer (torch's eval-mode
/// exports call them `onnx::Conv_NNN`, the Caffe2 zoo `conv1_w_0`). When every layer's
/// weight carries a torchvision module name (`layer3.10.conv1.weight`: torch's exporter
/// since 2.9, training-mode exports, zoo's own writer), the layers are paired by that name;
/// otherwise by the order the graph computes in.
public enum ONNXGrouping {
    public static func group(_ tensors: [TensorRecord], graph: ONNXGraph) -> SourceModel {
        var records: [String: TensorRecord] = [:]
        for r in tensors { records[r.name] = r }
        // Identity and Reshape of a stored tensor stand for that tensor (torch's shared
        // weights; the Caffe2 zoo reshapes its FC weight before the Gemm).
        // Cast of a stored tensor is that tensor too: float16 conversions keep initializers in
        // float16 and cast them to float before the Conv or Gemm.
        var alias: [String: String] = [:]
        for node in graph.nodes where node.isDefaultDomain {
            if ["Identity", "Reshape", "Cast"].contains(node.opType), let input = node.inputs.first,
               let output = node.outputs.first, records[input] != nil || alias[input] != nil {
                alias[output] = alias[input] ?? input
            }
        }
        func tensor(_ name: String?) -> TensorRecord? {
            guard let name = name, !name.isEmpty else { return nil }
            return records[alias[name] ?? name]
        }

        var layers: [SourceLayer] = []
        var used = Set<String>()
        var evidence = GraphEvidence()
        evidence.hasGraph = true
        let nodes = graph.nodes
        for (index, node) in nodes.enumerated() where node.isDefaultDomain {
            func input(_ i: Int) -> TensorRecord? { i < node.inputs.count ? tensor(node.inputs[i]) : nil }
            switch node.opType {
            case "Conv":
                guard let w = input(1), w.shape.count == 4 else { continue }
                var tensors: [ParameterRole: TensorRecord] = [.weight: w]
                if let b = input(2) { tensors[.bias] = b }
                layers.append(SourceLayer(name: node.name.isEmpty ? w.name : node.name, kind: .conv,
                                          layout: .canonical, tensors: tensors, graphConv: convSpec(node, w),
                                          canonicalName: moduleName(w.name, role: .weight),
                                          biasAbsentInGraph: node.inputs.count < 3 || node.inputs[2].isEmpty))
            case "Gemm", "MatMul":
                guard let w = input(1), w.shape.filter({ $0 != 1 }).count == 2 || w.shape.count == 2 else { continue }
                var tensors: [ParameterRole: TensorRecord] = [.weight: w]
                let transposed = node.opType == "Gemm" && node.attributes["transB"]?.intValue == 1
                var biasAbsent = node.opType == "MatMul" || node.inputs.count < 3 || node.inputs[2].isEmpty
                if node.opType == "Gemm", let b = input(2) { tensors[.bias] = b }
                if node.opType == "MatMul", let out = node.outputs.first,
                   let add = nodes[(index + 1)...].first(where: { $0.opType == "Add" && $0.inputs.contains(out) }),
                   let b = add.inputs.compactMap({ tensor($0) }).first {
                    tensors[.bias] = b
                    biasAbsent = false
                }
                layers.append(SourceLayer(name: node.name.isEmpty ? w.name : node.name, kind: .dense,
                                          layout: transposed ? .canonical : .inOut, tensors: tensors,
                                          canonicalName: moduleName(w.name, role: .weight), biasAbsentInGraph: biasAbsent))
            case "BatchNormalization":
                guard let scale = input(1), let shift = input(2), let mean = input(3), let variance = input(4) else { continue }
                evidence.batchNorm = true
                layers.append(SourceLayer(name: node.name.isEmpty ? scale.name : node.name, kind: .batchNorm,
                                          layout: .canonical,
                                          tensors: [.weight: scale, .bias: shift, .runningMean: mean, .runningVar: variance],
                                          graphEpsilon: Double(node.attributes["epsilon"]?.floatValue ?? 1e-5),
                                          canonicalName: moduleName(scale.name, role: .weight)))
            case "Relu": evidence.relu = true
            case "Tanh": evidence.tanh = true
            case "MaxPool": evidence.maxPool = true
            // torch's exporter since 2.9 writes adaptive average pools as ReduceMean over H, W.
            case "AveragePool", "GlobalAveragePool", "ReduceMean": evidence.avgPool = true
            case "LRN": evidence.lrn = true
            default: break
            }
        }
        for layer in layers { for r in layer.tensors.values { used.insert(r.name) } }
        let loose = tensors.filter { !used.contains($0.name) }
        let producer = graph.producerName.lowercased()
        let convention: String
        if producer.contains("pytorch") {
            convention = "torch.onnx.export"
        } else if producer.contains("caffe2") {
            convention = "ONNX model zoo (Caffe2 export)"
        } else {
            convention = graph.producerName.isEmpty ? "ONNX" : "ONNX from \(graph.producerName)"
        }
        var prefix: String?
        var pairing = SourceModel.Pairing.byGraph
        if !layers.isEmpty, layers.allSatisfy({ $0.canonicalName != nil }) {
            prefix = CanonicalNameGrouping.commonWrapperPrefix(layers.compactMap(\.canonicalName))
            for i in layers.indices { layers[i].canonicalName = layers[i].canonicalName.map { String($0.dropFirst(prefix?.count ?? 0)) } }
            pairing = .byName
        } else {
            for i in layers.indices { layers[i].canonicalName = nil }
        }
        return SourceModel(layers: layers, looseTensors: loose, evidence: evidence, convention: convention,
                           pairing: pairing, strippedPrefix: prefix)
    }

    /// `layer1.0.conv1.weight` -> `layer1.0.conv1`; nil for anonymous names.
    static func moduleName(_ tensorName: String, role: ParameterRole) -> String? {
        let suffix = "." + role.rawValue
        guard tensorName.hasSuffix(suffix), tensorName.count > suffix.count,
              !tensorName.hasPrefix("onnx::") else { return nil }
        return String(tensorName.dropLast(suffix.count))
    }

    /// The conv geometry the graph declares, in the spec's terms.
    static func convSpec(_ node: ONNXNode, _ weight: TensorRecord) -> ConvSpec {
        let kernel = node.attributes["kernel_shape"]?.intsValue ?? Array(weight.shape.suffix(2))
        let strides = node.attributes["strides"]?.intsValue ?? [1, 1]
        let pads = node.attributes["pads"]?.intsValue ?? [0, 0, 0, 0]
        let group = node.attributes["group"]?.intValue ?? 1
        func at(_ a: [Int], _ i: Int, _ d: Int) -> Int { i < a.count ? a[i] : d }
        return ConvSpec(outChannels: weight.shape[0],
                        kernel: Size2(at(kernel, 0, 1), at(kernel, 1, 1)),
                        stride: Size2(at(strides, 0, 1), at(strides, 1, 1)),
                        padding: Padding(top: at(pads, 0, 0), left: at(pads, 1, 0), bottom: at(pads, 2, 0), right: at(pads, 3, 0)),
                        groups: group, bias: node.inputs.count > 2 && !node.inputs[2].isEmpty)
    }
}

extension ONNXGrouping {
    /// Pooling layers and the input size exactly as the graph declares them.
    public struct GraphGeometry {
        public var pools: [LayerOp]?
        public var inputSize: Size2?
    }

    public static func graphGeometry(_ graph: ONNXGraph) -> GraphGeometry {
        var pools: [LayerOp] = []
        for node in graph.nodes where node.isDefaultDomain {
            guard node.opType == "MaxPool" || node.opType == "AveragePool" else { continue }
            let k = node.attributes["kernel_shape"]?.intsValue ?? []
            guard k.count == 2 else { return GraphGeometry(pools: nil, inputSize: nil) }
            let s = node.attributes["strides"]?.intsValue ?? [1, 1]
            let p = node.attributes["pads"]?.intsValue ?? [0, 0, 0, 0]
            guard s.count == 2, p.count == 4 else { return GraphGeometry(pools: nil, inputSize: nil) }
            // A 1x1 average pool of stride 1 is an adaptive pool that was the identity at the
            // export size (torch's exporter since 2.9): not one of the spec's fixed pools.
            if node.opType == "AveragePool", k == [1, 1], s == [1, 1], p.allSatisfy({ $0 == 0 }) { continue }
            let spec = PoolSpec(kernel: Size2(k[0], k[1]), stride: Size2(s[0], s[1]),
                                padding: Padding(top: p[0], left: p[1], bottom: p[2], right: p[3]),
                                ceilMode: node.attributes["ceil_mode"]?.intValue == 1,
                                countIncludePad: node.attributes["count_include_pad"]?.intValue == 1)
            pools.append(node.opType == "MaxPool" ? .maxPool(spec) : .avgPool(spec))
        }
        var size: Size2?
        if let input = graph.dataInputs.first, let dims = input.shape, dims.count == 4,
           case .fixed(let h) = dims[2], case .fixed(let w) = dims[3], h > 0, w > 0 {
            size = Size2(h, w)
        }
        return GraphGeometry(pools: pools, inputSize: size)
    }
}
