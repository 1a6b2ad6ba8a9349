/// Builds protobuf wire-format bytes for small messages (nodes, value infos, tensor headers).
///
/// The ONNX writer cannot hand a whole ModelProto to protobuf-c: that would copy every
/// weight into one giant message before writing it. Instead the small messages are encoded
/// here, their lengths are added up, and the weights are streamed from the Float arrays
/// straight to the file behind the length prefixes (see `ONNXWriter`).
struct ProtoEncoder {
    private(set) var bytes: [UInt8] = []

    static func varintSize(_ value: UInt64) -> Int {
        var size = 1
        var rest = value >> 7
        while rest != 0 { size += 1; rest >>= 7 }
        return size
    }

    mutating func varint(_ value: UInt64) {
        var rest = value
        while rest >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: rest) | 0x80)
            rest >>= 7
        }
        bytes.append(UInt8(rest))
    }

    mutating func tag(_ field: Int, _ wireType: WireType) {
        varint(UInt64(field) << 3 | UInt64(wireType.rawValue))
    }

    /// An int64/int32/enum field. Negative values take ten bytes, as protobuf requires.
    mutating func int(_ field: Int, _ value: Int) {
        tag(field, .varint)
        varint(UInt64(bitPattern: Int64(value)))
    }

    mutating func float(_ field: Int, _ value: Float) {
        tag(field, .fixed32)
        let bits = value.bitPattern
        for shift in stride(from: 0, to: 32, by: 8) { bytes.append(UInt8(truncatingIfNeeded: bits >> UInt32(shift))) }
    }

    mutating func string(_ field: Int, _ value: String) {
        lengthDelimited(field, Array(value.utf8))
    }

    mutating func lengthDelimited(_ field: Int, _ payload: [UInt8]) {
        tag(field, .lengthDelimited)
        varint(UInt64(payload.count))
        bytes += payload
    }

    mutating func message(_ field: Int, _ build: (inout ProtoEncoder) -> Void) {
        var inner = ProtoEncoder()
        build(&inner)
        lengthDelimited(field, inner.bytes)
    }

    /// Repeated int64 written packed (one length-delimited run), as proto3 does by default.
    mutating func packedInts(_ field: Int, _ values: [Int]) {
        var inner = ProtoEncoder()
        for value in values { inner.varint(UInt64(bitPattern: Int64(value))) }
        lengthDelimited(field, inner.bytes)
    }

    /// Just the tag and length of a length-delimited field whose payload the caller writes.
    mutating func lengthPrefix(_ field: Int, length: Int) {
        tag(field, .lengthDelimited)
        varint(UInt64(length))
    }
}
