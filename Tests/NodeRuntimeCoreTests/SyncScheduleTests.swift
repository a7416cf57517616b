import NodeRuntimeCore
import Testing

/// A repeatable random source (SplitMix64) so jitter is the same on every run.
struct SeededRandom: RandomNumberGenerator, Sendable {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// The sync schedule driven by hand-made instants: no sleeping, no real time.
@Suite("Sync schedule")
struct SyncScheduleTests {
    typealias Schedule = SyncSchedule<ContinuousClock.Instant>
    let start = ContinuousClock.now

    func at(_ seconds: Int64) -> ContinuousClock.Instant { start.advanced(by: .seconds(seconds)) }

    func policy(interval: Int64 = 3600, jitter: Int64 = 0, maxConcurrent: Int = 2) -> Schedule.Policy {
        var policy = Schedule.Policy()
        policy.interval = .seconds(interval)
        policy.jitter = .seconds(jitter)
        policy.retryBase = .seconds(300)
        policy.retryMax = .seconds(3600)
        policy.maxConcurrent = maxConcurrent
        return policy
    }

    @Test("every project runs once at start, then every interval; never two at once")
    func interval() {
        var schedule = Schedule(projects: ["a"], policy: policy(), now: at(0))
        #expect(schedule.due(now: at(0)) == ["a"])
        #expect(schedule.due(now: at(1)) == [], "already running")
        schedule.finished("a", succeeded: true, now: at(100))
        #expect(schedule.nextDue == at(3700))
        #expect(schedule.due(now: at(3699)) == [])
        #expect(schedule.due(now: at(3700)) == ["a"])
    }

    @Test("a project never synced is due at once; one synced before waits out the start-up jitter")
    func neverSyncedFirst() {
        var schedule = Schedule(
            projects: ["old", "new"], policy: policy(jitter: 1800), now: at(0), neverSynced: ["new"], random: SeededRandom(state: 7)
        )
        #expect(schedule.due(now: at(0)) == ["new"])
        guard case .waiting(let until) = schedule.states["old"] else { Issue.record("old is not waiting"); return }
        #expect(until > at(0) && until <= at(1800))
    }

    @Test("after a restart each project picks up from its last run: one synced a minute ago waits out its interval, an overdue one runs soon, a failed one keeps its backoff")
    func restart() {
        var policy = policy(interval: 3 * 3600, jitter: 1800)
        policy.timings["arch"] = .init(interval: .seconds(3600), jitter: .zero)
        var schedule = Schedule(
            projects: ["recent", "overdue", "failing", "arch"], policy: policy, now: at(0),
            previous: [
                "recent": .succeeded(ago: .seconds(60)), "overdue": .succeeded(ago: .seconds(5 * 3600)),
                "failing": .failed(ago: .seconds(100), failures: 3), "arch": .succeeded(ago: .seconds(600)),
            ],
            random: SeededRandom(state: 3)
        )
        // Synced a minute ago: the rest of its 3 h, plus up to its jitter; not now.
        let recent = schedule.nextRun("recent")!
        #expect(recent >= at(3 * 3600 - 60) && recent <= at(3 * 3600 - 60 + 1800) && schedule.triggers["recent"] == .interval)
        // Overdue: within overdueJitterMax, as a start-up run.
        let overdue = schedule.nextRun("overdue")!
        #expect(overdue <= at(300) && schedule.triggers["overdue"] == .startUp)
        // Third failure in a row: 300 s doubled twice, counted from 100 s ago; the backoff goes on from there.
        #expect(schedule.nextRun("failing") == at(1200 - 100) && schedule.triggers["failing"] == .retry && schedule.failures["failing"] == 3)
        // Its recipe's own interval (1 h, no jitter): 50 min left.
        #expect(schedule.nextRun("arch") == at(3000))
        #expect(schedule.due(now: at(1100)).contains("failing"))
        schedule.finished("failing", succeeded: false, now: at(1200))
        #expect(schedule.nextRun("failing") == at(1200 + 2400))
        // A recipe's interval holds after each success too.
        #expect(schedule.due(now: at(3000)).contains("arch"))
        schedule.finished("arch", succeeded: true, now: at(3100))
        #expect(schedule.nextRun("arch") == at(3100 + 3600))
    }

    @Test("at most maxConcurrent projects run; the longest-waiting start first")
    func concurrency() {
        var schedule = Schedule(projects: ["a", "b", "c"], policy: policy(maxConcurrent: 2), now: at(0))
        schedule.push("c", now: at(0))
        let first = schedule.due(now: at(10))
        #expect(first.count == 2)
        #expect(schedule.due(now: at(11)) == [])
        schedule.finished(first[0], succeeded: true, now: at(20))
        let next = schedule.due(now: at(21))
        #expect(next.count == 1 && !first.contains(next[0]))
    }

    @Test("pushes while running collapse into one follow-up run right after")
    func pushes() {
        var schedule = Schedule(projects: ["ubuntu"], policy: policy(), now: at(0))
        #expect(schedule.due(now: at(0)) == ["ubuntu"])
        for second in 1...5 { schedule.push("ubuntu", now: at(Int64(second))) }
        schedule.finished("ubuntu", succeeded: true, now: at(50))
        #expect(schedule.nextDue == at(50), "the follow-up is due at once, not after the interval")
        #expect(schedule.due(now: at(50)) == ["ubuntu"])
        schedule.finished("ubuntu", succeeded: true, now: at(60))
        #expect(schedule.nextDue == at(3660), "one follow-up for five pushes")
        schedule.push("ubuntu", now: at(100))
        #expect(schedule.due(now: at(100)) == ["ubuntu"], "a push while waiting makes it due now")
        schedule.push("unknown", now: at(101))
        #expect(schedule.states["unknown"] == nil)
    }

    @Test("each run knows why it starts: start-up, interval, push (also a follow-up), retry")
    func triggers() {
        var schedule = Schedule(projects: ["a"], policy: policy(), now: at(0))
        #expect(schedule.triggers["a"] == .startUp && schedule.nextRun("a") != nil)
        #expect(schedule.due(now: at(3600)) == ["a"] && schedule.triggers["a"] == .startUp && schedule.nextRun("a") == nil)
        schedule.finished("a", succeeded: false, now: at(3600))
        #expect(schedule.triggers["a"] == .retry)
        schedule.push("a", now: at(3601))
        #expect(schedule.triggers["a"] == .push)
        #expect(schedule.due(now: at(3601)) == ["a"])
        schedule.push("a", now: at(3602))
        schedule.finished("a", succeeded: true, now: at(3610))
        #expect(schedule.triggers["a"] == .push && schedule.nextRun("a") == at(3610), "the follow-up of a push during the run")
        #expect(schedule.due(now: at(3610)) == ["a"])
        schedule.finished("a", succeeded: true, now: at(3620))
        #expect(schedule.triggers["a"] == .interval)
    }

    @Test("failures back off, doubling to the cap; a success resets the backoff")
    func backoff() {
        var schedule = Schedule(projects: ["a"], policy: policy(), now: at(0))
        var now: Int64 = 0
        var delays: [Int64] = []
        for _ in 0..<6 {
            #expect(schedule.due(now: at(now)) == ["a"])
            schedule.finished("a", succeeded: false, now: at(now))
            let due = schedule.nextDue!
            delays.append(at(now).duration(to: due).components.seconds)
            now = at(0).duration(to: due).components.seconds
        }
        #expect(delays == [300, 600, 1200, 2400, 3600, 3600])
        #expect(schedule.due(now: at(now)) == ["a"])
        schedule.finished("a", succeeded: true, now: at(now))
        #expect(schedule.failures["a"] == nil)
        #expect(at(now).duration(to: schedule.nextDue!) == .seconds(3600))
    }

    @Test("jitter spreads start times within its bound, repeatably for one seed")
    func jitter() {
        let projects = (0..<50).map { "p\($0)" }
        let one = Schedule(projects: projects, policy: policy(jitter: 1800), now: at(0), random: SeededRandom(state: 7))
        let two = Schedule(projects: projects, policy: policy(jitter: 1800), now: at(0), random: SeededRandom(state: 7))
        var offsets: Set<Int64> = []
        for project in projects {
            guard case .waiting(let until) = one.states[project] else {
                Issue.record("\(project) not waiting")
                continue
            }
            let offset = at(0).duration(to: until).components.seconds
            #expect((0...1800).contains(offset))
            offsets.insert(offset)
            #expect(one.states[project] == two.states[project])
        }
        #expect(offsets.count > 40, "starts are spread, not all at one second")
    }
}
