import Foundation
import NIOPosix

/// The texts that change once a second (the `Date` header, the access log's timestamp), kept per
/// event-loop thread. A connection looks its thread's clock up once and then reads it without a
/// lock or a thread-local lookup per request. (`@unchecked Sendable`: only its own thread uses it.)
final class LoopClock: @unchecked Sendable {
    /// The second the texts are for.
    private(set) var second = -1
    /// IMF-fixdate for the `Date` header.
    private(set) var httpDate = ""
    /// `10/Oct/2000:13:55:36 +0000` for the access log.
    private(set) var logDate = ""

    /// Brings the texts up to the current second.
    func update() {
        let now = time(nil)
        guard now != second else { return }
        second = now
        httpDate = HTTPDate.format(now)
        logDate = AccessLog.formatCLF(now)
    }

    private static let perThread = ThreadSpecificVariable<LoopClock>()

    /// The calling thread's clock; only that thread may use it.
    static var current: LoopClock { perThread.value { LoopClock() } }
}
