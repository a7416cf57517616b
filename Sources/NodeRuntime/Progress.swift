import ArgumentParser
import Foundation
import Logging
import MicromirrorKit
import NodeRuntimeCore
import SystemKit

/// Progress on a terminal (one rewritten line) or plain lines in a log.
enum Progress {
    static func printer() -> @Sendable (String, Int64, Int64) -> Void {
        let terminal = isatty(STDERR_FILENO) == 1
        let last = LockedPercent()
        return { stage, done, total in
            let percent = total > 0 ? Int(done * 100 / total) : 100
            guard last.advance(stage: stage, to: percent) else { return }
            let line = "\(stage): \(ByteSize.format(done)) of \(ByteSize.format(total)) (\(percent) %)"
            FileHandle.standardError.write(Data((terminal ? "\r\u{1B}[K" + line + (done >= total ? "\n" : "") : line + "\n").utf8))
        }
    }

    /// Prints a stage's progress only when its percentage moves (10 % steps off a terminal).
    final class LockedPercent: @unchecked Sendable {
        private let lock = NSLock()
        private var seen: [String: Int] = [:]
        private let step = isatty(STDERR_FILENO) == 1 ? 1 : 10
        func advance(stage: String, to percent: Int) -> Bool {
            lock.withLock {
                let previous = seen[stage] ?? -step
                guard percent >= previous + step || (percent == 100 && previous != 100) else { return false }
                seen[stage] = percent
                return true
            }
        }
    }
}
