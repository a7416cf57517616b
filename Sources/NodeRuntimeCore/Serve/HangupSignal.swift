import Dispatch
import Foundation

/// Calls a handler on every SIGHUP while it is alive (the daemon's "reopen your log files"), so
/// the serving service handles it itself and needs nothing from the command line that starts it.
/// Dispatch's signal source takes the signal over from its default action (terminate) for as long
/// as one is registered.
final class HangupSignal: @unchecked Sendable {  // the source is only activated and cancelled, both thread-safe
    private let source: any DispatchSourceSignal

    /// Returns once the signal is being watched: a SIGHUP sent after this reaches `handler`.
    init(_ handler: @escaping @Sendable () -> Void) async {
        let source = DispatchSource.makeSignalSource(signal: SIGHUP, queue: DispatchQueue(label: "micromirror.sighup"))
        self.source = source
        source.setEventHandler(handler: handler)
        await withCheckedContinuation { (registered: CheckedContinuation<Void, Never>) in
            source.setRegistrationHandler { registered.resume() }
            source.activate()
        }
    }

    /// Stops watching.
    func cancel() { source.cancel() }

    deinit { source.cancel() }
}
