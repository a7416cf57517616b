import NIOConcurrencyHelpers
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle

/// Open client channels, so shutdown can wait for them and close the stragglers.
final class ChildChannels: Sendable {
    private let channels = NIOLockedValueBox([ObjectIdentifier: any Channel]())

    func add(_ channel: any Channel) {
        let id = ObjectIdentifier(channel)
        channels.withLockedValue { $0[id] = channel }
        channel.closeFuture.whenComplete { _ in _ = self.channels.withLockedValue { $0.removeValue(forKey: id) } }
    }

    var openCount: Int { channels.withLockedValue { $0.count } }

    /// Returns when every channel open now has closed, or after `limit`, whichever comes first;
    /// cancellation does not cut the wait short.
    func allClosed(within limit: TimeAmount, on eventLoop: any EventLoop) async {
        let closing = channels.withLockedValue { $0.values.map(\.closeFuture) }
        guard !closing.isEmpty else { return }
        let done = eventLoop.makePromise(of: Void.self)
        let timeout = eventLoop.scheduleTask(in: limit) { done.succeed() }
        EventLoopFuture.andAllComplete(closing, on: eventLoop).whenComplete { _ in
            timeout.cancel()
            done.succeed()
        }
        try? await done.futureResult.get()
    }

    func closeAll() {
        for channel in channels.withLockedValue({ Array($0.values) }) { channel.close(promise: nil) }
    }
}
