import Foundation
import MicromirrorKit

/// How one project is mirrored from the upstream: its rsync module, the passes (stages) that keep
/// the tree consistent while it changes, and the limits that keep a run polite and safe.
///
/// One YAML file per project in `recipes/` (installed as `/usr/share/micromirror/recipes`):
///
/// ```yaml
/// project: ubuntu
/// module: ubuntu            # rsync module on the upstream (default: the project name)
/// bwlimit: 25M              # per rsync process, rsync's units (K, M, G: powers of 1024, so 25 MiB/s); 0 for none
/// io-timeout: 600           # rsync --timeout: seconds without any I/O
/// max-delete: 10%           # a run that would delete more of the tree (or a count: 5000) is
///                           # refused before it changes anything (default 10%, at least 10 files)
/// exclude: ["*.iso.zsync"]  # for every stage
/// interval: 6h              # schedule: a run this long after the last success (default 3h),
/// jitter: 30m               # plus a random part of this (default 30m; 0 for none),
/// timeout: 4h               # and a run is stopped after this (default 6h)
/// pre-hook: [/usr/lib/micromirror/hooks/check, --quick]   # before each run (see SyncHook)
/// post-hook: [/usr/bin/report_mirror]                      # after each run, with its result
/// stages:                   # default: one stage that also deletes
///   - name: packages        # new payloads first, indexes held back, nothing deleted
///     exclude: ["Packages*", "Sources*", "Release*", "InRelease", "i18n/*"]
///     delete: false
///   - name: indexes         # then everything, and what upstream removed goes
/// ```
/// A stage may also say `links: false` (copy no symlinks in that pass). `freshness:` lists the
/// upstream files that change whenever the project does (see `freshness`).
public struct SyncRecipe: Sendable, Equatable {
    public struct Stage: Sendable, Equatable {
        public var name: String
        public var exclude: [String]
        /// Whether this pass deletes what the upstream no longer has.
        public var delete: Bool
        /// Whether this pass copies symlinks (a first pass without them lets their targets arrive
        /// first, so no link ever points at nothing: openSUSE's "Current" images).
        public var links: Bool

        public init(name: String, exclude: [String] = [], delete: Bool = true, links: Bool = true) {
            self.name = name
            self.exclude = exclude
            self.delete = delete
            self.links = links
        }
    }

    /// How much of the tree one run may delete: a count of files, or a share of those there are.
    public enum DeleteLimit: Sendable, Equatable, CustomStringConvertible {
        case count(Int)
        /// A fraction (0.1 for 10 %).
        case share(Double)

        /// A share never allows fewer than this many: a small tree may still lose a few files.
        public static let smallestShare = 10

        /// The most files a run may delete from a tree of `files`.
        public func limit(files: Int) -> Int {
            switch self {
            case .count(let count): count
            case .share(let share): max(Self.smallestShare, Int((Double(files) * share).rounded(.down)))
            }
        }

        public var description: String {
            switch self {
            case .count(let count): "\(count) files"
            case .share(let share): "\(Self.percent(share)) % of the tree"
            }
        }

        static func percent(_ share: Double) -> String {
            let value = share * 100
            return value == value.rounded() ? "\(Int(value))" : String(format: "%.1f", value)
        }
    }

    public var project: String
    public var module: String
    /// rsync `--bwlimit` (e.g. `25M`); nil for no limit.
    public var bandwidthLimit: String?
    /// rsync `--timeout`: seconds without I/O before rsync gives up.
    public var ioTimeout: Int
    /// The deletion guard: a run whose dry run would delete more is refused before it starts.
    public var maxDelete: DeleteLimit
    public var exclude: [String]
    public var stages: [Stage]
    /// Files (or directories, ending in `/`) the upstream changes whenever the project changes
    /// (Arch's `lastupdate`, Debian's `project/trace/`, Fedora's `fullfiletimelist-*`). When all
    /// are as we have them and the last run succeeded, a run fetches only these and stops: the
    /// upstream is spared walking the whole tree.
    public var freshness: [String]
    /// How often the project syncs, when it says (the node's default otherwise).
    public var interval: Duration?
    /// The random part added to each interval, when it says.
    public var jitter: Duration?
    /// How long a whole run may take before it is stopped, when it says.
    public var timeout: Duration?
    /// Run before each run; failing, it fails the run before anything changes.
    public var preHook: SyncHook?
    /// Run after each run, with its result.
    public var postHook: SyncHook?
    /// `mode: cache`: the project is not rsynced but filled on demand from `origin:` (see
    /// `CachePolicy`); nil for a mirrored project.
    public var cache: CachePolicy?
    /// A recipe in cache mode without `origin:`: the origin is the node's upstream host over HTTP,
    /// at the module's path (`http://HOST/MODULE/`), as heavy-iron mirrors serve both.
    public var cacheOriginFromUpstream = false

    /// The cache policy with its origin for a node whose upstream is `upstream` (`rsync://HOST/`);
    /// nil for a mirrored project.
    public func cachePolicy(upstream: String) -> CachePolicy? {
        guard var policy = cache else { return nil }
        if cacheOriginFromUpstream {
            let host = URL(string: upstream)?.host ?? "upstream.invalid"
            let bracketed = host.contains(":") ? "[\(host)]" : host
            policy.origin = URL(string: "http://\(bracketed)/\(module)/")!
        }
        return policy
    }

    public init(
        project: String, module: String? = nil, bandwidthLimit: String? = "25M", ioTimeout: Int = 600, maxDelete: DeleteLimit = .share(0.1), exclude: [String] = [],
        stages: [Stage] = [Stage(name: "all")], freshness: [String] = []
    ) {
        self.project = project
        self.module = module ?? project
        self.bandwidthLimit = bandwidthLimit
        self.ioTimeout = ioTimeout
        self.maxDelete = maxDelete
        self.exclude = exclude
        self.stages = stages
        self.freshness = freshness
    }

    /// Reads and checks a recipe file; every problem is reported at once with its line.
    public static func load(path: String) throws(ConfigError) -> SyncRecipe {
        try validate(YAMLConfig.load(path: path))
    }

    public static func parse(_ text: String, file: String) throws(ConfigError) -> SyncRecipe {
        try validate(YAMLConfig.parse(text, file: file))
    }

    static func validate(_ root: YAMLMapping) throws(ConfigError) -> SyncRecipe {
        var recipe = SyncRecipe(project: "")
        if let value = root.required("project"), let name = value.nonEmptyString() {
            if isName(name) { recipe.project = name } else { value.report("must be letters, digits, '.', '_' or '-'") }
        }
        recipe.module = recipe.project
        if let value = root.optional("module"), let name = value.nonEmptyString() {
            if isName(name) { recipe.module = name } else { value.report("must be letters, digits, '.', '_' or '-'") }
        }
        if let value = root.optional("bwlimit"), let text = value.nonEmptyString() {
            if text == "0" {
                recipe.bandwidthLimit = nil
            } else if text.range(of: #"^[0-9]+(\.[0-9]+)?[KMG]?$"#, options: .regularExpression) != nil {
                recipe.bandwidthLimit = text
            } else {
                value.report("expected a rate such as 25M (rsync's units: K, M, G are 1024, 1024² and 1024³ bytes per second) or 0 for none")
            }
        }
        if let value = root.optional("io-timeout"), let seconds = value.int() {
            if seconds >= 30 { recipe.ioTimeout = seconds } else { value.report("must be at least 30 seconds") }
        }
        if let value = root.optional("max-delete"), let text = value.nonEmptyString() {
            if text.hasSuffix("%"), let percent = Double(text.dropLast().trimmingCharacters(in: .whitespaces)), percent > 0, percent <= 100 {
                recipe.maxDelete = .share(percent / 100)
            } else if let count = Int(text), count >= 1 {
                recipe.maxDelete = .count(count)
            } else {
                value.report("expected a share of the tree such as 10% (more than 0, at most 100) or a count of files, at least 1")
            }
        }
        if let value = root.optional("interval"), let text = value.nonEmptyString() {
            if let interval = DurationText.parse(text), interval >= .seconds(300) { recipe.interval = interval } else {
                value.report("expected a duration of 5 minutes or more like \"6h\" or \"90m\", found \"\(text)\"")
            }
        }
        if let value = root.optional("jitter"), let text = value.nonEmptyString() {
            if text == "0" { recipe.jitter = .zero } else if let jitter = DurationText.parse(text) { recipe.jitter = jitter } else {
                value.report("expected a duration like \"30m\" or 0 for none, found \"\(text)\"")
            }
        }
        if let value = root.optional("timeout"), let text = value.nonEmptyString() {
            if let timeout = DurationText.parse(text), timeout >= .seconds(60) { recipe.timeout = timeout } else {
                value.report("expected a duration of a minute or more like \"6h\", found \"\(text)\"")
            }
        }
        for (key, path) in [("pre-hook", \SyncRecipe.preHook), ("post-hook", \SyncRecipe.postHook)] {
            guard let value = root.optional(key) else { continue }
            let command = value.stringList() ?? value.nonEmptyString().map { [$0] }
            guard let command, let program = command.first else {
                value.report("expected a command as a list: [/path/to/program, argument, ...]")
                continue
            }
            guard program.hasPrefix("/") else {
                value.report("\(program): the program must be an absolute path (hooks run without a shell or a search path)")
                continue
            }
            recipe[keyPath: path] = SyncHook(command: command)
        }
        if let value = root.optional("exclude"), let patterns = value.stringList() {
            recipe.exclude = patterns
        }
        if let value = root.optional("freshness"), let paths = value.stringList() {
            for path in paths where path.hasPrefix("/") || path.split(separator: "/").contains("..") {
                value.report("\(path): must be a path inside the module, without '..'")
            }
            recipe.freshness = paths
        }
        if let value = root.optional("stages"), let items = value.list() {
            var stages: [Stage] = []
            for (index, item) in items.enumerated() {
                guard let map = item.mapping() else { continue }
                var stage = Stage(name: "stage \(index + 1)")
                if let name = map.optional("name")?.nonEmptyString() { stage.name = name }
                if let patterns = map.optional("exclude")?.stringList() { stage.exclude = patterns }
                if let delete = map.optional("delete")?.bool() { stage.delete = delete }
                if let links = map.optional("links")?.bool() { stage.links = links }
                map.rejectUnknownKeys()
                stages.append(stage)
            }
            if items.isEmpty { value.report("needs at least one stage") }
            if let last = stages.last, !last.delete {
                value.report("the last stage must delete (delete: true), or what the upstream removed stays forever")
            }
            recipe.stages = stages
        }
        (recipe.cache, recipe.cacheOriginFromUpstream) = cachePolicy(root)
        root.rejectUnknownKeys()
        try root.diagnostics.throwIfAny()
        return recipe
    }

    /// `mode:`, `origin:` and `cache:`: the policy of a project in cache mode, nil for a mirrored one.
    private static func cachePolicy(_ root: YAMLMapping) -> (CachePolicy?, fromUpstream: Bool) {
        var mode = "mirror"
        if let value = root.optional("mode"), let text = value.nonEmptyString() {
            if ["mirror", "cache"].contains(text) { mode = text } else { value.report("expected mirror (rsync the whole project, the default) or cache (fill from origin: on demand)") }
        }
        guard mode == "cache" else {
            for key in ["origin", "cache"] where root.has(key) { root.optional(key)?.report("only for mode: cache") }
            return (nil, false)
        }
        // The rest is checked even when the origin is not usable, so every mistake is named at once.
        var policy = CachePolicy(origin: URL(string: "http://origin.invalid/")!)
        var originUsable = !root.has("origin")
        if let value = root.optional("origin"), let text = value.nonEmptyString() {
            if let url = URL(string: text.hasSuffix("/") ? text : text + "/"), ["http", "https"].contains(url.scheme ?? ""), url.host?.isEmpty == false,
                url.query == nil, url.fragment == nil
            {
                policy.origin = url
                originUsable = true
            } else {
                value.report("expected the origin's base URL for the project, http:// or https://, such as https://dl.fedoraproject.org/pub/fedora/")
            }
        }
        for key in ["stages", "max-delete", "freshness", "exclude"] where root.has(key) {
            root.optional(key)?.report("has no meaning in mode: cache (nothing is rsynced)")
        }
        if let map = root.optional("cache")?.mapping() {
            if let value = map.optional("budget"), let bytes = value.byteSize() {
                if bytes >= 1 << 20 { policy.budget = bytes } else { value.report("expected a size of at least 1M, such as 200G") }
            }
            for (key, path, smallest) in [
                ("metadata-ttl", \CachePolicy.metadataTTL, Duration.zero), ("ttl", \CachePolicy.ttl, .zero), ("origin-timeout", \CachePolicy.originTimeout, .seconds(1)),
                ("origin-retry", \CachePolicy.originRetry, .seconds(1)),
            ] {
                guard let value = map.optional(key), let text = value.nonEmptyString() else { continue }
                if text == "0", smallest == .zero { policy[keyPath: path] = .zero } else if let duration = DurationText.parse(text), duration >= smallest {
                    policy[keyPath: path] = duration
                } else {
                    value.report("expected a duration like \"30s\" or \"1h\"\(smallest == .zero ? " or 0" : " of at least a second"), found \"\(text)\"")
                }
            }
            if let patterns = map.optional("immutable")?.stringList() { policy.immutable = patterns }
            if let patterns = map.optional("revalidate")?.stringList() { policy.revalidate = patterns }
            if let value = map.optional("prepopulate"), let paths = value.stringList() {
                for path in paths where path.hasPrefix("/") || path.split(separator: "/").contains("..") || path.isEmpty {
                    value.report("\(path): must be a path below the project, without '..'")
                }
                policy.prepopulate = paths
            }
            if let prefetch = map.optional("prefetch")?.mapping() {
                if let value = prefetch.optional("top"), let count = value.int() {
                    if count >= 0 { policy.prefetchTop = count } else { value.report("expected a count of files, 0 for none") }
                }
                if let value = prefetch.optional("days"), let days = value.int() {
                    if days >= 1 { policy.prefetchDays = days } else { value.report("expected a number of days, at least 1") }
                }
                if let value = prefetch.optional("every"), let text = value.nonEmptyString() {
                    if let every = DurationText.parse(text), every >= .seconds(60) { policy.prefetchEvery = every } else {
                        value.report("expected a duration of a minute or more like \"1h\", found \"\(text)\"")
                    }
                }
                if let value = prefetch.optional("bwlimit"), let text = value.nonEmptyString() {
                    if text == "0" { policy.prefetchRate = nil } else if let rate = ByteSize.parse(text), rate > 0 { policy.prefetchRate = rate } else {
                        value.report("expected bytes per second such as 5M, or 0 for none")
                    }
                }
                prefetch.rejectUnknownKeys()
            }
            map.rejectUnknownKeys()
        }
        return (originUsable ? policy : nil, !root.has("origin"))
    }

    private static func isName(_ text: String) -> Bool {
        text.range(of: #"^[A-Za-z0-9][A-Za-z0-9._-]*$"#, options: .regularExpression) != nil
    }
}
