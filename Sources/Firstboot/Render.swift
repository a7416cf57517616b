import ArgumentParser
import Foundation
import Logging
import FirstbootCore
import MicromirrorKit
import SystemKit

struct Render: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Write the files apply would write into DIR, for review. Applies nothing.")

    @Option(help: "Node file.") var config: String
    @Option(help: "Output directory.") var out: String
    @Option(help: "MAC of the uplink, when the node file matches the first wired NIC.") var mac: String?

    func run() async throws {
        let node: NodeConfig
        do { node = try NodeConfig.load(path: config) } catch {
            FileHandle.standardError.write(Data("mm-firstboot: \(config): \(error)\n".utf8))
            throw ExitCode(1)
        }
        var resolvedMAC = mac
        if case .mac(let m) = node.interface { resolvedMAC = m }
        for file in Firstboot.render(node, mac: resolvedMAC) {
            let target = out + file.path
            try FileManager.default.createDirectory(atPath: (target as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try AtomicFile.write(file.content, to: target, mode: file.mode)
            print(target)
        }
    }
}
