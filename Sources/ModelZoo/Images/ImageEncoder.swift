import CPNG
import Foundation

/// PNG encoding through libpng's simplified API, for images embedded in reports.
public enum ImageEncoder {
    public static func png(_ image: RGBImage) throws -> [UInt8] {
        guard image.width > 0, image.height > 0, image.pixels.count == image.width * image.height * 3 else {
            throw ZooError.invalidArgument("cannot encode a \(image.width)x\(image.height) image of \(image.pixels.count) bytes")
        }
        var header = png_image()
        header.version = UInt32(PNG_IMAGE_VERSION)
        header.width = UInt32(image.width)
        header.height = UInt32(image.height)
        header.format = UInt32(PNG_FORMAT_RGB)
        var size = 0
        // A first call without a buffer tells the size the encoded image needs.
        let sized = image.pixels.withUnsafeBytes { pixels in
            png_image_write_to_memory(&header, nil, &size, 0, pixels.baseAddress, 0, nil)
        }
        guard sized != 0, size > 0 else { throw ZooError.invalidArgument("libpng could not size a PNG: \(message(header))") }
        var bytes = [UInt8](repeating: 0, count: size)
        let written = bytes.withUnsafeMutableBytes { out in
            image.pixels.withUnsafeBytes { pixels in
                png_image_write_to_memory(&header, out.baseAddress, &size, 0, pixels.baseAddress, 0, nil)
            }
        }
        png_image_free(&header)
        guard written != 0 else { throw ZooError.invalidArgument("libpng could not encode a PNG: \(message(header))") }
        return Array(bytes.prefix(size))
    }

    private static func message(_ image: png_image) -> String {
        var text = image.message
        return withUnsafeBytes(of: &text) { raw in String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self) }
    }
}
