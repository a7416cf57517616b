import Foundation
import Logging
import MicromirrorKit

/// What `mm-node run` starts on a node, from its node file. Today: the mirror's HTTP server.
/// Syncing, MQTT, telemetry and updates join this list as they are built.
public enum NodeRuntime {
    public struct Options: Sendable {
        public var config = NodeConfig.defaultPath
        /// Where the mirrored projects live (on the data partition).
        public var root = "/srv/mirror"
        public var listen: [(host: String, port: Int)] = [("::", 80)]
        public var accessLog: String? = "/srv/log/access.log"
        public init() {}
    }

    /// The serving configuration for a node: its DSCP choice, its name in listings, a directory per project.
    public static func serveConfiguration(_ node: NodeConfig, options: Options) throws -> ServeConfiguration {
        let fm = FileManager.default
        for project in node.projects {
            try fm.createDirectory(atPath: options.root + "/" + project, withIntermediateDirectories: true)
        }
        if let log = options.accessLog {
            try fm.createDirectory(atPath: (log as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        }
        var configuration = ServeConfiguration(root: options.root, listen: options.listen)
        configuration.tos = node.dscp.tos
        configuration.sponsor = node.hostname
        configuration.accessLogPath = options.accessLog
        return configuration
    }
}
