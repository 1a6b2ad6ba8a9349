/// Cache-friendly layout changes between canonical (torch) and Keras tensors.
///
/// VGG16's first FC weight is 25088 x 4096 (411 MB): transposing it element by element
/// writes with a stride of 100 kB and takes seconds. Working in square tiles keeps both
/// the reads and the writes within a few cache lines, which makes it memory-bound (about
/// a tenth of a second here). Inside a tile the loops run along the destination, so the
/// writes are sequential and only the reads stride: twice as fast as the other way round
/// here (0.20 s against 0.46 s for that 411 MB matrix).
enum LayoutKernels {
    static let tile = 32

    /// `dst[c * rows + r] = src[r * cols + c]`, with the destination row order optionally
    /// permuted: `dst[c * rows + rowMap(r)]`.
    static func transpose(_ src: UnsafeBufferPointer<Float>, rows: Int, cols: Int,
                          into dst: UnsafeMutableBufferPointer<Float>, rowMap: ((Int) -> Int)? = nil) {
        // The kernel walks the destination in order, so it needs the inverse map: which
        // source row lands in each destination column.
        var sourceRowStart = [Int](repeating: 0, count: rows)
        for r in 0..<rows { sourceRowStart[rowMap.map { $0(r) } ?? r] = r * cols }
        let destinationRowStart = (0..<cols).map { $0 * rows }
        tiledCopy(src, into: dst, rows: rows, cols: cols, sourceRowStart: sourceRowStart,
                  destinationRowStart: destinationRowStart)
    }

    /// The one tiled loop every transpose here is: for destination row `c` (a source
    /// column) and position `j` in it, `d[destinationRowStart[c] + j] = s[sourceRowStart[j] + c]`.
    /// The two offset tables carry whatever permutation the layouts need.
    private static func tiledCopy(_ src: UnsafeBufferPointer<Float>, into dst: UnsafeMutableBufferPointer<Float>,
                                  rows: Int, cols: Int, sourceRowStart: [Int], destinationRowStart: [Int]) {
        guard let s = src.baseAddress, let d = dst.baseAddress else { return }
        sourceRowStart.withUnsafeBufferPointer { sr in
            destinationRowStart.withUnsafeBufferPointer { dr in
                var j0 = 0
                while j0 < rows {
                    let j1 = min(j0 + tile, rows)
                    var c0 = 0
                    while c0 < cols {
                        let c1 = min(c0 + tile, cols)
                        var c = c0
                        while c < c1 {
                            let destinationRow = d + dr[c]
                            var j = j0
                            while j < j1 {
                                destinationRow[j] = s[sr[j] + c]
                                j += 1
                            }
                            c += 1
                        }
                        c0 = c1
                    }
                    j0 = j1
                }
            }
        }
    }

    /// Destination rows `columns` of the same transpose as `tiledCopy` with destination rows
    /// in order, written from row 0 of `dst`: `dst[(c - columns.lowerBound) * rows + j] =
    /// src[sourceRowStart[j] + c]`, where `rows` is `sourceRowStart.count`. A band of a
    /// tensor streamed into a file (`StreamedTranspose`). Within each tile, 8 x 8 blocks go
    /// through vector registers (three rounds of even/odd unzipping transpose a block):
    /// about twice as fast as one value at a time (VGG16's fc1: 0.15 s against 0.3 s here).
    /// 32-bit words, so the bytes move unchanged whatever they hold.
    static func transposeBand(_ src: UnsafePointer<UInt32>, sourceRowStart sr: UnsafeBufferPointer<Int>,
                              columns: Range<Int>, into dst: UnsafeMutablePointer<UInt32>) {
        guard let starts = sr.baseAddress else { return }
        let rows = sr.count
        let first = columns.lowerBound
        var j0 = 0
        while j0 < rows {
            let j1 = min(j0 + tile, rows)
            var c0 = first
            while c0 < columns.upperBound {
                let c1 = min(c0 + tile, columns.upperBound)
                var j = j0
                while j + 8 <= j1 {
                    var c = c0
                    while c + 8 <= c1 {
                        transpose8x8(src, starts + j, column: c, into: dst + (c - first) * rows + j, stride: rows)
                        c += 8
                    }
                    while c < c1 {
                        let destinationRow = dst + (c - first) * rows
                        for k in j..<(j + 8) { destinationRow[k] = src[starts[k] + c] }
                        c += 1
                    }
                    j += 8
                }
                if j < j1 {
                    for c in c0..<c1 {
                        let destinationRow = dst + (c - first) * rows
                        for k in j..<j1 { destinationRow[k] = src[starts[k] + c] }
                    }
                }
                c0 = c1
            }
            j0 = j1
        }
    }

    /// `d[m * stride + k] = src[starts[k] + column + m]` for k, m in 0..<8. Viewing the block
    /// as 64 values indexed (k, m), splitting it into its even and odd values rotates the
    /// 6-bit index by one bit; three rotations exchange k and m.
    @inline(__always)
    private static func transpose8x8(_ src: UnsafePointer<UInt32>, _ starts: UnsafePointer<Int>, column: Int,
                                     into d: UnsafeMutablePointer<UInt32>, stride: Int) {
        @inline(__always) func row(_ k: Int) -> SIMD8<UInt32> {
            UnsafeRawPointer(src + starts[k] + column).loadUnaligned(as: SIMD8<UInt32>.self)
        }
        @inline(__always) func unzip(_ a: SIMD8<UInt32>, _ b: SIMD8<UInt32>) -> (SIMD8<UInt32>, SIMD8<UInt32>) {
            let both = SIMD16<UInt32>(lowHalf: a, highHalf: b)
            return (both.evenHalf, both.oddHalf)
        }
        var (r0, r1, r2, r3, r4, r5, r6, r7) = (row(0), row(1), row(2), row(3), row(4), row(5), row(6), row(7))
        for _ in 0..<3 {
            let (n0, n4) = unzip(r0, r1), (n1, n5) = unzip(r2, r3), (n2, n6) = unzip(r4, r5), (n3, n7) = unzip(r6, r7)
            (r0, r1, r2, r3, r4, r5, r6, r7) = (n0, n1, n2, n3, n4, n5, n6, n7)
        }
        let out = UnsafeMutableRawPointer(d)
        out.storeBytes(of: r0, toByteOffset: 0, as: SIMD8<UInt32>.self)
        out.storeBytes(of: r1, toByteOffset: 4 * stride, as: SIMD8<UInt32>.self)
        out.storeBytes(of: r2, toByteOffset: 8 * stride, as: SIMD8<UInt32>.self)
        out.storeBytes(of: r3, toByteOffset: 12 * stride, as: SIMD8<UInt32>.self)
        out.storeBytes(of: r4, toByteOffset: 16 * stride, as: SIMD8<UInt32>.self)
        out.storeBytes(of: r5, toByteOffset: 20 * stride, as: SIMD8<UInt32>.self)
        out.storeBytes(of: r6, toByteOffset: 24 * stride, as: SIMD8<UInt32>.self)
        out.storeBytes(of: r7, toByteOffset: 28 * stride, as: SIMD8<UInt32>.self)
    }

    /// Canonical dense [out, in] to Keras [in, out]. With `flatten` (the C x H x W volume
    /// flattened into this layer's input) the Keras rows come in H,W,C order.
    static func denseToKeras(_ t: Tensor, flatten: Shape3?) -> [Float] {
        let (rows, cols) = (t.shape[0], t.shape[1])
        return [Float](unsafeUninitializedCapacity: t.count) { out, initialized in
            if let base = out.baseAddress { adviseHugePages(base, count: t.count * 4) }
            t.data.withUnsafeBufferPointer { src in
                if let v = flatten, v.count == cols {
                    // Canonical column (ch * h + y) * w + x becomes Keras row (y * w + x) * c + ch.
                    transposeColumnsMapped(src, rows: rows, cols: cols, into: out) { (column: Int) -> Int in
                        let ch = column / (v.h * v.w), rest = column % (v.h * v.w)
                        return rest * v.c + ch
                    }
                } else {
                    transpose(src, rows: rows, cols: cols, into: out)
                }
            }
            initialized = t.count
        }
    }

    /// Keras dense [in, out] (rows in H,W,C order when `flatten` is given) to canonical [out, in].
    static func denseFromKeras(_ data: UnsafeBufferPointer<Float>, rows: Int, cols: Int, flatten: Shape3?,
                               into out: UnsafeMutableBufferPointer<Float>) {
        if let v = flatten, v.count == rows {
            // Keras row (y * w + x) * c + ch becomes canonical column (ch * h + y) * w + x.
            transpose(data, rows: rows, cols: cols, into: out) { (row: Int) -> Int in
                let ch = row % v.c, pixel = row / v.c
                return ch * v.h * v.w + pixel
            }
        } else {
            transpose(data, rows: rows, cols: cols, into: out)
        }
    }

    /// `dst[columnMap(c) * rows + r] = src[r * cols + c]`: a transpose whose destination
    /// rows (the source's columns) are permuted.
    static func transposeColumnsMapped(_ src: UnsafeBufferPointer<Float>, rows: Int, cols: Int,
                                       into dst: UnsafeMutableBufferPointer<Float>, columnMap: (Int) -> Int) {
        tiledCopy(src, into: dst, rows: rows, cols: cols, sourceRowStart: (0..<rows).map { $0 * cols },
                  destinationRowStart: (0..<cols).map { columnMap($0) * rows })
    }

    /// OIHW to HWIO: a transpose of [O, I*H*W] into [H*W*I, O] with rows regrouped.
    static func convToKeras(_ t: Tensor) -> [Float] {
        let (o, i, kh, kw) = (t.shape[0], t.shape[1], t.shape[2], t.shape[3])
        return [Float](unsafeUninitializedCapacity: t.count) { out, initialized in
            if let base = out.baseAddress { adviseHugePages(base, count: t.count * 4) }
            t.data.withUnsafeBufferPointer { src in
                // Canonical column (ci * kh + y) * kw + x is HWIO row (y * kw + x) * i + ci.
                transposeColumnsMapped(src, rows: o, cols: i * kh * kw, into: out) { (column: Int) -> Int in
                    let ci = column / (kh * kw), pixel = column % (kh * kw)
                    return pixel * i + ci
                }
            }
            initialized = t.count
        }
    }
}
