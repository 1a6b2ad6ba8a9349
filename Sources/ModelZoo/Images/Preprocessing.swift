/// Turns decoded images into the network's input tensor, the way the weights were trained.
public enum ImagePreprocessor {
    /// One image as a [C, H, W] float array for `arch` at `size`.
    /// `meanBGR` replaces the ImageNet means of the caffe convention (a caffemodel's own
    /// transform_param mean values).
    public static func tensorData(_ image: RGBImage, for convention: Architecture.Preprocessing,
                                  size: Size2, channels: Int, meanBGR: [Float]? = nil) -> [Float] {
        let mean = caffeMean(meanBGR)
        switch convention {
        case .grayscaleUnit:
            // Small grey inputs (LeNet): the whole image, squashed to the input size.
            let resized = resize(image, width: size.w, height: size.h)
            var out = [Float](repeating: 0, count: size.h * size.w * channels)
            for i in 0..<(size.h * size.w) {
                let r = Float(resized.pixels[3 * i]), g = Float(resized.pixels[3 * i + 1]), b = Float(resized.pixels[3 * i + 2])
                let grey = (0.299 * r + 0.587 * g + 0.114 * b) / 255
                for c in 0..<channels { out[c * size.h * size.w + i] = grey }
            }
            return out
        case .torchvision, .caffe:
            // Resize the shorter side to 256/224 of the crop, then take the centre crop:
            // torchvision's Resize(256) + CenterCrop(224), applied at any input size.
            let shorter = Double(min(size.h, size.w)) * 256.0 / 224.0
            let scale = shorter / Double(min(image.width, image.height))
            let w = max(size.w, Int((Double(image.width) * scale).rounded()))
            let h = max(size.h, Int((Double(image.height) * scale).rounded()))
            let resized = resize(image, width: w, height: h)
            let x0 = (w - size.w) / 2, y0 = (h - size.h) / 2
            var out = [Float](repeating: 0, count: 3 * size.h * size.w)
            let plane = size.h * size.w
            for y in 0..<size.h {
                for x in 0..<size.w {
                    let p = 3 * ((y + y0) * w + (x + x0))
                    let rgb = (Float(resized.pixels[p]), Float(resized.pixels[p + 1]), Float(resized.pixels[p + 2]))
                    let i = y * size.w + x
                    if convention == .torchvision {
                        out[i] = (rgb.0 / 255 - 0.485) / 0.229
                        out[plane + i] = (rgb.1 / 255 - 0.456) / 0.224
                        out[2 * plane + i] = (rgb.2 / 255 - 0.406) / 0.225
                    } else {
                        // Caffe and Keras "caffe" mode: BGR order, ImageNet means subtracted.
                        out[i] = rgb.2 - mean.b
                        out[plane + i] = rgb.1 - mean.g
                        out[2 * plane + i] = rgb.0 - mean.r
                    }
                }
            }
            return out
        }
    }

    /// The per-channel means the caffe convention subtracts: the file's (one value for all
    /// channels, or B, G, R), else ImageNet's.
    static func caffeMean(_ meanBGR: [Float]?) -> (b: Float, g: Float, r: Float) {
        switch meanBGR?.count {
        case 1?: return (meanBGR![0], meanBGR![0], meanBGR![0])
        case 3?: return (meanBGR![0], meanBGR![1], meanBGR![2])
        default: return (103.939, 116.779, 123.68)
        }
    }

    /// Bilinear resize with half-pixel centres; when shrinking by more than 2x it first
    /// averages boxes so thin strokes are not skipped (what antialiased resizers do).
    public static func resize(_ image: RGBImage, width: Int, height: Int) -> RGBImage {
        if image.width == width && image.height == height { return image }
        var src = image
        while src.width >= 2 * width && src.height >= 2 * height { src = halve(src) }
        var out = [UInt8](repeating: 0, count: width * height * 3)
        let sx = Double(src.width) / Double(width), sy = Double(src.height) / Double(height)
        for y in 0..<height {
            let fy = max(0, min(Double(src.height - 1), (Double(y) + 0.5) * sy - 0.5))
            let y0 = Int(fy), y1 = min(y0 + 1, src.height - 1), wy = fy - Double(y0)
            for x in 0..<width {
                let fx = max(0, min(Double(src.width - 1), (Double(x) + 0.5) * sx - 0.5))
                let x0 = Int(fx), x1 = min(x0 + 1, src.width - 1), wx = fx - Double(x0)
                for c in 0..<3 {
                    let a = Double(src.pixels[3 * (y0 * src.width + x0) + c]), b = Double(src.pixels[3 * (y0 * src.width + x1) + c])
                    let d = Double(src.pixels[3 * (y1 * src.width + x0) + c]), e = Double(src.pixels[3 * (y1 * src.width + x1) + c])
                    let v = (a * (1 - wx) + b * wx) * (1 - wy) + (d * (1 - wx) + e * wx) * wy
                    out[3 * (y * width + x) + c] = UInt8(max(0, min(255, v.rounded())))
                }
            }
        }
        return RGBImage(width: width, height: height, pixels: out)
    }

    private static func halve(_ image: RGBImage) -> RGBImage {
        let w = image.width / 2, h = image.height / 2
        var out = [UInt8](repeating: 0, count: w * h * 3)
        for y in 0..<h { for x in 0..<w { for c in 0..<3 {
            let p = { (yy: Int, xx: Int) in Int(image.pixels[3 * (yy * image.width + xx) + c]) }
            out[3 * (y * w + x) + c] = UInt8((p(2 * y, 2 * x) + p(2 * y, 2 * x + 1) + p(2 * y + 1, 2 * x) + p(2 * y + 1, 2 * x + 1) + 2) / 4)
        } } }
        return RGBImage(width: w, height: h, pixels: out)
    }
}

extension ImagePreprocessor {
    /// A training view as torchvision's RandomResizedCrop + RandomHorizontalFlip make it:
    /// the `crop` rectangle of the original image, resized to the input size (no Resize 256
    /// first), mirrored when `flip`, then scaled and normalised as the convention says.
    public static func augmentedTensorData(_ image: RGBImage, for convention: Architecture.Preprocessing, size: Size2,
                                           channels: Int, crop: CropBox, flip: Bool, meanBGR: [Float]? = nil) -> [Float] {
        let mean = caffeMean(meanBGR)
        let x0 = max(0, min(crop.x, image.width - 1)), y0 = max(0, min(crop.y, image.height - 1))
        let w = max(1, min(crop.width, image.width - x0)), h = max(1, min(crop.height, image.height - y0))
        var cut = [UInt8](repeating: 0, count: w * h * 3)
        for y in 0..<h {
            let from = 3 * ((y0 + y) * image.width + x0)
            cut.replaceSubrange((3 * y * w)..<(3 * (y + 1) * w), with: image.pixels[from..<(from + 3 * w)])
        }
        var view = resize(RGBImage(width: w, height: h, pixels: cut), width: size.w, height: size.h)
        if flip {
            var mirrored = view.pixels
            for y in 0..<size.h {
                for x in 0..<size.w {
                    for c in 0..<3 { mirrored[3 * (y * size.w + x) + c] = view.pixels[3 * (y * size.w + size.w - 1 - x) + c] }
                }
            }
            view = RGBImage(width: size.w, height: size.h, pixels: mirrored)
        }
        let plane = size.h * size.w
        switch convention {
        case .grayscaleUnit:
            var out = [Float](repeating: 0, count: plane * channels)
            for i in 0..<plane {
                let grey = (0.299 * Float(view.pixels[3 * i]) + 0.587 * Float(view.pixels[3 * i + 1])
                            + 0.114 * Float(view.pixels[3 * i + 2])) / 255
                for c in 0..<channels { out[c * plane + i] = grey }
            }
            return out
        case .torchvision, .caffe:
            var out = [Float](repeating: 0, count: 3 * plane)
            for i in 0..<plane {
                let r = Float(view.pixels[3 * i]), g = Float(view.pixels[3 * i + 1]), b = Float(view.pixels[3 * i + 2])
                if convention == .torchvision {
                    out[i] = (r / 255 - 0.485) / 0.229
                    out[plane + i] = (g / 255 - 0.456) / 0.224
                    out[2 * plane + i] = (b / 255 - 0.406) / 0.225
                } else {
                    out[i] = b - mean.b
                    out[plane + i] = g - mean.g
                    out[2 * plane + i] = r - mean.r
                }
            }
            return out
        }
    }
}

/// A rectangle of an image, in pixels from the top-left corner.
public struct CropBox: Sendable, Equatable {
    public let x: Int, y: Int, width: Int, height: Int
    public init(x: Int, y: Int, width: Int, height: Int) { self.x = x; self.y = y; self.width = width; self.height = height }
}
