import Foundation

/// The one rule for where results may be written: never over the input they came from.
/// `convert`, `finetune` and `Model.save` all ask here, so a hard link, a symbolic link or a
/// `dir/../file` spelling of the input is refused the same way everywhere.
public enum OutputTarget {
    /// Whether two paths name the same file: the same path once `..` and symbolic links
    /// are resolved, or (both existing) the same device and inode, as a hard link is.
    public static func sameFile(_ a: String, _ b: String) -> Bool {
        let ua = URL(fileURLWithPath: a).standardizedFileURL.resolvingSymlinksInPath()
        let ub = URL(fileURLWithPath: b).standardizedFileURL.resolvingSymlinksInPath()
        if ua.path == ub.path { return true }
        var sa = stat(), sb = stat()
        return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino
    }

    /// Throws when writing `output` would replace `input`. `parameter` is the name of the
    /// caller's output parameter, for the message.
    public static func refuseOverwriting(input: String, output: String, parameter: String = "outputPath") throws {
        if sameFile(input, output) {
            throw ZooError.invalidParameter(
                name: parameter, message: "refusing to overwrite the input file \(input): choose another {\(parameter)}")
        }
    }
}
