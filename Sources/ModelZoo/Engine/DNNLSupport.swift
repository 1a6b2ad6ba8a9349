import CDNNL

/// Small, typed helpers over the oneDNN 2.6 C API. Everything here stays internal: the rest
/// of the library sees `Network`, never a raw handle.
enum DNNL {
    /// Turns a oneDNN status into a thrown `ZooError` naming the layer and the call.
    static func check(_ status: dnnl_status_t, layer: String, _ call: @autoclosure () -> String) throws {
        guard status != dnnl_success else { return }
        throw ZooError.engineFailure(layer: layer, reason: "\(call()) failed: \(describe(status))")
    }

    /// A CPU engine and a stream on it; the caller destroys both.
    static func cpuEngineAndStream() throws -> (dnnl_engine_t, dnnl_stream_t) {
        var engine: dnnl_engine_t?
        try check(dnnl_engine_create(&engine, dnnl_cpu, 0), layer: "engine", "dnnl_engine_create")
        guard let engine else { throw ZooError.engineFailure(layer: "engine", reason: "no CPU engine") }
        var stream: dnnl_stream_t?
        let status = dnnl_stream_create(&stream, engine, UInt32(dnnl_stream_default_flags.rawValue))
        guard status == dnnl_success, let stream else {
            dnnl_engine_destroy(engine)
            throw ZooError.engineFailure(layer: "engine", reason: "dnnl_stream_create failed: \(describe(status))")
        }
        return (engine, stream)
    }

    static func describe(_ status: dnnl_status_t) -> String {
        switch status {
        case dnnl_out_of_memory: return "out of memory"
        case dnnl_invalid_arguments: return "invalid arguments"
        case dnnl_unimplemented: return "no implementation for these shapes and layouts"
        case dnnl_iterator_ends: return "iterator ends"
        case dnnl_runtime_error: return "runtime error"
        case dnnl_not_required: return "not required"
        default: return "status \(status.rawValue)"
        }
    }

    /// A memory descriptor for f32 data of the given dimensions and layout tag
    /// (`dnnl_format_tag_any` lets the primitive choose a blocked layout).
    static func desc(_ dims: [Int], _ tag: dnnl_format_tag_t, type: dnnl_data_type_t = dnnl_f32,
                     layer: String) throws -> dnnl_memory_desc_t {
        var md = dnnl_memory_desc_t()
        let dims64 = dims.map { Int64($0) }
        try check(dnnl_memory_desc_init_by_tag(&md, Int32(dims.count), dims64, type, tag),
                  layer: layer, "memory descriptor \(dims)")
        return md
    }

    /// The plain row-major tag for a tensor of `rank` dimensions.
    static func plainTag(rank: Int) -> dnnl_format_tag_t {
        switch rank {
        case 1: return dnnl_a
        case 2: return dnnl_ab
        case 3: return dnnl_abc
        case 4: return dnnl_abcd
        default: return dnnl_abcde
        }
    }

    static func equal(_ a: dnnl_memory_desc_t, _ b: dnnl_memory_desc_t) -> Bool {
        var a = a, b = b
        return dnnl_memory_desc_equal(&a, &b) != 0
    }

    static func dims(of md: dnnl_memory_desc_t) -> [Int] {
        var md = md
        let rank = Int(md.ndims)
        return withUnsafeBytes(of: &md.dims) { raw in
            (0..<rank).map { Int(raw.load(fromByteOffset: $0 * 8, as: Int64.self)) }
        }
    }

    static func queryMD(_ pd: dnnl_primitive_desc_t, _ what: dnnl_query_t, _ index: Int32 = 0) -> dnnl_memory_desc_t? {
        dnnl_primitive_desc_query_md(pd, what, index)?.pointee
    }

    /// Implementation name oneDNN chose (e.g. "brgconv:avx512_core"), for diagnostics.
    static func implementationName(_ pd: dnnl_primitive_desc_t) -> String {
        var cString: UnsafePointer<CChar>?
        guard dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &cString) == dnnl_success,
              let cString else { return "?" }
        return String(cString: cString)
    }

    /// The sentinel oneDNN takes as "allocate the buffer for me" (DNNL_MEMORY_ALLOCATE,
    /// a macro Swift cannot import).
    static var allocate: UnsafeMutableRawPointer? { UnsafeMutableRawPointer(bitPattern: UInt(bitPattern: -1)) }

    /// Argument tags (the DNNL_ARG_* macros).
    enum Arg {
        static let src: Int32 = 1
        static let src1: Int32 = 2
        static let dst: Int32 = 17
        static let weights: Int32 = 33
        static let bias: Int32 = 41
        static let mean: Int32 = 49
        static let variance: Int32 = 50
        static let scale: Int32 = 51
        static let shift: Int32 = 52
        static let scratchpad: Int32 = 80
        static let multipleSrc: Int32 = 1024
        static let workspace: Int32 = 64
        static let diffSrc: Int32 = 129
        static let diffDst: Int32 = 145
        static let diffWeights: Int32 = 161
        static let diffBias: Int32 = 169
        static let diffScale: Int32 = 255
        static let diffShift: Int32 = 256
    }
}

/// Owns the oneDNN objects a compiled network creates and frees them together.
final class DNNLResources {
    private(set) var memories: [dnnl_memory_t] = []
    private(set) var primitives: [dnnl_primitive_t] = []
    private(set) var descriptors: [dnnl_primitive_desc_t] = []
    private var attributes: [dnnl_primitive_attr_t] = []
    private var postOps: [dnnl_post_ops_t] = []

    func keep(memory: dnnl_memory_t) { memories.append(memory) }
    func keep(primitive: dnnl_primitive_t) { primitives.append(primitive) }
    func keep(descriptor: dnnl_primitive_desc_t) { descriptors.append(descriptor) }
    func keep(attribute: dnnl_primitive_attr_t) { attributes.append(attribute) }
    func keep(postOps ops: dnnl_post_ops_t) { postOps.append(ops) }

    /// A primitive descriptor for an op descriptor (`dnnl_*_desc_t`), kept until deinit.
    func describe<Descriptor>(_ descriptor: inout Descriptor, engine: dnnl_engine_t,
                              attributes: dnnl_primitive_attr_t? = nil, hint: dnnl_primitive_desc_t? = nil,
                              layer: String, _ what: String) throws -> dnnl_primitive_desc_t {
        var pd: dnnl_primitive_desc_t?
        let status = withUnsafeMutablePointer(to: &descriptor) { pointer in
            dnnl_primitive_desc_create(&pd, UnsafeRawPointer(pointer), attributes, engine, hint)
        }
        try DNNL.check(status, layer: layer, what)
        guard let pd else { throw ZooError.engineFailure(layer: layer, reason: "\(what): no descriptor") }
        keep(descriptor: pd)
        return pd
    }

    /// The primitive of a descriptor, kept until deinit.
    func primitive(_ pd: dnnl_primitive_desc_t, layer: String) throws -> dnnl_primitive_t {
        var primitive: dnnl_primitive_t?
        try DNNL.check(dnnl_primitive_create(&primitive, pd), layer: layer, "primitive creation")
        guard let primitive else { throw ZooError.engineFailure(layer: layer, reason: "no primitive") }
        keep(primitive: primitive)
        return primitive
    }

    deinit {
        for p in primitives { dnnl_primitive_destroy(p) }
        for d in descriptors { dnnl_primitive_desc_destroy(d) }
        for a in attributes { dnnl_primitive_attr_destroy(a) }
        for o in postOps { dnnl_post_ops_destroy(o) }
        for m in memories { dnnl_memory_destroy(m) }
    }
}
