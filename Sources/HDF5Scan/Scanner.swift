internal import CHDF5Scan
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How the file's datasets are laid out, as the scan tells them apart (see ModelZoo's
/// `HDF5File`): Keras 2 legacy, Keras 3 `.weights.h5`, or plain HDF5.
package enum HDF5Layout: UInt8, Sendable {
    case hdf5 = 0, kerasH5 = 1, kerasWeightsH5 = 2
}

/// One dataset as the scan found it. `dtype` is the name of ModelZoo's `DType` case.
package struct ScannedTensor: Equatable, Sendable {
    package var name: String
    package var shape: [Int]
    package var dtype: String
    package var byteCount: Int

    package init(name: String, shape: [Int], dtype: String, byteCount: Int) {
        self.name = name; self.shape = shape; self.dtype = dtype; self.byteCount = byteCount
    }

    package var elementCount: Int { shape.reduce(1, *) }
}

// MARK: - Reading the structure

/// Where a dataset's values are, as the scan found them.
package enum HDF5Storage: Equatable, Sendable {
    /// Contiguous, unfiltered, allocated little-endian float32 at this file offset.
    case direct(Int)
    /// Anything libhdf5 must decode: chunked, compressed, other types, fill values.
    case library
    /// Storage the reader will not touch (virtual datasets, external files, data past the
    /// end of the file), with the reason.
    case refused(String)
}

/// What opening a file found, gathered while holding the libhdf5 lock; sent from the
/// sandboxed child to the parent in the worker's wire format (`WorkerWire`).
package struct HDF5Contents: Equatable, Sendable {
    package var layout: HDF5Layout = .hdf5
    package var tensors: [ScannedTensor] = []
    package var optimizerTensors: [ScannedTensor] = []
    package var layerNames: [String] = []
    package var weightNamesByLayer: [String: [String]] = [:]
    package var tensorNamesByLayer: [String: [String]] = [:]
    package var datasetPaths: [String: String] = [:]
    package var modelConfigJSON: String?
    package var kerasVersion: String?
    package var backend: String?
    package var rootStringAttributes: [String: String] = [:]
    package var declaredLayerNames: [String: String] = [:]
    package var absentTensors: [String] = []
    package var storage: [String: HDF5Storage] = [:]

    package init() {}

    /// Offsets found in a `.keras` archive's weights image made offsets in the archive
    /// (`offset` is where the stored entry's bytes start); with nil, the entry was inflated
    /// and no dataset can be read in place.
    package mutating func place(inArchiveAt offset: Int?) {
        for (name, where_) in storage {
            guard case .direct(let inImage) = where_ else { continue }
            if let offset {
                let (moved, overflow) = inImage.addingReportingOverflow(offset)
                storage[name] = overflow ? .refused("offset \(inImage) overflows") : .direct(moved)
            } else {
                storage[name] = .library
            }
        }
    }
}

/// Walks the file's groups and attributes. Every method expects the libhdf5 lock held.
package struct Scanner {
    let fileID: hid_t

    package init(fileID: Int64) {
        self.fileID = hid_t(fileID)
    }

    /// Bounds on untrusted structure: deeper nesting or more links than any weight file has
    /// means a hostile or corrupt file, and stops before it costs much time or memory.
    static let maximumDepth = 64

    /// The root attributes zoo's writers set (HDF5 attributes are asked for by name). The
    /// worker links no ModelZoo, so the list is spelled here; a test holds it equal to
    /// ModelZoo's `ZooMetadata.allKeys`.
    package static let rootMetadataKeys = [
        "zoo.architecture", "zoo.preset", "zoo.source", "zoo.producer", "zoo.preprocessing", "zoo.mean_bgr",
        "zoo.class_names",
    ]
    static let maximumLinks = 1_000_000
    static let maximumAttributeBytes = 64 << 20

    package func scan(fileSize: Int) throws -> HDF5Contents {
        var contents = try scanStructure()
        for record in contents.tensors + contents.optimizerTensors {
            guard let datasetPath = contents.datasetPaths[record.name] else { continue }
            contents.storage[record.name] = storage(of: datasetPath, record: record, fileSize: fileSize)
        }
        return contents
    }

    /// Where the dataset's values are, checked against the file: a layout that cannot be
    /// where it claims, or lies outside this file, is refused with the reason.
    private func storage(of datasetPath: String, record: ScannedTensor, fileSize: Int) -> HDF5Storage {
        let dataset = H5Dopen2(fileID, datasetPath, hid_t(H5P_DEFAULT))
        guard dataset >= 0 else { return .refused("cannot open dataset: \(HDF5Library.takeErrorMessage())") }
        defer { H5Dclose(dataset) }
        let creation = H5Dget_create_plist(dataset)
        guard creation >= 0 else { return .refused("no creation properties: \(HDF5Library.takeErrorMessage())") }
        defer { H5Pclose(creation) }
        let layout = H5Pget_layout(creation)
        if layout == H5D_VIRTUAL { return .refused("is a virtual dataset that reads other files; refused") }
        if H5Pget_external_count(creation) > 0 { return .refused("keeps its data in external files; refused") }
        guard layout == H5D_CONTIGUOUS, H5Pget_nfilters(creation) == 0 else { return .library }
        if record.byteCount > fileSize {
            return .refused("declares shape \(record.shape) (\(describeByteCount(record.byteCount)) stored contiguously) "
                            + "but the file is only \(describeByteCount(fileSize))")
        }
        let offset = H5Dget_offset(dataset)
        // HADDR_UNDEF (all ones) means no storage was allocated: the read yields fill values.
        guard offset != haddr_t.max else { return .library }
        let (end, overflow) = Int(clamping: offset).addingReportingOverflow(record.byteCount)
        if overflow || offset > UInt64(Int.max) || end > fileSize {
            return .refused("data at offset \(offset) + \(record.byteCount) bytes runs past the end of the file "
                            + "(\(fileSize) bytes): truncated")
        }
        let type = H5Dget_type(dataset)
        guard type >= 0 else { _ = HDF5Library.takeErrorMessage(); return .library }
        defer { H5Tclose(type) }
        if 1.littleEndian == 1 && H5Tequal(type, zoo_scan_ieee_f32le()) > 0 { return .direct(Int(offset)) }
        return .library
    }

    private func scanStructure() throws -> HDF5Contents {
        var contents = HDF5Contents()

        let root = try openGroup("/")
        defer { H5Gclose(root) }

        let rootLinks = Set(try linkNames(ofGroup: "/"))
        let modelConfig = try stringAttribute(root, "model_config", owner: "/")
        let rootLayerNames = try stringAttribute(root, "layer_names", owner: "/")
        for key in Scanner.rootMetadataKeys {
            if let value = try stringAttribute(root, key, owner: "/")?.first { contents.rootStringAttributes[key] = value }
        }

        if modelConfig != nil || (rootLinks.contains("model_weights") && isGroup("model_weights")) {
            contents.layout = .kerasH5
            let weights = try openGroup("model_weights")
            defer { H5Gclose(weights) }
            contents.modelConfigJSON = modelConfig?.first
            contents.kerasVersion = try stringAttribute(root, "keras_version", owner: "/")?.first
                ?? stringAttribute(weights, "keras_version", owner: "model_weights")?.first
            contents.backend = try stringAttribute(root, "backend", owner: "/")?.first
                ?? stringAttribute(weights, "backend", owner: "model_weights")?.first
            let layers = try stringAttribute(weights, "layer_names", owner: "model_weights") ?? rootLayerNames
            guard let layers else {
                throw unreadable("has a model_weights group but no layer_names attribute on it")
            }
            try readLegacyWeights(layers: layers, under: "model_weights/", into: &contents)
            try collectOptimizer(group: "optimizer_weights", links: rootLinks, into: &contents)
        } else if let layers = rootLayerNames {
            contents.layout = .kerasH5
            contents.kerasVersion = try stringAttribute(root, "keras_version", owner: "/")?.first
            contents.backend = try stringAttribute(root, "backend", owner: "/")?.first
            try readLegacyWeights(layers: layers, under: "", into: &contents)
            try collectOptimizer(group: "optimizer_weights", links: rootLinks, into: &contents)
        } else if rootLinks.contains("layers"), isGroup("layers"), try looksLikeKeras3(rootLinks: rootLinks) {
            contents.layout = .kerasWeightsH5
            try readKeras3Weights(rootLinks: rootLinks, into: &contents)
        } else {
            contents.layout = .hdf5
            var visited = Set<ObjectKey>()
            for datasetPath in try datasets(under: "", depth: 0, visited: &visited) {
                try addTensor(named: datasetPath, at: datasetPath, optimizer: false, &contents)
            }
        }
        return contents
    }

    // MARK: Keras 2 legacy layout

    private func readLegacyWeights(layers: [String], under prefix: String, into contents: inout HDF5Contents) throws {
        var layerNames = layers
        // Keras 3's legacy writer keeps model-level variables in a group that layer_names omits.
        let topLevel = "top_level_model_weights"
        if !layers.contains(topLevel), linkExists(prefix + topLevel), isGroup(prefix + topLevel) {
            layerNames.append(topLevel)
        }
        for layer in layerNames {
            let groupPath = prefix + layer
            guard linkExists(groupPath), isGroup(groupPath) else {
                if layer == topLevel { continue }
                throw unreadable("layer_names lists '\(layer)' but there is no group '\(groupPath)'")
            }
            let group = try openGroup(groupPath)
            defer { H5Gclose(group) }
            var weightNames: [String]
            if let listed = try stringAttribute(group, "weight_names", owner: groupPath) {
                weightNames = listed
            } else {
                // No weight_names: take whatever datasets the group holds.
                var visited = Set<ObjectKey>()
                weightNames = try datasets(under: groupPath, depth: 0, visited: &visited)
                    .map { String($0.dropFirst(groupPath.count + 1)) }
            }
            if layer == topLevel && weightNames.isEmpty { continue }
            var tensorNames: [String] = []
            for weight in weightNames {
                let datasetPath = groupPath + "/" + weight
                // A listed weight without its dataset is a file with a missing tensor, not an
                // unreadable file: verify names it, inspect shows the rest.
                guard linkExists(datasetPath), isDataset(datasetPath) else {
                    contents.absentTensors.append(layer + "/" + weight)
                    continue
                }
                let tensorName = layer + "/" + weight
                try addTensor(named: tensorName, at: datasetPath, optimizer: false, &contents)
                tensorNames.append(tensorName)
            }
            if layer != topLevel || !layers.contains(topLevel) {
                contents.layerNames.append(layer)
            }
            contents.weightNamesByLayer[layer] = weightNames
            contents.tensorNamesByLayer[layer] = tensorNames
        }
    }

    private func collectOptimizer(group: String, links: Set<String>, into contents: inout HDF5Contents) throws {
        guard links.contains(group), isGroup(group) else { return }
        var visited = Set<ObjectKey>()
        for datasetPath in try datasets(under: group, depth: 0, visited: &visited) {
            try addTensor(named: datasetPath, at: datasetPath, optimizer: true, &contents)
        }
    }

    // MARK: Keras 3 layout

    /// Keras 3 writes `layers/<name>/vars` for every layer and `vars` for the model itself.
    private func looksLikeKeras3(rootLinks: Set<String>) throws -> Bool {
        if rootLinks.contains("vars"), isGroup("vars") { return true }
        for layer in try linkNames(ofGroup: "layers") where linkExists("layers/\(layer)/vars") {
            return true
        }
        return false
    }

    private func readKeras3Weights(rootLinks: Set<String>, into contents: inout HDF5Contents) throws {
        var visited = Set<ObjectKey>()
        let all = try datasets(under: "", depth: 0, visited: &visited)
        // Layers are the groups that own a `vars` group, named by the path between.
        visited.removeAll()
        for groupPath in try groups(under: "layers", depth: 0, visited: &visited)
            where groupPath.hasSuffix("/vars") && groupPath.hasPrefix("layers/") {
            let layer = String(groupPath.dropFirst("layers/".count).dropLast("/vars".count))
            guard !layer.isEmpty else { continue }
            contents.layerNames.append(layer)
            let varsGroup = try openGroup(groupPath)
            let declared = try stringAttribute(varsGroup, "name", owner: groupPath)?.first
            H5Gclose(varsGroup)
            if let declared, !declared.isEmpty { contents.declaredLayerNames[layer] = declared }
            let vars = try linkNames(ofGroup: groupPath).filter { isDataset(groupPath + "/" + $0) }
            contents.weightNamesByLayer[layer] = vars
            contents.tensorNamesByLayer[layer] = vars.map { groupPath + "/" + $0 }
        }
        for datasetPath in all {
            if datasetPath.hasPrefix("optimizer/") {
                try addTensor(named: datasetPath, at: datasetPath, optimizer: true, &contents)
            } else {
                try addTensor(named: datasetPath, at: datasetPath, optimizer: false, &contents)
            }
        }
    }

    // MARK: Datasets

    private func addTensor(named name: String, at datasetPath: String, optimizer: Bool,
                           _ contents: inout HDF5Contents) throws {
        if contents.datasetPaths[name] != nil {
            throw unreadable("two weights are both named '\(name)'")
        }
        let record = try describeDataset(name: name, at: datasetPath)
        if optimizer { contents.optimizerTensors.append(record) } else { contents.tensors.append(record) }
        contents.datasetPaths[name] = datasetPath
    }

    private func describeDataset(name: String, at datasetPath: String) throws -> ScannedTensor {
        let dataset = H5Dopen2(fileID, datasetPath, hid_t(H5P_DEFAULT))
        guard dataset >= 0 else {
            throw HDF5ScanError.badTensor(tensor: name, reason: "cannot open dataset: \(HDF5Library.takeErrorMessage())")
        }
        defer { H5Dclose(dataset) }
        let space = H5Dget_space(dataset)
        guard space >= 0 else {
            throw HDF5ScanError.badTensor(tensor: name, reason: "no dataspace: \(HDF5Library.takeErrorMessage())")
        }
        defer { H5Sclose(space) }
        let shape = try dataspaceShape(space, tensor: name)
        let type = H5Dget_type(dataset)
        guard type >= 0 else {
            throw HDF5ScanError.badTensor(tensor: name, reason: "no datatype: \(HDF5Library.takeErrorMessage())")
        }
        defer { H5Tclose(type) }
        let (dtype, storedWidth, variable) = describeType(type)
        guard let count = checkedElementCount(shape) else {
            throw HDF5ScanError.badTensor(tensor: name, reason: "declared shape \(shape) overflows")
        }
        let byteCount: Int
        if variable {
            byteCount = Int(clamping: H5Dget_storage_size(dataset))
        } else {
            let (bytes, overflow) = count.multipliedReportingOverflow(by: storedWidth)
            guard !overflow else {
                throw HDF5ScanError.badTensor(tensor: name, reason: "declared shape \(shape) overflows")
            }
            byteCount = bytes
        }
        return ScannedTensor(name: name, shape: shape, dtype: dtype, byteCount: byteCount)
    }

    private func dataspaceShape(_ space: hid_t, tensor: String) throws -> [Int] {
        switch H5Sget_simple_extent_type(space) {
        case H5S_SCALAR: return []
        case H5S_NULL: return [0]
        case H5S_SIMPLE: break
        default:
            throw HDF5ScanError.badTensor(tensor: tensor, reason: "unsupported dataspace")
        }
        let rank = Int(H5Sget_simple_extent_ndims(space))
        guard rank >= 0, rank <= 32 else {
            throw HDF5ScanError.badTensor(tensor: tensor, reason: "dataspace rank \(rank) is out of range")
        }
        var dims = [hsize_t](repeating: 0, count: rank)
        if rank > 0, H5Sget_simple_extent_dims(space, &dims, nil) < 0 {
            throw HDF5ScanError.badTensor(tensor: tensor, reason: "cannot read dims: \(HDF5Library.takeErrorMessage())")
        }
        return try dims.map { dim in
            guard dim <= hsize_t(Int.max) else {
                throw HDF5ScanError.badTensor(tensor: tensor, reason: "dimension \(dim) is too large")
            }
            return Int(dim)
        }
    }

    /// The dtype, the stored bytes per element, and whether elements have variable size.
    private func describeType(_ type: hid_t) -> (String, Int, Bool) {
        let size = Int(H5Tget_size(type))
        switch H5Tget_class(type) {
        case H5T_FLOAT:
            switch size {
            case 4: return ("float32", size, false)
            case 8: return ("float64", size, false)
            case 2:
                var signPosition = 0, exponentPosition = 0, exponentSize = 0, mantissaPosition = 0, mantissaSize = 0
                H5Tget_fields(type, &signPosition, &exponentPosition, &exponentSize, &mantissaPosition, &mantissaSize)
                if mantissaSize == 10 && exponentSize == 5 { return ("float16", size, false) }
                if mantissaSize == 7 && exponentSize == 8 { return ("bfloat16", size, false) }
                return ("unknown", size, false)
            default: return ("unknown", size, false)
            }
        case H5T_INTEGER:
            let signed = H5Tget_sign(type) == H5T_SGN_2
            switch size {
            case 1: return (signed ? "int8" : "uint8", size, false)
            case 2: return (signed ? "int16" : "uint16", size, false)
            case 4: return (signed ? "int32" : "uint32", size, false)
            case 8: return (signed ? "int64" : "uint64", size, false)
            default: return ("unknown", size, false)
            }
        case H5T_STRING:
            return ("string", size, H5Tis_variable_str(type) > 0)
        case H5T_ENUM:
            // h5py stores numpy bools as a one-byte enum {FALSE, TRUE}.
            return (size == 1 ? "bool" : "unknown", size, false)
        case H5T_COMPOUND:
            // h5py stores complex numbers as a compound {r, i}.
            if H5Tget_nmembers(type) == 2 {
                if size == 8 { return ("complex64", size, false) }
                if size == 16 { return ("complex128", size, false) }
            }
            return ("unknown", size, false)
        case H5T_VLEN:
            return ("unknown", size, true)
        default:
            return ("unknown", size, false)
        }
    }

    // MARK: Groups and links

    private struct ObjectKey: Hashable {
        let high: UInt64, low: UInt64
    }

    private func openGroup(_ groupPath: String) throws -> hid_t {
        let group = H5Gopen2(fileID, groupPath.isEmpty ? "/" : groupPath, hid_t(H5P_DEFAULT))
        guard group >= 0 else { throw unreadable("cannot open group '\(groupPath)': \(HDF5Library.takeErrorMessage())") }
        return group
    }

    private func linkExists(_ linkPath: String) -> Bool {
        // H5Lexists checks one level at a time: each parent must exist first.
        var prefix = ""
        for component in linkPath.split(separator: "/") {
            prefix += prefix.isEmpty ? String(component) : "/" + component
            let result = H5Lexists(fileID, prefix, hid_t(H5P_DEFAULT))
            if result < 0 { _ = HDF5Library.takeErrorMessage(); return false }
            if result == 0 { return false }
        }
        return true
    }

    private func objectType(_ objectPath: String) -> (type: Int32, key: ObjectKey)? {
        var type: Int32 = -1
        var key = [UInt8](repeating: 0, count: 16)
        let status = key.withUnsafeMutableBufferPointer { buffer -> Int32 in
            guard let base = buffer.baseAddress else { return -1 }
            return zoo_scan_object_identity(fileID, objectPath, &type, base)
        }
        if status < 0 { _ = HDF5Library.takeErrorMessage(); return nil }
        let high = key[0..<8].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        let low = key[8..<16].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        return (type, ObjectKey(high: high, low: low))
    }

    private func isGroup(_ objectPath: String) -> Bool {
        objectType(objectPath)?.type == Int32(H5O_TYPE_GROUP.rawValue)
    }

    private func isDataset(_ objectPath: String) -> Bool {
        objectType(objectPath)?.type == Int32(H5O_TYPE_DATASET.rawValue)
    }

    /// The group's link names: creation order when the file tracks it, otherwise HDF5's
    /// name order. Names that are all decimal digits (Keras 3's `vars/0`, `vars/1`, ...
    /// `vars/10`) are sorted numerically, as they were created.
    private func linkNames(ofGroup groupPath: String) throws -> [String] {
        let group = try openGroup(groupPath)
        defer { H5Gclose(group) }
        var joined: UnsafeMutablePointer<CChar>?
        var length = 0
        let count = zoo_scan_link_names(group, Scanner.maximumLinks, &joined, &length)
        defer { free(joined) }
        if count == -2 { throw unreadable("group '\(groupPath)' has more than \(Scanner.maximumLinks) members") }
        guard count >= 0 else {
            throw unreadable("cannot list group '\(groupPath)': \(HDF5Library.takeErrorMessage())")
        }
        var names: [String] = []
        names.reserveCapacity(count)
        if let joined, length > 0 {
            let bytes = UnsafeRawBufferPointer(start: joined, count: length)
            for name in bytes.split(separator: 0, omittingEmptySubsequences: false).dropLast() {
                names.append(String(decoding: name, as: UTF8.self))
            }
        }
        if !names.isEmpty, names.allSatisfy({ !$0.isEmpty && $0.count <= 18 && $0.allSatisfy { $0.isASCII && $0.isNumber } }) {
            names.sort { (Int($0) ?? 0) < (Int($1) ?? 0) }
        }
        return names
    }

    /// Paths (without leading `/`) of every dataset below `groupPath`, depth first, following
    /// hard links only and each group once.
    private func datasets(under groupPath: String, depth: Int, visited: inout Set<ObjectKey>) throws -> [String] {
        var found: [String] = []
        try walk(groupPath, depth: depth, visited: &visited) { objectPath, type in
            if type == Int32(H5O_TYPE_DATASET.rawValue) { found.append(objectPath) }
        }
        return found
    }

    /// Paths of every group below `groupPath` (not including it), depth first.
    private func groups(under groupPath: String, depth: Int, visited: inout Set<ObjectKey>) throws -> [String] {
        var found: [String] = []
        try walk(groupPath, depth: depth, visited: &visited) { objectPath, type in
            if type == Int32(H5O_TYPE_GROUP.rawValue) { found.append(objectPath) }
        }
        return found
    }

    private func walk(_ groupPath: String, depth: Int, visited: inout Set<ObjectKey>,
                      _ visit: (String, Int32) throws -> Void) throws {
        guard depth < Scanner.maximumDepth else {
            throw unreadable("groups nest deeper than \(Scanner.maximumDepth) levels at '\(groupPath)'")
        }
        if let (_, key) = objectType(groupPath.isEmpty ? "/" : groupPath) {
            guard visited.insert(key).inserted else { return }
            guard visited.count <= Scanner.maximumLinks else { throw unreadable("too many groups") }
        }
        for name in try linkNames(ofGroup: groupPath.isEmpty ? "/" : groupPath) {
            let child = groupPath.isEmpty ? name : groupPath + "/" + name
            let hard = zoo_scan_link_is_hard(fileID, child)
            if hard < 0 { _ = HDF5Library.takeErrorMessage() }
            guard hard == 1, let (type, _) = objectType(child) else { continue }
            try visit(child, type)
            if type == Int32(H5O_TYPE_GROUP.rawValue) {
                try walk(child, depth: depth + 1, visited: &visited, visit)
            }
        }
    }

    // MARK: Attributes

    /// A string attribute as a list (a scalar gives one element), whether stored with fixed
    /// or variable length. Keras 2 splits attributes too large for an object header into
    /// `name0`, `name1`, ...; those are joined back. Nil when absent. A non-string attribute
    /// with no elements (Keras writes empty `weight_names` as an empty float64 array) reads
    /// as an empty list.
    func stringAttribute(_ object: hid_t, _ name: String, owner: String) throws -> [String]? {
        let exists = H5Aexists(object, name)
        if exists < 0 { throw unreadable("cannot check attribute '\(name)' of '\(owner)': \(HDF5Library.takeErrorMessage())") }
        if exists > 0 { return try readStringAttribute(object, name, owner: owner) }
        var chunks: [String] = []
        var chunk = 0
        while H5Aexists(object, "\(name)\(chunk)") > 0 {
            chunks += try readStringAttribute(object, "\(name)\(chunk)", owner: owner)
            chunk += 1
            guard chunk < 100_000 else { break }
        }
        return chunk > 0 ? chunks : nil
    }

    private func readStringAttribute(_ object: hid_t, _ name: String, owner: String) throws -> [String] {
        let attribute = H5Aopen(object, name, hid_t(H5P_DEFAULT))
        guard attribute >= 0 else {
            throw unreadable("cannot open attribute '\(name)' of '\(owner)': \(HDF5Library.takeErrorMessage())")
        }
        defer { H5Aclose(attribute) }
        let type = H5Aget_type(attribute)
        let space = H5Aget_space(attribute)
        defer { if type >= 0 { H5Tclose(type) }; if space >= 0 { H5Sclose(space) } }
        guard type >= 0, space >= 0 else {
            throw unreadable("cannot describe attribute '\(name)' of '\(owner)': \(HDF5Library.takeErrorMessage())")
        }
        let points = H5Sget_simple_extent_npoints(space)
        guard points >= 0, points <= 10_000_000 else {
            throw unreadable("attribute '\(name)' of '\(owner)' claims \(points) elements")
        }
        let count = Int(points)
        guard H5Tget_class(type) == H5T_STRING else {
            if count == 0 { return [] }
            throw unreadable("attribute '\(name)' of '\(owner)' is not a string")
        }
        if count == 0 { return [] }
        // Strings have no byte order, so reading with the stored type itself needs no
        // conversion path (libhdf5 1.10 has none between some padding/charset combinations).
        let memoryType = type
        if H5Tis_variable_str(type) > 0 {
            var pointers = [UnsafeMutablePointer<CChar>?](repeating: nil, count: count)
            let status = H5Aread(attribute, memoryType, &pointers)
            defer { for pointer in pointers where pointer != nil { H5free_memory(pointer) } }
            guard status >= 0 else {
                throw unreadable("cannot read attribute '\(name)' of '\(owner)': \(HDF5Library.takeErrorMessage())")
            }
            return pointers.map { $0.map { String(cString: $0) } ?? "" }
        }

        let width = Int(H5Tget_size(type))
        let (total, overflow) = count.multipliedReportingOverflow(by: width)
        guard width > 0, !overflow, total <= Scanner.maximumAttributeBytes else {
            throw unreadable("attribute '\(name)' of '\(owner)' declares \(count) strings of \(width) bytes")
        }
        let padding = H5Tget_strpad(type)
        var bytes = [UInt8](repeating: 0, count: total)
        guard H5Aread(attribute, memoryType, &bytes) >= 0 else {
            throw unreadable("cannot read attribute '\(name)' of '\(owner)': \(HDF5Library.takeErrorMessage())")
        }
        return (0..<count).map { element in
            var field = bytes[(element * width)..<(element * width + width)]
            if let end = field.firstIndex(of: 0) { field = field[..<end] }
            if padding == H5T_STR_SPACEPAD {
                while let last = field.last, last == 0x20 { field = field.dropLast() }
            }
            return String(decoding: field, as: UTF8.self)
        }
    }

    private func unreadable(_ reason: String) -> HDF5ScanError {
        .unreadable(reason)
    }
}

/// Element count of a shape with overflow checks (file headers are untrusted).
package func checkedElementCount(_ shape: [Int]) -> Int? {
    var total = 1
    for dim in shape {
        guard dim >= 0 else { return nil }
        let (product, overflow) = total.multipliedReportingOverflow(by: dim)
        if overflow { return nil }
        total = product
    }
    return total
}
