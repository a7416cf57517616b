import Foundation

/// The sync recipes `--recipes` points at. A wrong path must not quietly ship an image that syncs nothing.
public enum RecipeFiles {
    /// The `*.yaml` names in `directory`, sorted; an error naming the path when it is not a
    /// directory or holds no recipe.
    public static func list(in directory: String) throws -> [String] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) else {
            throw BuildError(stage: "inputs", "--recipes \(directory) does not exist; point it at the recipes/ directory of the checkout")
        }
        guard isDirectory.boolValue else {
            throw BuildError(stage: "inputs", "--recipes \(directory) is not a directory; point it at the recipes/ directory of the checkout")
        }
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory)
        } catch {
            throw BuildError(stage: "inputs", "--recipes \(directory) cannot be read: \(error.localizedDescription)")
        }
        let recipes = names.filter { $0.hasSuffix(".yaml") }.sorted()
        guard !recipes.isEmpty else {
            throw BuildError(stage: "inputs", "--recipes \(directory) holds no recipe (*.yaml); the image would sync nothing")
        }
        return recipes
    }
}
