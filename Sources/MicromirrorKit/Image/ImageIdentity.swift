import Foundation

/// Who an image is: written by `mm-image build` into the image as `NodePaths.imageIdentity`, read
/// by `mm-node` (status, updates) and `mm-firstboot` (the console report).
public struct ImageIdentity: Codable, Sendable, Equatable {
    public var name: String
    public var version: String
    public var buildNumber: Int64
    public var hardware: String

    public init(name: String, version: String, buildNumber: Int64, hardware: String) {
        self.name = name
        self.version = version
        self.buildNumber = buildNumber
        self.hardware = hardware
    }

    /// The file's text: sorted keys, so the same identity is the same bytes (reproducible builds).
    public var json: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        // Encoding four plain fields cannot fail.
        return String(decoding: try! encoder.encode(self), as: UTF8.self) + "\n"
    }

    /// Reads the identity at `path`; a missing or malformed file is a `ConfigError` naming it.
    public static func load(path: String = NodePaths.imageIdentity) throws(ConfigError) -> ImageIdentity {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError(problems: [ConfigProblem(file: path, line: nil, field: "", message: "missing or unreadable image identity")])
        }
        do {
            return try JSONDecoder().decode(ImageIdentity.self, from: data)
        } catch {
            throw ConfigError(problems: [ConfigProblem(file: path, line: nil, field: "", message: "not an image identity: \(error)")])
        }
    }
}
