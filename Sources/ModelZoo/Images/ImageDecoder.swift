import CPNG
import CTurboJPEG
import Foundation

/// A decoded image: 8-bit interleaved RGB, whatever the file held (grey and palette PNGs
/// and CMYK JPEGs are converted by the decoders), so preprocessing has one input form.
public struct RGBImage: Sendable {
    public let width: Int
    public let height: Int
    /// width * height * 3 bytes, row by row.
    public let pixels: [UInt8]
}

public enum ImageDecoder {
    /// Images larger than this many pixels are refused before decoding allocates.
    static let maxPixels = 100_000_000

    public static func decode(path: String) throws -> RGBImage {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ZooError.unreadableFile(path: path, reason: "no such file or not readable")
        }
        let bytes = [UInt8](data)
        if bytes.starts(with: [0xFF, 0xD8, 0xFF]) { return try decodeJPEG(bytes, path: path) }
        if bytes.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) { return try decodePNG(bytes, path: path) }
        throw ZooError.unreadableFile(path: path, reason: "not a JPEG or PNG image")
    }

    static func decodeJPEG(_ bytes: [UInt8], path: String) throws -> RGBImage {
        guard let handle = tjInitDecompress() else {
            throw ZooError.unreadableFile(path: path, reason: "libjpeg-turbo could not start")
        }
        defer { tjDestroy(handle) }
        var width: Int32 = 0, height: Int32 = 0, subsampling: Int32 = 0, colorspace: Int32 = 0
        var source = bytes
        let header = source.withUnsafeMutableBufferPointer { buf in
            tjDecompressHeader3(handle, buf.baseAddress, UInt(buf.count), &width, &height, &subsampling, &colorspace)
        }
        guard header == 0, width > 0, height > 0, Int(width) * Int(height) <= maxPixels else {
            throw ZooError.unreadableFile(path: path, reason: "not a decodable JPEG (\(tjError(handle)))")
        }
        var pixels = [UInt8](repeating: 0, count: Int(width) * Int(height) * 3)
        let status = source.withUnsafeMutableBufferPointer { src in
            pixels.withUnsafeMutableBufferPointer { dst in
                tjDecompress2(handle, src.baseAddress, UInt(src.count), dst.baseAddress, width, 0, height,
                              Int32(TJPF_RGB.rawValue), 0)
            }
        }
        // A warning (status -1 with a recoverable error) still yields an image; a hard error does not.
        if status != 0 && tjGetErrorCode(handle) == Int32(TJERR_FATAL.rawValue) {
            throw ZooError.unreadableFile(path: path, reason: "JPEG data is corrupt (\(tjError(handle)))")
        }
        return RGBImage(width: Int(width), height: Int(height), pixels: pixels)
    }

    private static func tjError(_ handle: tjhandle) -> String {
        guard let message = tjGetErrorStr2(handle) else { return "unknown error" }
        return String(cString: message)
    }

    static func decodePNG(_ bytes: [UInt8], path: String) throws -> RGBImage {
        var image = png_image()
        image.version = UInt32(PNG_IMAGE_VERSION)
        defer { png_image_free(&image) }
        let ok = bytes.withUnsafeBytes { buf in
            png_image_begin_read_from_memory(&image, buf.baseAddress, buf.count)
        }
        guard ok != 0, image.width > 0, image.height > 0, Int(image.width) * Int(image.height) <= maxPixels else {
            throw ZooError.unreadableFile(path: path, reason: "not a decodable PNG (\(pngMessage(image)))")
        }
        // The simplified API composes alpha, expands palettes and grey, and strips 16 bits.
        image.format = UInt32(PNG_FORMAT_RGB)
        var pixels = [UInt8](repeating: 0, count: Int(image.width) * Int(image.height) * 3)
        let finished = bytes.withUnsafeBytes { _ in
            pixels.withUnsafeMutableBytes { dst in
                png_image_finish_read(&image, nil, dst.baseAddress, 0, nil)
            }
        }
        guard finished != 0 else {
            throw ZooError.unreadableFile(path: path, reason: "PNG data is corrupt (\(pngMessage(image)))")
        }
        return RGBImage(width: Int(image.width), height: Int(image.height), pixels: pixels)
    }

    private static func pngMessage(_ image: png_image) -> String {
        var message = image.message
        return withUnsafeBytes(of: &message) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
    }
}
