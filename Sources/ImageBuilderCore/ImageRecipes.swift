import Foundation
import Logging
import MicromirrorKit
import SystemKit

/// Which projects an image can sync: the recipes it carries (`/usr/share/micromirror/recipes` in
/// slot A's read-only root, read through a read-only loop device with `dump.erofs`), or those of a
/// recipes directory (the repository's). `mm-image node check` and `node write` refuse a node file
/// naming a project without one: on the node it would sync nothing and say so only in its logs.
public struct ImageRecipes: Sendable {
    public var runner: CommandRunner
    static let dumpErofs = Tool("dump.erofs", package: "erofs-utils")
    /// Where the image keeps its recipes.
    public static let path = "/usr/share/micromirror/recipes"

    public init(logger: Logger) { self.runner = CommandRunner(logger: logger) }

    /// The projects with a recipe in the image on `target` (a disk image or a disk), from the root
    /// of slot A (where a flashed disk boots first), or of slot B when A holds none.
    public func projects(onDisk target: String) async throws -> Set<String> {
        try CommandRunner.require([Self.dumpErofs])
        return try await ImageRoot(runner: runner).withDevice(onDisk: target) { device in
            Self.names(fromListing: try await runner.run(Self.dumpErofs, ["--ls", "--path=\(Self.path)", device]))
        }
    }

    /// The projects with a recipe (`PROJECT.yaml`) in `directory`.
    public static func projects(inDirectory directory: String) throws -> Set<String> {
        Set(try RecipeFiles.list(in: directory).map { String($0.dropLast(".yaml".count)) })
    }

    /// The regular `*.yaml` entries of a `dump.erofs --ls` listing (`NID TYPE FILENAME`, type 1
    /// for a regular file), without the extension.
    static func names(fromListing listing: String) -> Set<String> {
        var names: Set<String> = []
        for line in listing.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count == 3, Int(fields[0]) != nil, fields[1] == "1", fields[2].hasSuffix(".yaml") else { continue }
            names.insert(String(fields[2].dropLast(".yaml".count)))
        }
        return names
    }

    /// The problems of a node file whose projects are not all in `known` (`source` says where
    /// the recipes were read), one per project, as `ConfigError` reports them.
    public static func problems(_ config: NodeConfig, file: String, known: Set<String>, source: String) -> [ConfigProblem] {
        config.projects.enumerated().compactMap { index, project in
            guard !known.contains(project) else { return nil }
            return ConfigProblem(
                file: file, line: nil, field: "projects[\(index)]",
                message: "\(project) has no sync recipe in \(source) (there are: \(known.sorted().joined(separator: ", "))); "
                    + "add recipes/\(project).yaml and build a new image, or drop the project"
            )
        }
    }
}
