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
