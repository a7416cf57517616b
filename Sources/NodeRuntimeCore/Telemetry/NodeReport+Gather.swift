import Foundation
import MicromirrorKit
import SystemKit

extension NodeReport {
    /// Gathers the report from the node file, the update state file, the sync state and the kernel.
    public static func gather(
        node: NodeConfig, update: UpdateState?, projects: [StatusPage.Project], network: [NetworkCounters], dataPath: String, limits: Limits? = nil, now: Date = Date()
    ) -> NodeReport {
        let boot = update?.boot
        let entry = boot.flatMap { boot in boot.entries.compactMap(BootEntry.parse(fileName:)).first { $0.slot == boot.slot } }
        return NodeReport(
            node: node.hostname, sponsor: node.sponsor.name, version: boot?.version, build: boot?.buildNumber, slot: boot?.slot,
            blessed: entry.map { !$0.counting }, rolledBack: update?.rolledBack ?? [],
            addresses: [node.ipv4?.cidr, node.ipv6?.cidr].compactMap { $0 },
            projects: projects.map { Project(name: $0.name, state: $0.syncingSince != nil ? "syncing" : $0.state, lastSuccess: $0.lastSuccess, stale: $0.stale, size: $0.size) },
            sentBytes: network.reduce(0) { $0 + $1.sentBytes }, receivedBytes: network.reduce(0) { $0 + $1.receivedBytes },
            dataFreeBytes: try? DiskSpace.available(at: dataPath), time: now, limits: limits
        )
    }

    /// The limits a node runs with: the server's and the rsync daemon's built-in caps, the sync
    /// schedule's concurrency and each project's recipe's bandwidth limit.
    public static func limits(recipes: [String: SyncRecipe]) -> Limits {
        let serve = ServeConfiguration(root: "/", listen: [])
        return Limits(
            httpConnections: serve.maxConnections, httpConnectionsPerAddress: serve.maxConnectionsPerAddress,
            rsyncConnections: RsyncdConfig(projects: [], root: "/", node: "").maxConnections,
            concurrentSyncs: SyncSchedule<ContinuousClock.Instant>.Policy().maxConcurrent,
            syncBandwidth: recipes.compactMapValues { $0.bandwidthLimit }
        )
    }

}
