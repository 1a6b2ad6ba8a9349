/// The computation an ONNX file describes, as plain Swift values for the stages after
/// reading (mapping names, verifying, building an engine). Weights are not here: they are
/// the file's `tensors`, loaded on demand.
public struct ONNXGraph: Sendable {
    public var name: String
    /// Nodes in the file's (topological) order.
    public var nodes: [ONNXNode]
    /// Declared graph inputs. Files older than IR version 4 also list every initializer
    /// here; `dataInputs` leaves those out.
    public var inputs: [ONNXValueInfo]
    public var outputs: [ONNXValueInfo]
    /// Names of the graph's initializers, in file order.
    public var initializerNames: [String]
    /// The version of the default ("" / "ai.onnx") operator set, 0 when the file names none.
    public var opsetVersion: Int
    /// Every operator set the file imports: domain ("" for the default) to version.
    public var opsetImports: [String: Int]
    public var producerName: String
    public var producerVersion: String
    public var irVersion: Int

    /// Inputs the caller must feed: declared inputs that are not initializers.
    public var dataInputs: [ONNXValueInfo] {
        let constants = Set(initializerNames)
        return inputs.filter { !constants.contains($0.name) }
    }

    /// How many nodes use each operator. Operators outside the default domain are keyed
    /// "domain.OpType" so they cannot be mistaken for standard ones.
    public var operatorCounts: [String: Int] {
        var counts: [String: Int] = [:]
        for node in nodes { counts[node.qualifiedOpType, default: 0] += 1 }
        return counts
    }

    /// `operatorCounts` most frequent first, ties by name: the order `zoo inspect` prints.
    public var operatorCountsSorted: [(op: String, count: Int)] {
        operatorCounts.map { (op: $0.key, count: $0.value) }
            .sorted { $0.count != $1.count ? $0.count > $1.count : $0.op < $1.op }
    }
}

public struct ONNXNode: Sendable, Equatable {
    public var name: String
    public var opType: String
    /// "" for the default operator set.
    public var domain: String
    /// Value names; "" marks an omitted optional input.
    public var inputs: [String]
    public var outputs: [String]
    public var attributes: [String: ONNXAttribute]

    public init(name: String, opType: String, domain: String, inputs: [String], outputs: [String],
                attributes: [String: ONNXAttribute]) {
        self.name = name; self.opType = opType; self.domain = domain
        self.inputs = inputs; self.outputs = outputs; self.attributes = attributes
    }

    /// True for the default operator set, which files spell "" or "ai.onnx".
    public var isDefaultDomain: Bool { domain.isEmpty || domain == "ai.onnx" }

    public var qualifiedOpType: String { isDefaultDomain ? opType : "\(domain).\(opType)" }
}

/// An attribute value. Tensor attributes are records whose data `ONNXFile.load(record.name)`
/// reads: a Constant node's value is named by the node's output (and is also among the
/// file's `tensors`); other tensor attributes get the name "<node>:<attribute>", which
/// `load` accepts but `tensors` does not list.
public enum ONNXAttribute: Sendable, Equatable {
    case int(Int)
    case float(Float)
    case string(String)
    case ints([Int])
    case floats([Float])
    case strings([String])
    case tensor(TensorRecord)
    case tensors([TensorRecord])
    /// Sub-graphs, sparse tensors, type protos: kinds classic CNNs never use. Carries the
    /// ONNX AttributeType name.
    case unsupported(String)

    public var intValue: Int? { if case let .int(value) = self { return value } else { return nil } }
    public var floatValue: Float? {
        switch self {
        case let .float(value): return value
        case let .int(value): return Float(value)
        default: return nil
        }
    }
    public var stringValue: String? { if case let .string(value) = self { return value } else { return nil } }
    public var intsValue: [Int]? { if case let .ints(value) = self { return value } else { return nil } }
    public var floatsValue: [Float]? { if case let .floats(value) = self { return value } else { return nil } }
}

/// A declared graph input or output.
public struct ONNXValueInfo: Sendable, Equatable {
    public var name: String
    /// nil when the value is not a dense tensor or its type is not given.
    public var elementType: DType?
    /// nil when no shape is declared.
    public var shape: [ONNXDimension]?

    public init(name: String, elementType: DType?, shape: [ONNXDimension]?) {
        self.name = name; self.elementType = elementType; self.shape = shape
    }
}

public enum ONNXDimension: Sendable, Equatable, CustomStringConvertible {
    case fixed(Int)
    /// A symbolic dimension such as "N" or "batch_size".
    case symbolic(String)
    case unknown

    public var description: String {
        switch self {
        case let .fixed(value): return String(value)
        case let .symbolic(name): return name
        case .unknown: return "?"
        }
    }
}
