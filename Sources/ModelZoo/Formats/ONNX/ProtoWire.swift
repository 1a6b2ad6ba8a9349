/// A bounds-checked reader of the protobuf wire format over bytes that came from a file.
///
/// protobuf-c's unpacker copies every `bytes` field, so handing it a whole ONNX model would
/// copy every weight at open. This scanner walks just the messages that hold weights and
/// records where their payloads lie, so the payloads are read only when asked for. It trusts
/// nothing: every varint is at most ten bytes, every length is checked against the bytes
/// that remain in the enclosing message before anything is done with it.

/// Why the bytes are not valid protobuf, and where (an offset from the start of the file).
struct WireFormatError: Error {
    let offset: Int
    let reason: String
}

enum WireType: UInt8 {
    case varint = 0
    case fixed64 = 1
    case lengthDelimited = 2
    case startGroup = 3
    case endGroup = 4
    case fixed32 = 5
}

/// One field as it appears on the wire. `payload` is the byte range of a length-delimited
/// field's contents; for the other wire types it covers the encoded value.
struct WireField {
    let number: Int
    let wireType: WireType
    /// The value of a varint field, or the raw bits of a fixed32/fixed64 field.
    let scalar: UInt64
    let payload: Range<Int>
}

/// Walks the fields of one message in `bytes[range]`. Offsets are absolute (into `bytes`),
/// so ranges found here can be handed straight to a later read of the file.
struct WireScanner {
    let bytes: UnsafeRawBufferPointer
    private(set) var position: Int
    let end: Int

    init(_ bytes: UnsafeRawBufferPointer, range: Range<Int>) {
        self.bytes = bytes
        // Ranges come from this scanner or from the file size; clamp anyway so a logic slip
        // can never read outside the mapping.
        self.position = max(0, min(range.lowerBound, bytes.count))
        self.end = max(self.position, min(range.upperBound, bytes.count))
    }

    var isAtEnd: Bool { position >= end }

    mutating func readVarint() throws -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        let start = position
        while true {
            guard position < end else {
                throw WireFormatError(offset: start, reason: "varint runs past the end of its message")
            }
            let byte = bytes[position]
            position += 1
            if shift == 63 && byte > 1 {
                throw WireFormatError(offset: start, reason: "varint longer than 64 bits")
            }
            result |= UInt64(byte & 0x7f) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
            if shift > 63 {
                throw WireFormatError(offset: start, reason: "varint longer than ten bytes")
            }
        }
    }

    private mutating func readFixed(_ width: Int) throws -> UInt64 {
        guard end - position >= width else {
            throw WireFormatError(offset: position, reason: "\(width)-byte value runs past the end of its message")
        }
        var value: UInt64 = 0
        for index in 0..<width {
            value |= UInt64(bytes[position + index]) << UInt64(8 * index)
        }
        position += width
        return value
    }

    /// The next field, or nil at the end of the message.
    mutating func next() throws -> WireField? {
        guard position < end else { return nil }
        let keyOffset = position
        let key = try readVarint()
        let fieldNumber = key >> 3
        guard fieldNumber > 0, fieldNumber <= 0x1fff_ffff else {
            throw WireFormatError(offset: keyOffset, reason: "invalid field number \(fieldNumber)")
        }
        guard let wireType = WireType(rawValue: UInt8(key & 7)) else {
            throw WireFormatError(offset: keyOffset, reason: "invalid wire type \(key & 7)")
        }
        let number = Int(fieldNumber)
        let valueStart = position
        switch wireType {
        case .varint:
            let value = try readVarint()
            return WireField(number: number, wireType: wireType, scalar: value, payload: valueStart..<position)
        case .fixed64:
            let value = try readFixed(8)
            return WireField(number: number, wireType: wireType, scalar: value, payload: valueStart..<position)
        case .fixed32:
            let value = try readFixed(4)
            return WireField(number: number, wireType: wireType, scalar: value, payload: valueStart..<position)
        case .lengthDelimited:
            let length = try readVarint()
            let remaining = end - position
            guard length <= UInt64(remaining) else {
                throw WireFormatError(offset: keyOffset,
                                      reason: "field \(number) claims \(length) bytes but only \(remaining) remain (truncated file?)")
            }
            let start = position
            position += Int(length)
            return WireField(number: number, wireType: wireType, scalar: length, payload: start..<position)
        case .startGroup, .endGroup:
            // Groups were retired before ONNX existed; no ONNX writer produces them.
            throw WireFormatError(offset: keyOffset, reason: "field \(number) uses the obsolete group encoding")
        }
    }

    /// The UTF-8 text of a length-delimited field (invalid sequences are replaced, not fatal).
    func string(_ field: WireField) -> String {
        String(decoding: UnsafeRawBufferPointer(rebasing: bytes[field.payload]), as: UTF8.self)
    }
}

extension WireField {
    /// A varint field read as a signed 64-bit value (protobuf's int64/int32 encoding).
    var signedValue: Int64 { Int64(bitPattern: scalar) }
}

/// Reads `count` varints (a packed repeated field's payload) into signed values, checking
/// that the payload holds whole varints only.
func decodePackedVarints(_ bytes: UnsafeRawBufferPointer, _ payload: Range<Int>) throws -> [Int64] {
    var scanner = WireScanner(bytes, range: payload)
    var values: [Int64] = []
    while !scanner.isAtEnd {
        values.append(Int64(bitPattern: try scanner.readVarint()))
    }
    return values
}
