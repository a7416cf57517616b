import Foundation
import MicromirrorKit

/// What the sponsor's or the NOC's screen shows at the login prompt: name, addresses, slot, errors.
/// Written to `/etc/issue.d/50-micromirror.issue` (the overlay makes /etc writable), which agetty shows above the prompt.
public enum ConsoleReport {
    public static let path = "/etc/issue.d/50-micromirror.issue"

    public static func render(hostname: String, addresses: [String], slot: String, problems: [String]) -> String {
        var lines = ["micromirror \(hostname)  (slot \(slot))"]
        for address in addresses { lines.append("  address \(address)") }
        if problems.isEmpty {
            lines.append("  node file applied")
        } else {
            lines.append("  NODE FILE PROBLEMS — contact the FCIX NOC:")
            lines += problems.map { "    \($0)" }
        }
        // agetty expands backslash escapes in issue files; keep ours literal.
        return lines.map { $0.replacingOccurrences(of: "\\", with: "\\\\") }.joined(separator: "\n") + "\n\n"
    }
}
