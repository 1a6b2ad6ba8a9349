import CHDF5
import Foundation
import HDF5Scan
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes canonical weights as Keras HDF5 weights, in either layout:
///
/// - legacy `.h5` (`KerasWriter.Layout.legacy`): root attributes `layer_names`, `backend`,
///   `keras_version`; a group per weighted layer with a `weight_names` attribute
///   (`block1_conv1/kernel:0`, ...) and its datasets at `<layer>/<layer>/kernel:0`. This is
///   what `model.load_weights("x.h5")` reads, by position, in Keras 2 and 3.
/// - Keras 3 `.weights.h5` (`.keras3`): `layers/<class>_<n>/vars/<i>`, with the layer's own
///   name as the `vars` group's `name` attribute, and the model's (empty) root `vars`.
///
/// Layouts: conv kernels HWIO, dense kernels [in, out], and the first dense after the
/// convolutions takes its rows in H,W,C order. Each tensor is relaid out just before it is
/// written, so peak memory is the weights plus the largest tensor.
public enum KerasWriter {
    public enum Layout: Sendable { case legacy, keras3 }

    /// The Keras version the files claim to come from: Keras 2's legacy format is read the
    /// same way by Keras 3.
    static let kerasVersion = "2.15.0"

    public static func write(_ net: ResolvedNetwork, weights: [String: Tensor], plan: KerasLayout, layout: Layout,
                             attributes: [String: String], to path: String) throws {
        // Every weight is checked before anything is created.
        for layer in plan.layers {
            for w in layer.weights {
                guard let t = weights[w.canonical.name] else {
                    throw ZooError.badTensor(path: path, tensor: w.canonical.name, reason: "no value to write")
                }
                guard t.shape == w.canonical.shape else {
                    throw ZooError.badTensor(path: path, tensor: w.canonical.name,
                                             reason: "has shape \(t.shape), the network needs \(w.canonical.shape)")
                }
            }
        }
        try AtomicPath.write(to: path) { temporary in
            let file = try HDF5Output(creating: temporary, reportedAs: path)
            do {
                switch layout {
                case .legacy: try writeLegacy(plan, weights: weights, into: file)
                case .keras3: try writeKeras3(plan, weights: weights, into: file)
                }
                for (key, value) in attributes.sorted(by: { $0.key < $1.key }) {
                    try file.setStringAttribute(on: "/", key, [value])
                }
                try file.close()
            } catch {
                file.abandon()
                throw error
            }
        }
    }

    private static func writeLegacy(_ plan: KerasLayout, weights: [String: Tensor], into file: HDF5Output) throws {
        try file.setStringAttribute(on: "/", "layer_names", plan.layers.map(\.name), list: true)
        try file.setStringAttribute(on: "/", "backend", ["tensorflow"])
        try file.setStringAttribute(on: "/", "keras_version", [kerasVersion])
        for layer in plan.layers {
            try file.createGroup(layer.name)
            try file.createGroup(layer.name + "/" + layer.name)
            let weightNames = layer.weights.map { layer.name + "/" + $0.kerasName + ":0" }
            try file.setStringAttribute(on: layer.name, "weight_names", weightNames, list: true)
            for (w, weightName) in zip(layer.weights, weightNames) {
                try file.writeDataset(layer.name + "/" + weightName, shape: w.kerasShape,
                                      data: relaid(w, weights), tensor: w.canonical.name)
            }
        }
    }

    private static func writeKeras3(_ plan: KerasLayout, weights: [String: Tensor], into file: HDF5Output) throws {
        try file.createGroup("layers")
        for (layer, groupPath) in zip(plan.layers, plan.weightsFilePaths) {
            try file.createGroup(groupPath)
            try file.createGroup(groupPath + "/vars")
            try file.setStringAttribute(on: groupPath + "/vars", "name", [layer.name])
            for (index, w) in layer.weights.enumerated() {
                try file.writeDataset(groupPath + "/vars/\(index)", shape: w.kerasShape,
                                      data: relaid(w, weights), tensor: w.canonical.name)
            }
        }
        try file.createGroup("vars")
    }

    /// The tensor in Keras's layout. Shapes were checked in `write`.
    private static func relaid(_ w: KerasLayout.Weight, _ weights: [String: Tensor]) -> [Float] {
        guard let t = weights[w.canonical.name] else { return [] }
        switch w.transform {
        case .none: return t.data
        case .convToHWIO: return LayoutKernels.convToKeras(t)
        case .transpose: return LayoutKernels.denseToKeras(t, flatten: nil)
        case .transposeToHWCFlatten(let v): return LayoutKernels.denseToKeras(t, flatten: v)
        }
    }
}

/// `AtomicRename` for writers that must hand a path, not a descriptor, to a library (as
/// libhdf5 needs): `body` fills the temporary path, which then replaces the target.
enum AtomicPath {
    static func write(to path: String, _ body: (String) throws -> Void) throws {
        let temporary = AtomicRename.temporaryPath(beside: path)
        do {
            try body(temporary)
            try AtomicRename.replace(path, with: temporary)
        } catch {
            unlink(temporary)
            throw error
        }
    }
}

/// A new HDF5 file being written through libhdf5, every call under the library's lock.
final class HDF5Output {
    private var fileID: hid_t
    /// The path errors name (the target, not the temporary file).
    private let reportedPath: String

    init(creating path: String, reportedAs reportedPath: String) throws {
        self.reportedPath = reportedPath
        fileID = try HDF5Library.serialized {
            let id = H5Fcreate(path, zoo_h5_acc_excl(), hid_t(H5P_DEFAULT), hid_t(H5P_DEFAULT))
            if id < 0 {
                throw ZooError.writeFailed(path: reportedPath, reason: "cannot create the file: \(HDF5Library.takeErrorMessage())")
            }
            return id
        }
    }

    private func failure(_ what: String) -> ZooError {
        .writeFailed(path: reportedPath, reason: "\(what): \(HDF5Library.takeErrorMessage())")
    }

    func createGroup(_ groupPath: String) throws {
        try HDF5Library.serialized {
            let group = H5Gcreate2(fileID, groupPath, hid_t(H5P_DEFAULT), hid_t(H5P_DEFAULT), hid_t(H5P_DEFAULT))
            guard group >= 0 else { throw failure("cannot create group '\(groupPath)'") }
            H5Gclose(group)
        }
    }

    /// A fixed-length string attribute: a scalar for one value, a 1-D array otherwise (how
    /// h5py stores numpy byte strings, which Keras decodes).
    /// A fixed-length string attribute: a scalar for one value (`backend`, `keras_version`),
    /// a 1-D array when `list` (`layer_names`, `weight_names`: Keras iterates over them, and
    /// a one-weight layer's scalar would be read as its bytes).
    func setStringAttribute(on objectPath: String, _ name: String, _ values: [String], list: Bool = false) throws {
        try HDF5Library.serialized {
            let width = max(1, values.map(\.utf8.count).max() ?? 1)
            let type = H5Tcopy(zoo_h5_c_s1())
            guard type >= 0 else { throw failure("cannot make a string type") }
            defer { H5Tclose(type) }
            H5Tset_size(type, width)
            H5Tset_strpad(type, H5T_STR_NULLPAD)
            var dims = [hsize_t(values.count)]
            let space = values.count == 1 && !list ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &dims, nil)
            guard space >= 0 else { throw failure("cannot make a dataspace for attribute '\(name)'") }
            defer { H5Sclose(space) }
            let object = H5Oopen(fileID, objectPath, hid_t(H5P_DEFAULT))
            guard object >= 0 else { throw failure("cannot open '\(objectPath)'") }
            defer { H5Oclose(object) }
            let attribute = H5Acreate2(object, name, type, space, hid_t(H5P_DEFAULT), hid_t(H5P_DEFAULT))
            guard attribute >= 0 else { throw failure("cannot create attribute '\(name)' on '\(objectPath)'") }
            defer { H5Aclose(attribute) }
            var bytes = [UInt8](repeating: 0, count: width * values.count)
            for (i, value) in values.enumerated() {
                for (j, byte) in value.utf8.enumerated() { bytes[i * width + j] = byte }
            }
            guard H5Awrite(attribute, type, bytes) >= 0 else { throw failure("cannot write attribute '\(name)'") }
        }
    }

    /// A contiguous little-endian float32 dataset.
    func writeDataset(_ datasetPath: String, shape: [Int], data: [Float], tensor: String) throws {
        try HDF5Library.serialized {
            var dims = shape.map { hsize_t($0) }
            let space = shape.isEmpty ? H5Screate(H5S_SCALAR) : H5Screate_simple(Int32(shape.count), &dims, nil)
            guard space >= 0 else { throw failure("cannot make a dataspace for '\(tensor)'") }
            defer { H5Sclose(space) }
            let dataset = H5Dcreate2(fileID, datasetPath, zoo_h5_ieee_f32le(), space,
                                     hid_t(H5P_DEFAULT), hid_t(H5P_DEFAULT), hid_t(H5P_DEFAULT))
            guard dataset >= 0 else { throw failure("cannot create dataset '\(datasetPath)' for '\(tensor)'") }
            defer { H5Dclose(dataset) }
            let status = data.withUnsafeBytes { raw in
                H5Dwrite(dataset, zoo_h5_native_float(), hid_t(H5S_ALL), hid_t(H5S_ALL), hid_t(H5P_DEFAULT), raw.baseAddress)
            }
            guard status >= 0 else { throw failure("writing '\(tensor)' to '\(datasetPath)' failed") }
        }
    }

    /// Flushes and closes; errors here (a full disk) fail the write.
    func close() throws {
        let id = fileID
        fileID = -1
        try HDF5Library.serialized {
            guard H5Fclose(id) >= 0 else { throw failure("closing the file failed") }
        }
    }

    /// Closes after a failure, ignoring further errors; the caller removes the file.
    func abandon() {
        guard fileID >= 0 else { return }
        let id = fileID
        fileID = -1
        HDF5Library.serialized { _ = H5Fclose(id) }
    }

    deinit { abandon() }
}
