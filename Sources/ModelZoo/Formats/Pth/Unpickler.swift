/// A value the restricted unpickler builds. Only data: there is no case that could hold a
/// callable object, so nothing a file says can run.
indirect enum PickleValue {
    case none
    case bool(Bool)
    case int(Int)
    /// An integer too wide for Int (two's complement, little-endian bytes), kept as bytes:
    /// the legacy `.pth` magic number is one.
    case bigInt([UInt8])
    case float(Double)
    case string(String)
    case bytes([UInt8])
    case tuple([PickleValue])
    case list(PickleList)
    case dict(PickleDict)
    /// An allowed global, to be called by REDUCE or named in a persistent id.
    case global(PickleGlobal)
    /// A storage from a persistent id: `('storage', torch.FloatStorage, key, location, numel)`.
    case storage(PickleStorage)
    case tensor(PickleTensor)

    var typeName: String {
        switch self {
        case .none: return "None"
        case .bool: return "bool"
        case .int, .bigInt: return "int"
        case .float: return "float"
        case .string: return "str"
        case .bytes: return "bytes"
        case .tuple: return "tuple"
        case .list: return "list"
        case .dict: return "dict"
        case .global(let g): return g.qualifiedName
        case .storage: return "storage"
        case .tensor: return "tensor"
        }
    }
}

/// Lists and dicts are shared through the memo and filled after they are memoized, so
/// they are references, as in Python.
final class PickleList {
    var items: [PickleValue] = []
    /// Nesting depth of what it holds, kept up to date as items arrive.
    var depth = 1
}

final class PickleDict {
    private(set) var keys: [PickleValue] = []
    private(set) var values: [PickleValue] = []
    private var stringIndex: [String: Int] = [:]
    var depth = 1

    func set(_ key: PickleValue, _ value: PickleValue) {
        if case .string(let name) = key {
            if let i = stringIndex[name] { values[i] = value; return }
            stringIndex[name] = keys.count
        }
        keys.append(key)
        values.append(value)
    }

    subscript(name: String) -> PickleValue? { stringIndex[name].map { values[$0] } }

    var count: Int { keys.count }
}

/// The globals a state_dict's pickle may name. Anything else is refused when the GLOBAL
/// opcode is read, before any later opcode could use it.
enum PickleGlobal: Equatable {
    case orderedDict
    case rebuildTensorV2
    case rebuildTensor
    case rebuildParameter
    case rebuildParameterWithState
    /// `torch.FloatStorage` and the other typed storages; `torch.UntypedStorage` is uint8.
    case storageType(DType, name: String)
    /// `torch.float32` and the other dtype objects newer torch may name.
    case dtype(DType, name: String)

    var qualifiedName: String {
        switch self {
        case .orderedDict: return "collections.OrderedDict"
        case .rebuildTensorV2: return "torch._utils._rebuild_tensor_v2"
        case .rebuildTensor: return "torch._utils._rebuild_tensor"
        case .rebuildParameter: return "torch._utils._rebuild_parameter"
        case .rebuildParameterWithState: return "torch._utils._rebuild_parameter_with_state"
        case .storageType(_, let name), .dtype(_, let name): return name
        }
    }

    static let storageTypes: [String: DType] = [
        "FloatStorage": .float32, "HalfStorage": .float16, "BFloat16Storage": .bfloat16, "DoubleStorage": .float64,
        "LongStorage": .int64, "IntStorage": .int32, "ShortStorage": .int16, "CharStorage": .int8,
        "ByteStorage": .uint8, "BoolStorage": .bool, "ComplexFloatStorage": .complex64,
        "ComplexDoubleStorage": .complex128, "UntypedStorage": .uint8,
    ]
    static let dtypes: [String: DType] = [
        "float32": .float32, "float": .float32, "float16": .float16, "half": .float16, "bfloat16": .bfloat16,
        "float64": .float64, "double": .float64, "int64": .int64, "long": .int64, "int32": .int32, "int": .int32,
        "int16": .int16, "int8": .int8, "uint8": .uint8, "bool": .bool,
    ]

    static func lookup(module: String, name: String) -> PickleGlobal? {
        switch (module, name) {
        case ("collections", "OrderedDict"): return .orderedDict
        case ("torch._utils", "_rebuild_tensor_v2"): return .rebuildTensorV2
        case ("torch._utils", "_rebuild_tensor"): return .rebuildTensor
        case ("torch._utils", "_rebuild_parameter"): return .rebuildParameter
        case ("torch._utils", "_rebuild_parameter_with_state"): return .rebuildParameterWithState
        case ("torch", _), ("torch.storage", "UntypedStorage"):
            if let type = storageTypes[name] { return .storageType(type, name: module + "." + name) }
            if module == "torch", let type = dtypes[name] { return .dtype(type, name: module + "." + name) }
            return nil
        default: return nil
        }
    }
}

final class PickleStorage {
    let key: String
    let dtype: DType
    /// Elements for typed storages, bytes for UntypedStorage: as torch declares it.
    let declaredCount: Int
    init(key: String, dtype: DType, declaredCount: Int) {
        self.key = key; self.dtype = dtype; self.declaredCount = declaredCount
    }
}

struct PickleTensor {
    let storage: PickleStorage
    let storageOffset: Int
    let shape: [Int]
    let stride: [Int]
}

/// A pickle interpreter for torch state_dicts. It builds plain data only: the allowed
/// globals are matched to a fixed set of rebuild functions implemented here (tensors become
/// descriptions of where their bytes lie; nothing is read from storages). Every length is
/// checked against the bytes left, nesting is bounded, and an unknown opcode stops it.
struct Unpickler {
    /// Deeper nesting than this is no state_dict, and releasing it could exhaust the stack.
    static let maximumDepth = 200

    let path: String
    private let bytes: [UInt8]
    private var position: Int
    private var stack: [PickleValue] = []
    private var marks: [Int] = []
    private var memo: [Int: PickleValue] = [:]
    /// Storages by key, shared by every tensor that views them.
    private(set) var storages: [String: PickleStorage] = [:]

    init(path: String, bytes: [UInt8], start: Int = 0) {
        self.path = path
        self.bytes = bytes
        self.position = start
    }

    /// Set when a read needed bytes past the end of what was given: with more of the file,
    /// the pickle might be complete.
    private(set) var ranOut = false

    /// Where the next pickle starts once `load` has returned (the legacy layout is several
    /// pickles back to back).
    var end: Int { position }

    private func fail(_ reason: String) -> ZooError {
        .unreadableFile(path: path, reason: "pickle: " + reason)
    }

    private mutating func take(_ count: Int) throws -> ArraySlice<UInt8> {
        guard count >= 0, count <= bytes.count - position else {
            ranOut = true
            throw fail("truncated: \(count) bytes needed at offset \(position), \(bytes.count - position) left")
        }
        defer { position += count }
        return bytes[position..<(position + count)]
    }

    private mutating func byte() throws -> UInt8 { try take(1).first ?? 0 }

    private mutating func unsigned(_ width: Int) throws -> UInt64 {
        try take(width).reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
    }

    private mutating func length(_ width: Int) throws -> Int {
        let value = try unsigned(width)
        // A declared length can never exceed what is left of the pickle.
        guard value <= UInt64(bytes.count - position) else {
            ranOut = true
            throw fail("truncated or corrupt: a length of \(value) bytes at offset \(position - width) runs past the end of the pickle "
                + "(\(bytes.count - position) bytes left)")
        }
        return Int(value)
    }

    private mutating func line() throws -> String {
        guard let newline = bytes[position...].prefix(1024).firstIndex(of: 0x0A) else {
            ranOut = bytes.count - position < 1024
            throw fail("truncated or corrupt: GLOBAL without a newline within 1024 bytes")
        }
        let text = String(decoding: bytes[position..<newline], as: UTF8.self)
        position = newline + 1
        return text
    }

    private mutating func pop() throws -> PickleValue {
        guard let value = stack.popLast(), stack.count >= (marks.last ?? 0) else { throw fail("stack underflow at offset \(position)") }
        return value
    }

    private mutating func popMark() throws -> [PickleValue] {
        guard let mark = marks.popLast(), mark <= stack.count else { throw fail("no MARK before offset \(position)") }
        let items = Array(stack[mark...])
        stack.removeSubrange(mark...)
        return items
    }

    private func depth(_ value: PickleValue) -> Int {
        switch value {
        case .tuple(let items): return 1 + (items.map(depth).max() ?? 0)
        case .list(let list): return list.depth
        case .dict(let dict): return dict.depth
        default: return 0
        }
    }

    private mutating func push(_ value: PickleValue) throws {
        if case .tuple = value, depth(value) > Unpickler.maximumDepth {
            throw fail("values nested more than \(Unpickler.maximumDepth) deep")
        }
        stack.append(value)
    }

    /// The depth a container reaches once `value` is in it, refused past the limit.
    private func grownDepth(_ current: Int, with value: PickleValue) throws -> Int {
        let needed = depth(value) + 1
        guard needed <= Unpickler.maximumDepth else { throw fail("values nested more than \(Unpickler.maximumDepth) deep") }
        return max(current, needed)
    }

    /// Runs the pickle up to STOP and returns its value.
    mutating func load() throws -> PickleValue {
        while true {
            let at = position
            let op = try byte()
            switch op {
            case 0x80: // PROTO
                let version = try byte()
                guard version <= 5 else { throw fail("protocol \(version) is newer than pickle knows") }
            case 0x95: // FRAME: a length hint only
                _ = try unsigned(8)
            case 0x2E: // STOP
                guard stack.count == 1, marks.isEmpty, let value = stack.first else {
                    throw fail("STOP with \(stack.count) values on the stack")
                }
                stack.removeAll()
                return value
            case 0x63: // GLOBAL
                let module = try line()
                let name = try line()
                try pushGlobal(module: module, name: name)
            case 0x93: // STACK_GLOBAL
                let nameValue = try pop(), moduleValue = try pop()
                guard case .string(let name) = nameValue, case .string(let module) = moduleValue else {
                    throw fail("STACK_GLOBAL needs two strings")
                }
                try pushGlobal(module: module, name: name)
            case 0x71: // BINPUT
                try memoize(Int(try byte()))
            case 0x72: // LONG_BINPUT
                try memoize(Int(try unsigned(4)))
            case 0x94: // MEMOIZE
                try memoize(memo.count)
            case 0x68, 0x6A: // BINGET, LONG_BINGET
                let key = Int(try unsigned(op == 0x68 ? 1 : 4))
                guard let value = memo[key] else { throw fail("BINGET of memo \(key), which was never stored (offset \(at))") }
                try push(value)
            case 0x28: // MARK
                guard marks.count < Unpickler.maximumDepth else { throw fail("MARKs nested more than \(Unpickler.maximumDepth) deep") }
                marks.append(stack.count)
            case 0x30: // POP
                _ = try pop()
            case 0x31: // POP_MARK
                _ = try popMark()
            case 0x32: // DUP
                guard let top = stack.last else { throw fail("DUP on an empty stack") }
                try push(top)
            case 0x7D: try push(.dict(PickleDict()))   // EMPTY_DICT
            case 0x5D: try push(.list(PickleList()))   // EMPTY_LIST
            case 0x29: try push(.tuple([]))            // EMPTY_TUPLE
            case 0x74: try push(.tuple(try popMark())) // TUPLE
            case 0x85, 0x86, 0x87: // TUPLE1..3
                let n = Int(op - 0x84)
                guard stack.count - n >= (marks.last ?? 0) else { throw fail("TUPLE\(n) with too few values") }
                let items = Array(stack.suffix(n))
                stack.removeLast(n)
                try push(.tuple(items))
            case 0x73: // SETITEM
                let value = try pop(), key = try pop()
                try setItems(on: try top(), [(key, value)])
            case 0x75: // SETITEMS
                let items = try popMark()
                guard items.count % 2 == 0 else { throw fail("SETITEMS with an odd number of values") }
                try setItems(on: try top(), stride(from: 0, to: items.count, by: 2).map { (items[$0], items[$0 + 1]) })
            case 0x61: // APPEND
                let value = try pop()
                try append(to: try top(), [value])
            case 0x65: // APPENDS
                let items = try popMark()
                try append(to: try top(), items)
            case 0x4A: // BININT
                try push(.int(Int(Int32(bitPattern: UInt32(try unsigned(4))))))
            case 0x4B: try push(.int(Int(try byte())))       // BININT1
            case 0x4D: try push(.int(Int(try unsigned(2))))  // BININT2
            case 0x8A, 0x8B: // LONG1, LONG4
                let count = try length(op == 0x8A ? 1 : 4)
                try push(integer(Array(try take(count))))
            case 0x47: // BINFLOAT: big-endian
                let bits = try take(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
                try push(.float(Double(bitPattern: bits)))
            case 0x58, 0x8C, 0x8D: // BINUNICODE, SHORT_BINUNICODE, BINUNICODE8
                let count = try length(op == 0x58 ? 4 : op == 0x8C ? 1 : 8)
                try push(.string(String(decoding: try take(count), as: UTF8.self)))
            case 0x54, 0x55: // BINSTRING, SHORT_BINSTRING (Python 2 str: read as Latin-1 text)
                let count = try length(op == 0x54 ? 4 : 1)
                try push(.string(String(try take(count).map { Character(Unicode.Scalar($0)) })))
            case 0x42, 0x43, 0x8E: // BINBYTES, SHORT_BINBYTES, BINBYTES8
                let count = try length(op == 0x42 ? 4 : op == 0x43 ? 1 : 8)
                try push(.bytes(Array(try take(count))))
            case 0x4E: try push(.none)        // NONE
            case 0x88: try push(.bool(true))  // NEWTRUE
            case 0x89: try push(.bool(false)) // NEWFALSE
            case 0x52: // REDUCE
                let arguments = try pop(), callable = try pop()
                guard case .global(let global) = callable, case .tuple(let args) = arguments else {
                    throw fail("REDUCE of \(callable.typeName) with \(arguments.typeName) at offset \(at): only the allowed rebuild functions are called")
                }
                try push(try call(global, args))
            case 0x81: // NEWOBJ
                let arguments = try pop(), cls = try pop()
                guard case .global(.orderedDict) = cls, case .tuple(let args) = arguments, args.isEmpty else {
                    throw fail("NEWOBJ of \(cls.typeName) at offset \(at): only an empty OrderedDict is built")
                }
                try push(.dict(PickleDict()))
            case 0x62: // BUILD
                let state = try pop()
                // An OrderedDict's instance attributes (a state_dict's `_metadata`) are
                // version notes for load_state_dict: kept nowhere, refused on anything else.
                guard case .dict = try top() else {
                    throw fail("BUILD on \(try top().typeName) at offset \(at): only dicts take state")
                }
                _ = state
            case 0x51: // BINPERSID
                try push(try persistentLoad(try pop()))
            default:
                throw fail(String(format: "opcode 0x%02x at offset %d is not one a state_dict uses", op, at))
            }
        }
    }

    private func top() throws -> PickleValue {
        guard let value = stack.last, stack.count > (marks.last ?? 0) else { throw fail("stack underflow at offset \(position)") }
        return value
    }

    private mutating func memoize(_ key: Int) throws {
        guard let value = stack.last else { throw fail("memo store on an empty stack") }
        memo[key] = value
    }

    private mutating func pushGlobal(module: String, name: String) throws {
        guard let global = PickleGlobal.lookup(module: module, name: name) else {
            let qualified = module + "." + name
            if constructsObject() || (module.hasPrefix("torch") && name.first?.isUppercase == true) {
                throw fail("the file holds a pickled object of class '\(qualified)', a whole model saved with "
                    + "torch.save(model); only state_dicts are read (and nothing in the file is run): save "
                    + "model.state_dict() instead")
            }
            throw fail("refused global '\(qualified)': only tensors, storages and containers are allowed "
                + "(nothing in the file is run)")
        }
        try push(.global(global))
    }

    /// Whether the opcodes after a GLOBAL build an instance of it (class, memo, empty
    /// tuple, NEWOBJ): how protocol 2 pickles a Python object such as an nn.Module.
    private func constructsObject() -> Bool {
        var i = position
        while i < bytes.count {
            switch bytes[i] {
            case 0x71: i += 2
            case 0x72: i += 5
            case 0x94: i += 1
            case 0x29: return i + 1 < bytes.count && bytes[i + 1] == 0x81
            default: return false
            }
        }
        return false
    }

    private func integer(_ raw: [UInt8]) -> PickleValue {
        guard !raw.isEmpty else { return .int(0) }
        guard raw.count <= 8 else { return .bigInt(raw) }
        var value = raw.reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        if raw.count < 8, (raw.last ?? 0) & 0x80 != 0 { value |= ~UInt64(0) << (8 * UInt64(raw.count)) }
        return .int(Int(Int64(bitPattern: value)))
    }

    private mutating func setItems(on target: PickleValue, _ items: [(PickleValue, PickleValue)]) throws {
        guard case .dict(let dict) = target else { throw fail("SETITEM on \(target.typeName)") }
        for (key, value) in items {
            switch key {
            case .string, .int, .bool, .none, .float, .bytes, .tuple: break
            default: throw fail("a dict key of type \(key.typeName)")
            }
            dict.depth = try grownDepth(dict.depth, with: value)
            dict.set(key, value)
        }
    }

    private mutating func append(to target: PickleValue, _ items: [PickleValue]) throws {
        guard case .list(let list) = target else { throw fail("APPEND on \(target.typeName)") }
        for item in items {
            list.depth = try grownDepth(list.depth, with: item)
            list.items.append(item)
        }
    }

    private mutating func persistentLoad(_ id: PickleValue) throws -> PickleValue {
        guard case .tuple(let fields) = id, fields.count >= 5, case .string("storage") = fields[0],
              case .global(let typeGlobal) = fields[1], case .string(let key) = fields[2],
              case .int(let count) = fields[4], count >= 0
        else {
            throw fail("a persistent id that is not ('storage', type, key, location, size)")
        }
        let dtype: DType
        switch typeGlobal {
        case .storageType(let type, _), .dtype(let type, _): dtype = type
        default: throw fail("storage of type \(typeGlobal.qualifiedName)")
        }
        if fields.count > 5, case .tuple = fields[5] {
            throw fail("storage '\(key)' is a view of another storage (pre-1.0 torch): not supported")
        }
        if let known = storages[key] {
            guard known.dtype == dtype, known.declaredCount == count else {
                throw fail("storage '\(key)' is declared twice with different types or sizes")
            }
            return .storage(known)
        }
        let storage = PickleStorage(key: key, dtype: dtype, declaredCount: count)
        storages[key] = storage
        return .storage(storage)
    }

    private func sizes(_ value: PickleValue, _ what: String) throws -> [Int] {
        guard case .tuple(let items) = value else { throw fail("tensor \(what) is a \(value.typeName), not a tuple") }
        return try items.map {
            guard case .int(let n) = $0, n >= 0 else { throw fail("tensor \(what) \(items.map(\.typeName)) is not a tuple of sizes") }
            return n
        }
    }

    private func call(_ global: PickleGlobal, _ args: [PickleValue]) throws -> PickleValue {
        switch global {
        case .orderedDict:
            guard args.isEmpty else { throw fail("OrderedDict called with arguments") }
            return .dict(PickleDict())
        case .rebuildTensorV2, .rebuildTensor:
            guard args.count >= 4, case .storage(let storage) = args[0], case .int(let offset) = args[1], offset >= 0 else {
                throw fail("\(global.qualifiedName) needs (storage, offset, size, stride, ...)")
            }
            let shape = try sizes(args[2], "size"), stride = try sizes(args[3], "stride")
            guard shape.count == stride.count else { throw fail("tensor size \(shape) and stride \(stride) differ in rank") }
            return .tensor(PickleTensor(storage: storage, storageOffset: offset, shape: shape, stride: stride))
        case .rebuildParameter, .rebuildParameterWithState:
            guard let data = args.first, case .tensor = data else { throw fail("\(global.qualifiedName) of a non-tensor") }
            return data
        case .storageType, .dtype:
            throw fail("\(global.qualifiedName) called: storages come only from persistent ids")
        }
    }
}
