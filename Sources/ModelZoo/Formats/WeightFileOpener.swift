import Foundation

/// Opens a weight file with the reader its content calls for, by magic bytes rather than
/// by extension (downloads are often misnamed): HDF5's signature at offset 0 or at a user
/// block boundary (512, 1024, 2048, ...), `\x93NUMPY`, or safetensors' 8-byte header
/// length followed by `{`, a zip holding `<name>/data.pkl` or torch's legacy magic number
/// (PyTorch `.pth`), a zip holding `model.weights.h5` and `config.json` (Keras 3 `.keras`). ONNX has no magic: a `.onnx`/`.pb` name, or a protobuf whose
/// first field is ModelProto's `ir_version` (tag 0x08), goes to `ONNXFile`.
public enum WeightFileOpener {
    static let hdf5Signature: [UInt8] = [0x89, 0x48, 0x44, 0x46, 0x0D, 0x0A, 0x1A, 0x0A]

    public static func open(path: String) throws -> WeightFile {
        let file = try ReadOnlyFile(path: path)
        let head = try file.bytes(at: 0, count: 16)
        if head.isEmpty {
            throw ZooError.unreadableFile(path: path, reason: "empty file (0 bytes), not a weight file")
        }
        let hdf5 = try hasHDF5Signature(file)
        if ReaderIsolation.everyReaderInChildProcess && !ReaderIsolation.insideWorker && !hdf5 {
            try SandboxedWorker.preflight(path: path, fileSize: file.size)
        }
        if hdf5 {
            return try HDF5File(path: path)
        }
        if head.starts(with: [0x93] + Array("NUMPY".utf8)) {
            return try NPYFile(path: path)
        }
        // torch.save since 1.6: a zip whose entries include <name>/data.pkl. Other zips
        // (.keras, .npz) are named as what they are not, rather than "unknown format".
        if head.starts(with: [0x50, 0x4B, 0x03, 0x04]) {
            let zip = try ZipDirectory(file: file)
            if KerasArchive.isKerasArchive(zip) { return try HDF5File(kerasArchive: file, zip: zip) }
            if zip.entries.contains(where: { $0.name == KerasArchive.configEntryName })
                && zip.entries.contains(where: { $0.name == KerasArchive.metadataEntryName }) {
                throw ZooError.unreadableFile(path: path, reason: "a .keras archive without '\(KerasArchive.weightsEntryName)': "
                    + "it holds the model's config but no weights")
            }
            guard PthFile.isTorchArchive(zip) else {
                let names = zip.entries.prefix(5).map(\.name).joined(separator: ", ")
                throw ZooError.unreadableFile(path: path, reason: "a zip archive without '<name>/data.pkl' or "
                    + "'\(KerasArchive.weightsEntryName)' (entries: \(names)): not a PyTorch or Keras file")
            }
            return try PthFile(zip: zip, file: file)
        }
        // torch.save before 1.6: pickle protocol 2 whose first value is torch's magic number.
        if head.starts(with: PthFile.legacyPrefix) {
            return try PthFile(legacy: file)
        }
        if head.count >= 9, head[8] == UInt8(ascii: "{") {
            let length = head[0..<8].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            // A JSON header after a little-endian length: safetensors, even when the length
            // is wrong (the reader then says so, which beats "unknown format").
            if length >= 2 {
                return try SafetensorsFile(path: path)
            }
        }
        let lowercased = path.lowercased()
        let namedONNX = lowercased.hasSuffix(".onnx") || lowercased.hasSuffix(".pb")
        // ModelProto field 1 is ir_version, a small varint: tag byte 0x08, then a value < 128.
        let looksLikeModelProto = head.count >= 2 && head[0] == 0x08 && head[1] < 0x80
        if namedONNX || looksLikeModelProto {
            return try ONNXFile(path: path)
        }
        if lowercased.hasSuffix(".caffemodel") || looksLikeNetParameter(head, fileSize: file.size) {
            return try CaffeModelFile(path: path)
        }
        let shown = head.prefix(16).map { String(format: "%02x", $0) }.joined(separator: " ")
        throw ZooError.unreadableFile(path: path,
                                      reason: "not an HDF5, ONNX, safetensors, npy, PyTorch .pth or Caffe file (first bytes: \(shown))")
    }

    /// Caffe's NetParameter has no magic either: its first field is the net's name (field 1),
    /// its inputs (3, 4, 8) or a layer (V1 field 2, V2 field 100), with a length that fits
    /// the file.
    static func looksLikeNetParameter(_ head: [UInt8], fileSize: Int) -> Bool {
        let tagLength: Int
        if [0x0a, 0x12, 0x1a, 0x42].contains(head.first ?? 0) {
            tagLength = 1
        } else if head.count >= 2, head[0] == 0xa2, head[1] == 0x06 {
            tagLength = 2
        } else {
            return false
        }
        var length = 0, shift = 0, index = tagLength
        while index < head.count, shift < 35 {
            length |= Int(head[index] & 0x7f) << shift
            if head[index] & 0x80 == 0 { return index + 1 + length <= fileSize }
            shift += 7
            index += 1
        }
        return false
    }

    /// HDF5 looks for its superblock at 0 and then at every power of two from 512 on
    /// (files with a user block).
    static func hasHDF5Signature(_ file: ReadOnlyFile) throws -> Bool {
        var offset = 0
        while offset + 8 <= file.size {
            if try file.bytes(at: offset, count: 8) == hdf5Signature { return true }
            offset = offset == 0 ? 512 : offset * 2
        }
        return false
    }
}
