import Foundation

/// Random training views of an image, as torchvision's usual training transforms draw them:
/// RandomResizedCrop(size, scale, ratio) then RandomHorizontalFlip(0.5). Each view is a pure
/// function of (seed, class folder and file name, view number), so the cached features do not depend on the
/// order or batching of the images and a rerun reproduces them.
public struct Augmentation: Sendable, Equatable {
    /// Views per training image.
    public var views: Int
    public var flip: Bool
    public var seed: UInt64
    /// Share of the image's area a crop covers, drawn uniformly.
    public var scale: ClosedRange<Double> = 0.08...1
    /// Width / height of a crop, drawn log-uniformly.
    public var ratio: ClosedRange<Double> = (3.0 / 4)...(4.0 / 3)

    public init(views: Int, flip: Bool = true, seed: UInt64 = 0) {
        self.views = views; self.flip = flip; self.seed = seed
    }

    /// Everything the views depend on, for the feature cache key.
    var key: String {
        "augment views=\(views) flip=\(flip) seed=\(seed) scale=\(scale.lowerBound)-\(scale.upperBound) "
            + "ratio=\(ratio.lowerBound)-\(ratio.upperBound)"
    }

    /// The crop and flip of view `view` of the image at `path`, `width` x `height` pixels.
    /// Only the class folder and file name enter the draw, so the same data reached by a
    /// relative or an absolute path, or moved elsewhere, gives the same views.
    public func draw(path: String, view: Int, width: Int, height: Int) -> (crop: CropBox, flip: Bool) {
        let name = path.split(separator: "/").suffix(2).joined(separator: "/")
        var generator = SplitMix64(seed: seed ^ FNV1a.hash(name) ^ (0x5649_4557 &* UInt64(view + 1)))  // "VIEW"
        let crop = Self.randomResizedCrop(width: width, height: height, scale: scale, ratio: ratio, &generator)
        return (crop, flip && generator.nextUniform() < 0.5)
    }

    /// torchvision's RandomResizedCrop.get_params: ten tries at a random area and aspect
    /// ratio that fit in the image, then a centre crop at the nearest allowed ratio.
    static func randomResizedCrop(width: Int, height: Int, scale: ClosedRange<Double>, ratio: ClosedRange<Double>,
                                  _ generator: inout SplitMix64) -> CropBox {
        let area = Double(width * height)
        let logLow = log(ratio.lowerBound), logHigh = log(ratio.upperBound)
        for _ in 0..<10 {
            let target = area * (scale.lowerBound + generator.nextUniform() * (scale.upperBound - scale.lowerBound))
            let aspect = exp(logLow + generator.nextUniform() * (logHigh - logLow))
            let w = Int((target * aspect).squareRoot().rounded())
            let h = Int((target / aspect).squareRoot().rounded())
            if w > 0, h > 0, w <= width, h <= height {
                let y = Int(generator.nextUniform() * Double(height - h + 1))
                let x = Int(generator.nextUniform() * Double(width - w + 1))
                return CropBox(x: min(x, width - w), y: min(y, height - h), width: w, height: h)
            }
        }
        let inRatio = Double(width) / Double(height)
        var w = width, h = height
        if inRatio < ratio.lowerBound {
            h = max(1, min(height, Int((Double(w) / ratio.lowerBound).rounded())))
        } else if inRatio > ratio.upperBound {
            w = max(1, min(width, Int((Double(h) * ratio.upperBound).rounded())))
        }
        return CropBox(x: (width - w) / 2, y: (height - h) / 2, width: w, height: h)
    }
}
