/// Every architecture the tool knows, in the order `zoo list` prints them.
public enum ArchitectureRegistry {
    public static let all: [Architecture] = {
        var list: [Architecture] = [
            .lenet5(classic: false), .lenet5(classic: true),
            .alexnetTorchvision, .alexnetCaffe(grouped: true), .alexnetCaffe(grouped: false),
            .zfnet,
        ]
        for depth in [11, 13, 16, 19] { list.append(.vgg(depth: depth, batchNorm: false)) }
        for depth in [11, 13, 16, 19] { list.append(.vgg(depth: depth, batchNorm: true)) }
        list += [.googlenetTorchvision, .googlenetCaffe]
        for depth in [18, 34, 50, 101, 152] { list.append(.resnetTorchvision(depth)) }
        list += [.resnet50Keras]
        for depth in [50, 101, 152] { list.append(.resnetCaffe(depth)) }
        return list
    }()

    /// Looks an id up, case-insensitively, by id or alias; a weights preset's id
    /// (`resnet50-caffe2`) finds the architecture it is a preset of.
    public static func find(_ id: String) throws -> Architecture {
        let key = id.lowercased()
        if let arch = all.first(where: { $0.id == key || $0.aliases.contains(key) }) {
            return arch
        }
        if let preset = WeightsPreset.find(key), let arch = all.first(where: { $0.id == preset.architecture }) {
            return arch
        }
        throw ZooError.unknownArchitecture(id, known: all.map(\.id) + WeightsPreset.all.filter(\.isNamedVariant).map(\.id))
    }
}
