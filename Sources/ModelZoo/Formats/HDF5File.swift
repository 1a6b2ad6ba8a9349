import CHDF5
import Foundation
import HDF5Scan

/// An HDF5 weight file, read through libhdf5. Three layouts are told apart when opening:
///
/// - Keras 2 legacy `.h5` (`format == .kerasH5`): either a full `model.save` file (root
///   group `model_weights`, root attribute `model_config`) or a `save_weights` file (root
///   attribute `layer_names`). Tensors are named `<layer>/<weight name>` exactly as the
///   layer's `weight_names` attribute spells them, which is also the dataset's path inside
///   the weights group (`block1_conv1/block1_conv1/kernel:0`, or in Keras 3's legacy
///   writer `conv2d/sequential/conv2d/kernel`). They come in `layer_names` order.
/// - Keras 3 `.weights.h5` (`format == .kerasWeightsH5`): `layers/<name>/vars/<i>`, named by
///   their full path (`layers/conv2d/vars/0`). Nested layers keep their whole path between
///   `layers/` and `/vars` as the layer name (`sequential/layers/dense`).
/// - Anything else (`format == .hdf5`): every dataset in the file, named by its path without
///   the leading `/`, the way h5py users write `f["conv1.weight"] = array`.
///
/// Optimizer state (`optimizer/...` in Keras 3, `optimizer_weights/...` in Keras 2) is not
/// part of the model: it is listed in `optimizerTensors`, not in `tensors`, and `load`
/// accepts those names too.
///
/// Opening reads only metadata. `load` converts float16, bfloat16 and float64 datasets to
/// float32 (float64 is common from h5py; the narrowing is reported by `dtype`). Other types
/// are listed with their dtype and refused by `load`. Before allocating, `load` refuses a
/// contiguous uncompressed dataset that claims more bytes than the file holds, and any
/// dataset whose float32 form would exceed `maximumLoadBytes` (8 GiB): compressed chunked
/// datasets may legally declare far more than the file size, so the cap is their only bound.
/// Datasets stored in external files or virtual datasets are refused: they would read
/// files other than the one the user named.
public final class HDF5File: WeightFile, DescribesContents, ProvidesStoredSpans {
    /// The largest tensor `load` will materialize, in float32 bytes.
    public static let maximumLoadBytes = 8 << 30

    public let path: String
    public let format: WeightFormat
    public let producer: String?
    public let tensors: [TensorRecord]
    /// Optimizer state stored beside the weights, which `tensors` leaves out.
    public let optimizerTensors: [TensorRecord]

    /// Keras layer names: `layer_names` order for legacy files, file order (HDF5 sorts
    /// names, so `conv2d_10` precedes `conv2d_2`) for Keras 3 files. Empty for plain HDF5.
    public let kerasLayerNames: [String]
    /// The `model_config` JSON of a full legacy `model.save` file.
    public let modelConfigJSON: String?
    public let kerasVersion: String?
    public let backend: String?
    /// String attributes of the root group whose names start with `zoo.` (what `zoo
    /// convert` and `zoo finetune` write: class names, architecture id, source file).
    public let rootStringAttributes: [String: String]
    /// Keras 3 files: the `name` attribute of each layer's `vars` group, by the layer's path
    /// name. The path says `conv2d_3` (a counter per layer class, in the model's layer
    /// order), the attribute says what the layer is really called (`conv2_block1_0_conv`).
    public let kerasDeclaredLayerNames: [String: String]
    /// Weights a layer's `weight_names` lists whose datasets are not in the file.
    public let absentTensors: [String]

    public var metadata: [String: String] { rootStringAttributes }
    public var graph: FileGraph? {
        switch format {
        case .kerasH5, .kerasWeightsH5, .keras:
            return .keras(KerasGraph(modelConfigJSON: modelConfigJSON, declaredLayerNames: kerasDeclaredLayerNames))
        default: return nil
        }
    }

    /// The layer's weight names as the file lists them: the `weight_names` attribute of a
    /// legacy file (`conv2d/kernel:0`), or the variable indexes of a Keras 3 file (`0`, `1`).
    public func kerasWeightNames(layer: String) -> [String] {
        weightNamesByLayer[layer] ?? []
    }

    /// The names under which `load` finds the layer's weights, in the file's weight order.
    public func kerasTensorNames(layer: String) -> [String] {
        tensorNamesByLayer[layer] ?? []
    }

    private let weightNamesByLayer: [String: [String]]
    private let tensorNamesByLayer: [String: [String]]
    /// Tensor name to the dataset's absolute path in the file.
    private let datasetPaths: [String: String]
    private let recordsByName: [String: TensorRecord]
    /// libhdf5's handle when the file is read in this process; nil when a sandboxed child
    /// reads it (`ReaderIsolation`).
    private let fileID: hid_t?
    /// Where each dataset's data is: read directly, through libhdf5, or refused.
    private let storage: [String: HDF5Storage]
    private let fileSize: Int
    /// The same file opened for plain positioned reads. Contiguous little-endian float32
    /// datasets (nearly every Keras weight) are read straight from it, outside the global
    /// libhdf5 lock, so one big tensor does not hold up other threads' HDF5 calls. Speed is
    /// about the same as H5Dread (both ~120-190 ms for all of VGG16 here).
    private let rawFile: ReadOnlyFile
    /// A `.keras` archive read in this process: the weights entry as libhdf5 holds it.
    private let image: KerasArchive.Image?
    /// A `.keras` archive: the extra address space its worker needs (nil for HDF5 files).
    private let archiveSpace: UInt64?
    /// A deflated archive's tensors, read by one worker at the first `load` (one inflation
    /// instead of one per tensor) and handed out once each: a second `load` of the same
    /// tensor asks a worker again.
    private var prefetched: [String: [Float]]?
    private let prefetchLock = NSLock()

    public convenience init(path: String) throws {
        let file = try ReadOnlyFile(path: path)
        if file.size == 0 {
            throw ZooError.unreadableFile(path: path, reason: "empty file (0 bytes), not an HDF5 file")
        }
        if ReaderIsolation.hdf5InChildProcess {
            // libhdf5 crashes on crafted files (segfaults, invalid frees, endless loops in
            // 1.10.8): only a sandboxed child process ever hands it the user's file.
            self.init(path: path, file: file, contents: try SandboxedWorker.scan(path: path), fileID: nil)
        } else {
            let id = try HDF5File.openInProcess(path)
            let contents: HDF5Contents
            do {
                contents = try HDF5File.scanInProcess(id, path: path, fileSize: file.size)
            } catch {
                HDF5Library.close(Int64(id))
                throw error
            }
            self.init(path: path, file: file, contents: contents, fileID: id)
        }
    }

    /// The scan in this process (the boundary turned off, or inside `zoo`'s own worker),
    /// its errors given the file's path.
    static func scanInProcess(_ fileID: hid_t, path: String, fileSize: Int) throws -> HDF5Contents {
        try withPath(path) { try HDF5Library.serialized { try Scanner(fileID: Int64(fileID)).scan(fileSize: fileSize) } }
    }

    /// Runs `body`, naming `path` in the errors the scanner throws without it.
    static func withPath<T>(_ path: String, _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let HDF5ScanError.unreadable(reason) {
            throw ZooError.unreadableFile(path: path, reason: reason)
        } catch let HDF5ScanError.badTensor(tensor, reason) {
            throw ZooError.badTensor(path: path, tensor: tensor, reason: reason)
        }
    }

    /// A Keras 3 `.keras` archive (see `KerasArchive`): the tensors of its
    /// `model.weights.h5`, its `config.json` as the model config, and the Keras version
    /// from `metadata.json`. The zip's directory and JSON entries are read here; the HDF5
    /// entry only by libhdf5 in the worker.
    convenience init(kerasArchive file: ReadOnlyFile, zip: ZipDirectory) throws {
        let path = file.path
        let weights = try KerasArchive.weightsEntry(zip)
        let config = try KerasArchive.text(zip, KerasArchive.configEntryName)
        let metadata = try KerasArchive.text(zip, KerasArchive.metadataEntryName)
        let extraSpace = KerasArchive.workerExtraSpace(fileSize: file.size, weights: weights)
        var contents: HDF5Contents
        var image: KerasArchive.Image?
        if ReaderIsolation.hdf5InChildProcess {
            contents = try SandboxedWorker.scan(path: path, archiveSpace: extraSpace)
        } else {
            let opened = try KerasArchive.Image(archive: file)
            contents = try HDF5File.scanInProcess(opened.fileID, path: path, fileSize: opened.size)
            contents.place(inArchiveAt: opened.offsetInArchive)
            image = opened
        }
        guard contents.layout == .kerasWeightsH5 || (contents.layout == .hdf5 && contents.tensors.isEmpty) else {
            throw ZooError.unreadableFile(path: path, reason: "'\(KerasArchive.weightsEntryName)' in the archive is not in "
                + "Keras 3's layout (layers/<name>/vars) but \(HDF5File.format(of: contents.layout).rawValue)")
        }
        contents.modelConfigJSON = config
        if let data = metadata?.data(using: .utf8),
           let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] {
            contents.kerasVersion = object["keras_version"] as? String
        }
        self.init(path: path, file: file, contents: contents, fileID: image?.fileID, image: image,
                  archiveSpace: extraSpace, format: .keras)
        let entry = weights.entry
        archiveDetails.append(("weights", weights.stored
            ? "\(KerasArchive.weightsEntryName), stored (\(grouped(entry.uncompressedSize)) bytes at offset \(grouped(weights.dataOffset))): read in place"
            : "\(KerasArchive.weightsEntryName), deflated (\(grouped(entry.compressedSize)) -> \(grouped(entry.uncompressedSize)) bytes): "
                + "inflated by the sandboxed worker"))
        if let data = config?.data(using: .utf8), let root = try? JSONSerialization.jsonObject(with: data) as? [String: Any] {
            let body = root["config"] as? [String: Any]
            let layers = (body?["layers"] as? [Any])?.count
            archiveDetails.append(("config", "\(root["class_name"] as? String ?? "?") '\(body?["name"] as? String ?? "?")'"
                + (layers.map { ", \($0) layers" } ?? "")))
        }
    }

    /// What `zoo inspect` adds for a `.keras` archive: how the weights entry is stored, and
    /// the model its config describes.
    public var contentDetails: [(String, String)] { archiveDetails }
    private var archiveDetails: [(String, String)] = []

    static func format(of layout: HDF5Layout) -> WeightFormat {
        switch layout {
        case .hdf5: return .hdf5
        case .kerasH5: return .kerasH5
        case .kerasWeightsH5: return .kerasWeightsH5
        }
    }

    private static func record(_ scanned: ScannedTensor) -> TensorRecord {
        TensorRecord(name: scanned.name, shape: scanned.shape, dtype: DType(rawValue: scanned.dtype) ?? .unknown,
                     byteCount: scanned.byteCount)
    }

    private init(path: String, file: ReadOnlyFile, contents: HDF5Contents, fileID: hid_t?,
                 image: KerasArchive.Image? = nil, archiveSpace: UInt64? = nil, format: WeightFormat? = nil) {
        self.path = path
        rawFile = file
        fileSize = file.size
        self.fileID = fileID
        self.image = image
        self.archiveSpace = archiveSpace
        self.format = format ?? HDF5File.format(of: contents.layout)
        tensors = contents.tensors.map(HDF5File.record)
        optimizerTensors = contents.optimizerTensors.map(HDF5File.record)
        kerasLayerNames = contents.layerNames
        weightNamesByLayer = contents.weightNamesByLayer
        tensorNamesByLayer = contents.tensorNamesByLayer
        datasetPaths = contents.datasetPaths
        storage = contents.storage
        modelConfigJSON = contents.modelConfigJSON
        kerasVersion = contents.kerasVersion
        backend = contents.backend
        rootStringAttributes = contents.rootStringAttributes
        kerasDeclaredLayerNames = contents.declaredLayerNames
        absentTensors = contents.absentTensors
        var byName: [String: TensorRecord] = [:]
        for record in tensors + optimizerTensors { byName[record.name] = record }
        recordsByName = byName
        if let version = kerasVersion {
            producer = "keras \(version)" + (backend.map { " (\($0) backend)" } ?? "")
        } else {
            producer = nil
        }
    }

    static func openInProcess(_ path: String) throws -> hid_t {
        hid_t(try withPath(path) { try HDF5Library.open(path) })
    }

    deinit {
        // An archive's image closes its own file.
        if image == nil, let id = fileID { HDF5Library.close(Int64(id)) }
    }

    public func load(_ name: String) throws -> Tensor {
        guard let record = recordsByName[name], let datasetPath = datasetPaths[name] else {
            throw ZooError.badTensor(path: path, tensor: name, reason: "no such tensor in this file")
        }
        switch record.dtype {
        case .float32, .float16, .bfloat16, .float64: break
        default:
            throw ZooError.badTensor(
                path: path, tensor: name,
                reason: "stored as \(record.dtype.rawValue); only floating-point datasets load as float32")
        }
        // Shapes were overflow-checked when the file was opened.
        let count = record.elementCount
        guard let floatBytes = checkedByteCount(record.shape, .float32), floatBytes <= HDF5File.maximumLoadBytes else {
            throw ZooError.badTensor(
                path: path, tensor: name,
                reason: "declares shape \(record.shape), \(describeBytes(record.byteCount)) as float32 is over the "
                    + "\(describeBytes(HDF5File.maximumLoadBytes)) limit for one tensor")
        }
        switch storage[name] ?? .library {
        case .refused(let reason):
            throw ZooError.badTensor(path: path, tensor: name, reason: reason)
        case .direct(let offset):
            // Contiguous little-endian float32: plain positioned reads, no libhdf5 at all.
            let (end, overflow) = offset.addingReportingOverflow(record.byteCount)
            guard offset >= 0, !overflow, end <= fileSize, record.byteCount == count * 4 else {
                throw ZooError.badTensor(path: path, tensor: name, reason: "data lies outside the file: truncated or corrupt")
            }
            if count == 0 { return Tensor(shape: record.shape, data: []) }
            let data = try [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
                if let base = buffer.baseAddress { try rawFile.read(into: base, count: record.byteCount, at: offset) }
                initialized = count
            }
            return Tensor(shape: record.shape, data: data)
        case .library:
            if count == 0 { return Tensor(shape: record.shape, data: []) }
            if fileID == nil, let archiveSpace, let values = try takePrefetched(name, archiveSpace: archiveSpace) {
                return Tensor(shape: record.shape, data: values)
            }
            guard let fileID else {
                return Tensor(shape: record.shape,
                              data: try SandboxedWorker.read(path: path, tensor: name, dataset: datasetPath, count: count,
                                                           archiveSpace: archiveSpace))
            }
            return Tensor(shape: record.shape, data: try HDF5File.withPath(path) {
                try HDF5Library.readFloats(Int64(fileID), tensor: name, dataset: datasetPath, count: count)
            })
        }
    }

    /// Where a contiguous little-endian float32 dataset's bytes lie in this file (the
    /// offset the worker's scan reported, `H5Dget_offset`), for `zoo convert` to copy or
    /// transpose them without libhdf5 and without loading them whole. nil for any other
    /// storage, and for a span that is not exactly the tensor's float32 bytes inside the
    /// file as it was opened: the worker's report is checked, not trusted.
    func storedSpan(of name: String) -> StoredSpan? {
        #if _endian(little)
        guard let record = recordsByName[name], record.dtype == .float32, case .direct(let offset)? = storage[name],
              let count = checkedElementCount(record.shape), count <= Int.max / 4, count * 4 == record.byteCount,
              offset >= 0, record.byteCount > 0 else { return nil }
        let (end, overflow) = offset.addingReportingOverflow(record.byteCount)
        guard !overflow, end <= fileSize else { return nil }
        return StoredSpan(path: path, offset: offset, byteCount: record.byteCount)
        #else
        return nil
        #endif
    }

    private func takePrefetched(_ name: String, archiveSpace: UInt64) throws -> [Float]? {
        prefetchLock.lock()
        defer { prefetchLock.unlock() }
        if prefetched == nil {
            let wanted = tensors.compactMap { record -> (tensor: String, dataset: String, count: Int)? in
                guard storage[record.name] == .library, record.dtype.convertsToFloat32, record.elementCount > 0,
                      let dataset = datasetPaths[record.name] else { return nil }
                return (record.name, dataset, record.elementCount)
            }
            prefetched = try SandboxedWorker.readArchive(path: path, datasets: wanted, archiveSpace: archiveSpace)
        }
        return prefetched?.removeValue(forKey: name)
    }
}

