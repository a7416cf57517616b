import NIOCore
@testable import NodeRuntimeCore
import Testing

/// The connection's states and deadlines, driven by hand-made instants (no waiting).
@Suite("Connection state machine")
struct ConnectionStateMachineTests {
    static let timeouts = ConnectionStateMachine.Timeouts(keepAlive: .seconds(2), head: .seconds(10), send: .seconds(60))
    /// An arbitrary start, so instants are plain arithmetic.
    static let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000_000)

    func at(_ seconds: Int64) -> NIODeadline { Self.t0 + .seconds(seconds) }

    @Test("an idle connection closes after the keep-alive timeout, not before")
    func idleCloses() {
        var machine = ConnectionStateMachine(timeouts: Self.timeouts)
        #expect(machine.admitted(now: at(0)) == .schedule(at(2)))
        #expect(machine.timerFired(now: at(2), mark: 0) == .close)
        #expect(machine.isClosing)
    }

    @Test("a head trickling in keeps the connection until the head timeout (slowloris)")
    func slowloris() {
        var machine = ConnectionStateMachine(timeouts: Self.timeouts)
        _ = machine.admitted(now: at(0))
        machine.read(now: at(1))
        // Bytes keep coming: the keep-alive deadline moves, the head deadline does not.
        #expect(machine.timerFired(now: at(2), mark: 0) == .schedule(at(3)))
        for second in stride(from: Int64(3), to: 10, by: 1) {
            machine.read(now: at(second))
            #expect(machine.timerFired(now: at(second), mark: 0) == .schedule(at(min(second + 2, 10))))
        }
        #expect(machine.timerFired(now: at(10), mark: 0) == .close)
    }

    @Test("a response moves the deadline without touching the timer; the next head gets keep-alive plus head time")
    func afterResponse() {
        var machine = ConnectionStateMachine(timeouts: Self.timeouts)
        _ = machine.admitted(now: at(0))
        // Armed for 2 s; a later deadline needs no timer work.
        #expect(machine.responseFinished(now: at(1), keepAlive: true) == .none)
        #expect(machine.deadline == at(3))
        #expect(machine.timerFired(now: at(2), mark: 0) == .schedule(at(3)))
        machine.read(now: at(3))
        #expect(machine.timerFired(now: at(3), mark: 0) == .schedule(at(5)))
        #expect(machine.responseFinished(now: at(4), keepAlive: false) == .none)
        #expect(machine.isClosing)
    }

    @Test("a transfer is never cut while the client takes data; a stalled one is cut after the send timeout")
    func sendTimeout() {
        var machine = ConnectionStateMachine(timeouts: Self.timeouts)
        _ = machine.admitted(now: at(0))
        // The armed keep-alive timer (2 s) comes first; its first look at the transfer counts as
        // progress, and it re-arms for the send deadline.
        #expect(machine.sendingStarted(now: at(1)) == .none)
        #expect(machine.timerFired(now: at(2), mark: 100) == .schedule(at(62)))
        // The client took more bytes by then: the transfer goes on.
        #expect(machine.timerFired(now: at(62), mark: 5000) == .schedule(at(122)))
        // A chunk completed: progress too.
        machine.progressed(now: at(100))
        #expect(machine.timerFired(now: at(122), mark: 5000) == .schedule(at(160)))
        // Nothing moved for 60 s: closed.
        #expect(machine.timerFired(now: at(160), mark: 5000) == .close)
    }

    @Test("a send timeout shorter than the armed timer moves the timer earlier")
    func earlierDeadline() {
        let short = ConnectionStateMachine.Timeouts(keepAlive: .seconds(5), head: .seconds(10), send: .seconds(1))
        var machine = ConnectionStateMachine(timeouts: short)
        #expect(machine.admitted(now: at(0)) == .schedule(at(5)))
        #expect(machine.sendingStarted(now: at(1)) == .schedule(at(2)))
        #expect(machine.timerFired(now: at(2), mark: 0) == .schedule(at(3)))
        #expect(machine.timerFired(now: at(3), mark: 0) == .close)
    }

    @Test("while an answer is made off the loop no deadline runs; afterwards the keep-alive one does")
    func preparing() {
        var machine = ConnectionStateMachine(timeouts: Self.timeouts)
        _ = machine.admitted(now: at(0))
        machine.preparingStarted()
        #expect(!machine.isWaiting)
        #expect(machine.timerFired(now: at(2), mark: 0) == .none)
        #expect(machine.armed == nil)
        #expect(machine.responseFinished(now: at(30), keepAlive: true) == .schedule(at(32)))
        #expect(machine.isWaiting)
    }

    @Test("once closing, nothing revives the connection")
    func closing() {
        var machine = ConnectionStateMachine(timeouts: Self.timeouts)
        _ = machine.admitted(now: at(0))
        _ = machine.close()
        #expect(machine.responseFinished(now: at(1), keepAlive: true) == .none)
        #expect(machine.sendingStarted(now: at(1)) == .none)
        #expect(machine.timerFired(now: at(5), mark: 0) == .none)
        #expect(machine.isClosing)
    }
}
