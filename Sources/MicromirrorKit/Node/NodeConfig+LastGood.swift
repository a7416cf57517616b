extension NodeConfig {
    /// The node file at `path`, or, when it is invalid, the last good one beside it
    /// (`NodePaths.lastGood`): a broken node file never half-applies, the last one that worked
    /// keeps the node going. `problems` says what is wrong with the file at `path` when the last
    /// good one was used; with no usable last good one, the file's own problems are thrown.
    public static func loadOrLastGood(path: String) throws(ConfigError) -> (config: NodeConfig, problems: ConfigError?) {
        do {
            return (try load(path: path), nil)
        } catch {
            guard let previous = try? load(path: NodePaths.lastGood(besides: path)) else { throw error }
            return (previous, error)
        }
    }
}
