/// Turns an opened file into a `SourceModel` by the conventions of whoever wrote it.
public enum SourceModelBuilder {
    public static func build(_ file: WeightFile) throws -> SourceModel {
        // For ONNX the graph, not the names, says which tensors form a layer.
        if let graph = file.graph?.onnx { return ONNXGrouping.group(file.tensors, graph: graph) }
        // Caffe files carry their net: layer types and names say which blobs form a layer.
        if let net = file.graph?.caffe { return CaffeGrouping.group(net) }
        switch file.format {
        case .kerasH5, .kerasWeightsH5, .keras:
            let keras = file.graph?.keras
            let (layers, loose) = KerasGrouping.group(file.tensors, declaredNames: keras?.declaredLayerNames ?? [:])
            let config = keras?.modelConfigJSON
            // keras.applications files name every layer: paired by those names through the
            // spec's Keras naming. Auto-named layers have only their creation order.
            let named = KerasGrouping.hasApplicationsNames(layers)
            var model = SourceModel(layers: layers, looseTensors: loose, evidence: config.map(KerasGrouping.evidence(fromModelConfig:)) ?? GraphEvidence(),
                                    convention: file.format == .kerasH5 ? "Keras HDF5 (channels-last)"
                                        : file.format == .keras ? "Keras 3 .keras archive (channels-last)" : "Keras 3 .weights.h5 (channels-last)",
                                    pairing: named ? .byName : .byCreationOrder)
            if named { model.naming = .kerasApplications }
            return model
        case .onnx, .hdf5, .safetensors, .npy, .pth, .caffemodel:
            let (layers, loose, prefix) = CanonicalNameGrouping.group(file.tensors)
            return SourceModel(layers: layers, looseTensors: loose, evidence: GraphEvidence(),
                               convention: "torchvision state_dict names", pairing: .byName, strippedPrefix: prefix)
        }
    }
}
