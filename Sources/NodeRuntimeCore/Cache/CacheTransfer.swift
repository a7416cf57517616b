import Foundation
import NIOConcurrencyHelpers
import NIOCore

/// One transfer from the origin into the cache, shared by every request for the same file while
/// it runs (single flight).
///
/// The body goes to a file outside the served tree as it arrives; readers send from that file with
/// sendfile up to what has been written and wait for more, each at its own pace: a slow or vanished
/// client neither slows nor stops the transfer. The file is published (renamed into the tree) only
/// when complete and checked.
final class CacheTransfer: Sendable {
    /// What the origin said, once it said it.
    struct Head: Sendable, Equatable {
        /// The body's length, when the origin sent `Content-Length`.
        var length: Int64?
        var lastModified: String?
        var etag: String?
    }

    /// Where the transfer is.
    enum Phase: Sendable {
        /// Waiting for the origin's answer.
        case asking
        /// 200: the body is arriving.
        case streaming(Head)
        /// Every byte arrived and was checked (and, unless it did not fit, published).
        case complete(Head)
        /// The origin has nothing newer (304): the cached copy is current.
        case notModified
        /// The origin does not have the file (404, 410).
        case gone
        /// The origin redirects to another path of the project (below it, percent-encoded as sent).
        case redirect(String)
        case failed(CacheFailure)
    }

    /// The path below the project.
    let relative: String
    /// Where the body is written while it arrives.
    let partialPath: String
    /// A descriptor on the partial file for readers (each sends from its own `dup`); valid after
    /// publishing too, and closed with the transfer.
    let readDescriptor: Int32
    /// Whether this transfer was started by prefetching (bandwidth-limited while nobody waits on it).
    let isPrefetch: Bool

    private struct State {
        var phase = Phase.asking
        var written: Int64 = 0
        var readers = 0
        var waiters: [(any EventLoop, @Sendable () -> Void)] = []
    }

    private let state = NIOLockedValueBox(State())

    init(relative: String, partialPath: String, readDescriptor: Int32, isPrefetch: Bool) {
        self.relative = relative
        self.partialPath = partialPath
        self.readDescriptor = readDescriptor
        self.isPrefetch = isPrefetch
    }

    deinit { close(readDescriptor) }

    var phase: Phase { state.withLockedValue { $0.phase } }
    /// Body bytes written to the partial file so far.
    var written: Int64 { state.withLockedValue { $0.written } }
    /// Requests reading (or waiting for) this transfer.
    var readers: Int { state.withLockedValue { $0.readers } }

    /// The phase and the bytes written, read together.
    var progress: (phase: Phase, written: Int64) { state.withLockedValue { ($0.phase, $0.written) } }

    func attach() { state.withLockedValue { $0.readers += 1 } }
    func detach() { state.withLockedValue { $0.readers -= 1 } }

    /// Runs `body` on `eventLoop` at the next change (more bytes, a new phase), or at once when
    /// `isNews` already holds for the current progress.
    func whenChanged(on eventLoop: any EventLoop, unless isNews: @Sendable (Phase, Int64) -> Bool, _ body: @escaping @Sendable () -> Void) {
        let now = state.withLockedValue { state -> Bool in
            if isNews(state.phase, state.written) { return true }
            state.waiters.append((eventLoop, body))
            return false
        }
        if now { eventLoop.execute(body) }
    }

    /// The writer's side: more bytes are in the file.
    func wrote(_ count: Int) {
        let waiters = state.withLockedValue { state -> [(any EventLoop, @Sendable () -> Void)] in
            state.written += Int64(count)
            defer { state.waiters.removeAll(keepingCapacity: true) }
            return state.waiters
        }
        for (loop, body) in waiters { loop.execute(body) }
    }

    /// The writer's side: a new phase (the origin answered, the body ended or failed).
    func enter(_ phase: Phase) {
        let waiters = state.withLockedValue { state -> [(any EventLoop, @Sendable () -> Void)] in
            state.phase = phase
            defer { state.waiters.removeAll() }
            return state.waiters
        }
        for (loop, body) in waiters { loop.execute(body) }
    }
}

/// Why the origin could not give a file: what the client is told (502 or 504) and logged.
struct CacheFailure: Error, Sendable, CustomStringConvertible {
    /// 504 when the origin did not answer in time, 502 otherwise.
    var timedOut: Bool
    var description: String
    /// Whether it says the origin is failing (requests then get the cache's copy or 502/504 for a
    /// while without asking it); a file that failed its check does not.
    var originFailing = true
}
