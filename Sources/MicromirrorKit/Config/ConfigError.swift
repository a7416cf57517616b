

/// Every problem found in one file; nothing from the file is used when this is thrown.
public struct ConfigError: Error, Sendable, CustomStringConvertible {
    public var problems: [ConfigProblem]

    public init(problems: [ConfigProblem]) { self.problems = problems }

    public var description: String {
        let count = problems.count
        let header = count == 1 ? "1 problem:" : "\(count) problems:"
        return ([header] + problems.map { "  \($0)" }).joined(separator: "\n")
    }
}
