import MicromirrorKit

/// What goes into an OS image: distribution, packages, units, files, kernel options, partition sizes.
/// Read from `images/*.yaml`.
public struct ImageDefinition: Sendable, Equatable {
    public struct FileCopy: Sendable, Equatable {
        /// Path relative to the definition's directory.
        public var source: String
        /// Absolute path in the image.
        public var target: String
        public var mode: Int
    }

    public var name: String
    public var suite: String
    public var components: [String]
    /// Extra apt sources lines; when empty the build machine's own apt sources are used.
    public var mirror: String?
    public var packages: [String]
    public var enableUnits: [String]
    public var disableUnits: [String]
    /// Units linked to /dev/null: they never run, whatever wants them.
    public var maskUnits: [String]
    public var files: [FileCopy]
    public var kernelOptions: [String]
    public var sizes: DiskLayout.Sizes
    /// The file it was read from.
    public var path: String

    /// Reads and validates a definition, reporting every problem at once.
    public static func load(path: String) throws(ConfigError) -> ImageDefinition {
        let root = try YAMLConfig.load(path: path)
        let d = root.diagnostics
        let name = root.required("name")?.nonEmptyString()
        if let name, !name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }) {
            root.required("name")?.report("only letters, digits and '-' are allowed (it becomes file names)")
        }
        var suite: String?
        var components: [String]?
        var mirror: String?
        if let dist = root.required("distribution")?.mapping() {
            suite = dist.required("suite")?.nonEmptyString()
            components = dist.optional("components")?.stringList() ?? ["main"]
            mirror = dist.optional("mirror")?.nonEmptyString()
            dist.rejectUnknownKeys()
        }
        let packages = root.required("packages")?.stringList()
        if let list = root.optional("packages")?.list() {
            var seen: Set<String> = []
            for item in list {
                guard let package = item.string() else { continue }
                if !PackageName.isValid(package) {
                    item.report("\"\(package)\" is not a valid Debian package name")
                }
                if !seen.insert(package).inserted { item.report("\"\(package)\" is listed twice") }
            }
        }
        var enable: [String] = []
        var disable: [String] = []
        var mask: [String] = []
        if let units = root.optional("units")?.mapping() {
            enable = units.optional("enable")?.stringList() ?? []
            disable = units.optional("disable")?.stringList() ?? []
            mask = units.optional("mask")?.stringList() ?? []
            units.rejectUnknownKeys()
        }
        var files: [FileCopy] = []
        if let list = root.optional("files")?.list() {
            for item in list {
                guard let entry = item.mapping() else { continue }
                let source = entry.required("source")?.nonEmptyString()
                let target = entry.required("target")?.nonEmptyString()
                let modeText = entry.optional("mode")?.string() ?? "0644"
                let mode = Int(modeText, radix: 8)
                if mode == nil { entry.optional("mode")?.report("expected an octal mode like 0644, found \"\(modeText)\"") }
                if let target, !target.hasPrefix("/") { entry.required("target")?.report("must be an absolute path in the image") }
                entry.rejectUnknownKeys()
                if let source, let target, let mode { files.append(FileCopy(source: source, target: target, mode: mode)) }
            }
        }
        var kernelOptions: [String] = []
        if let kernel = root.optional("kernel")?.mapping() {
            kernelOptions = kernel.optional("options")?.stringList() ?? []
            kernel.rejectUnknownKeys()
        }
        var sizes: DiskLayout.Sizes?
        if let parts = root.required("partitions")?.mapping() {
            let esp = parts.required("esp")?.byteSize()
            let rootSize = parts.required("root")?.byteSize()
            let config = parts.required("config")?.byteSize()
            let data = parts.required("data")?.byteSize()
            parts.rejectUnknownKeys()
            if let esp, let rootSize, let config, let data {
                sizes = DiskLayout.Sizes(esp: esp, root: rootSize, config: config, data: data)
                if let layoutError = Result(catching: { () throws(LayoutError) in try DiskLayout(sizes: sizes!) }).failure {
                    d.report(line: parts.line, field: "partitions", layoutError.description)
                }
            }
        }
        root.rejectUnknownKeys()
        try d.throwIfAny()
        return ImageDefinition(
            name: name!, suite: suite!, components: components!, mirror: mirror, packages: packages!,
            enableUnits: enable, disableUnits: disable, maskUnits: mask, files: files, kernelOptions: kernelOptions,
            sizes: sizes!, path: path
        )
    }
}
