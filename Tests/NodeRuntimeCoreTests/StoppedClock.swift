/// A clock on which no time passes: every sleep lasts until its task is cancelled. A service run
/// on it does only what something other than its timers makes it do (a push, a request).
struct StoppedClock: Clock {
    struct Instant: InstantProtocol {
        var offset: Duration
        func advanced(by duration: Duration) -> Instant { Instant(offset: offset + duration) }
        func duration(to other: Instant) -> Duration { other.offset - offset }
        static func < (a: Instant, b: Instant) -> Bool { a.offset < b.offset }
    }

    var now: Instant { Instant(offset: .zero) }
    var minimumResolution: Duration { .nanoseconds(1) }

    func sleep(until deadline: Instant, tolerance: Duration?) async throws {
        // Not even a deadline of now is reached: time stands still.
        while true { try await Task.sleep(for: .seconds(3600)) }
    }
}
