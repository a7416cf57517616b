import NIOCore

/// The life of one HTTP connection and its deadlines, apart from any I/O: the handler tells it
/// what happened (with the time) and carries out the action it returns, as swift-nio's and
/// hummingbird's state machines do. Time is passed in, so tests drive it without waiting.
///
/// Deadlines (one timer per connection, moved only when it must fire earlier):
/// - between requests, the keep-alive timeout: no bytes for that long and the connection closes;
/// - once a head has begun, the whole head must arrive within the head timeout however slowly
///   its bytes trickle in (slowloris); after a response the next head gets keep-alive + head time;
/// - while a response is being sent, the send timeout (nginx's `send_timeout`): the client must
///   take some of it within that time (checked when the timer fires: two to three send timeouts
///   pass before a stalled client is cut), or the connection closes; a transfer that moves is never cut;
/// - while an answer is being made off the event loop, none (the work always finishes).
struct ConnectionStateMachine {
    struct Timeouts: Equatable {
        var keepAlive: TimeAmount
        var head: TimeAmount
        var send: TimeAmount
    }

    enum State: Equatable {
        /// Not admitted yet.
        case idle
        /// Waiting for (or parsing) the next request head, since `since`, which may take `allowance` in all.
        case waiting(since: NIODeadline, allowance: TimeAmount)
        /// An answer is being made off the event loop; later requests wait.
        case preparing
        /// A response body is being handed to the kernel; `lastProgress` is when the client last took some.
        case sending(lastProgress: NIODeadline)
        /// Going away: nothing more is read or answered.
        case closing
    }

    /// What the handler does with its one timer.
    enum TimerAction: Equatable {
        case none
        /// Arm the timer for this instant (cancelling one armed for later).
        case schedule(NIODeadline)
        /// Close the connection.
        case close
    }

    let timeouts: Timeouts
    private(set) var state = State.idle
    private var lastRead = NIODeadline.uptimeNanoseconds(0)
    /// When the armed timer fires, or nil when none is armed.
    private(set) var armed: NIODeadline?
    /// The handler's count of bytes the client took, as last seen while sending; nil until the
    /// first look after a transfer began (taking it at the start would cost a syscall per response).
    private var progressMark: UInt64?

    init(timeouts: Timeouts) { self.timeouts = timeouts }

    var isWaiting: Bool { if case .waiting = state { true } else { false } }
    var isSending: Bool { if case .sending = state { true } else { false } }
    var isClosing: Bool { state == .closing }

    /// The connection was admitted: wait for its first request.
    mutating func admitted(now: NIODeadline) -> TimerAction {
        lastRead = now
        state = .waiting(since: now, allowance: timeouts.head)
        return arm()
    }

    /// Refused, failed, closed by either side: from now on nothing happens.
    mutating func close() -> TimerAction {
        state = .closing
        armed = nil
        return .none
    }

    /// Bytes arrived.
    mutating func read(now: NIODeadline) { lastRead = now }

    /// A response whose body goes out over time (sendfile) began.
    mutating func sendingStarted(now: NIODeadline) -> TimerAction {
        guard !isClosing else { return .none }
        state = .sending(lastProgress: now)
        progressMark = nil
        return arm()
    }

    /// The answer is being made off the event loop.
    mutating func preparingStarted() {
        guard !isClosing else { return }
        state = .preparing
    }

    /// Part of the body was taken by the client (a chunk completed).
    mutating func progressed(now: NIODeadline) {
        if case .sending = state { state = .sending(lastProgress: now) }
    }

    /// A response was handed over: wait for the next request, or close.
    mutating func responseFinished(now: NIODeadline, keepAlive: Bool) -> TimerAction {
        guard !isClosing else { return .none }
        guard keepAlive else { return close() }
        state = .waiting(since: now, allowance: timeouts.head + timeouts.keepAlive)
        return arm()
    }

    /// The timer fired; `mark` is the handler's progress counter (bytes the client took), read
    /// only while sending. The first look at a transfer counts as progress (nothing to compare
    /// with), so a stalled client is cut after two to three send timeouts.
    mutating func timerFired(now: NIODeadline, mark: UInt64) -> TimerAction {
        armed = nil
        if case .sending = state, mark != progressMark {
            progressMark = mark
            state = .sending(lastProgress: now)
        }
        guard let deadline else { return .none }
        if now >= deadline {
            state = .closing
            return .close
        }
        return arm()
    }

    /// When the current state's time runs out, if it can.
    var deadline: NIODeadline? {
        switch state {
        case .idle, .preparing, .closing:
            return nil
        case .waiting(let since, let allowance):
            return min(max(lastRead, since) + timeouts.keepAlive, since + allowance)
        case .sending(let lastProgress):
            return lastProgress + timeouts.send
        }
    }

    /// Arms the timer for the current deadline unless one armed earlier will do: firing early only
    /// re-arms, so a later deadline never moves the timer (no timer work per request).
    private mutating func arm() -> TimerAction {
        guard let deadline else { return .none }
        if let armed, armed <= deadline { return .none }
        armed = deadline
        return .schedule(deadline)
    }
}
