/// When each project syncs: a pure state machine over a clock's instants. The sync service feeds
/// it the time and events (a push from the upstream, a run that finished) and starts what `due`
/// returns; tests drive it with any instants they like.
///
/// - Every project runs at most once at a time, and at most `maxConcurrent` projects run at once
///   (upstreams cap connections per address).
/// - Each project runs every `interval` plus a random part of `jitter` (its recipe's, or the
///   policy's), so a fleet does not hit the upstream at the same minute (Arch's mirror rules ask
///   for a random minute). After a restart it picks up from each project's last run.
/// - A push (the upstream says the project changed) makes it due now; pushes that arrive while it
///   runs collapse into one follow-up run right after, so the last change is never missed.
/// - A failed run is retried after `retryBase`, doubling up to `retryMax`; a success resets that.
public struct SyncSchedule<Instant: InstantProtocol & Sendable>: Sendable where Instant.Duration == Duration {
    public struct Policy: Sendable, Equatable {
        public var interval: Duration = .seconds(3 * 3600)
        public var jitter: Duration = .seconds(30 * 60)
        public var retryBase: Duration = .seconds(5 * 60)
        public var retryMax: Duration = .seconds(3600)
        public var maxConcurrent = 2
        /// A project's own interval and jitter (its recipe's), instead of the two above.
        public var timings: [String: Timing] = [:]

        public init() {}

        /// The interval and jitter of `project`.
        public func timing(_ project: String) -> Timing { timings[project] ?? Timing(interval: interval, jitter: jitter) }
    }

    /// How often one project runs.
    public struct Timing: Sendable, Equatable {
        public var interval: Duration
        public var jitter: Duration

        public init(interval: Duration, jitter: Duration) {
            self.interval = interval
            self.jitter = jitter
        }
    }

    /// How a project's last run (in an earlier life of the node) ended, and how long ago: where
    /// the schedule picks up after a restart.
    public enum Previous: Sendable, Equatable {
        case succeeded(ago: Duration)
        /// `failures`: the failed runs in a row it ended.
        case failed(ago: Duration, failures: Int)
    }

    /// At start-up an overdue project waits at most this random part of its jitter (the fleet
    /// does not all come back at the same second, nor does a late project wait long).
    public static var overdueJitterMax: Duration { .seconds(300) }

    /// Why a project's run starts.
    public enum Trigger: String, Sendable, Equatable, Codable {
        /// The node started (the first run of this life).
        case startUp = "start-up"
        /// The interval since the last success passed.
        case interval
        /// The upstream said it changed (including a push that came during a run).
        case push
        /// The last run failed; this is its retry after the backoff.
        case retry
        /// `mm-node sync` by hand.
        case manual
    }

    /// Where a project stands.
    public enum State: Sendable, Equatable {
        /// Waiting; due at the instant.
        case waiting(until: Instant)
        /// Running; `followUp` when a push arrived meanwhile.
        case running(followUp: Bool)
    }

    public let policy: Policy
    public private(set) var states: [String: State] = [:]
    /// Consecutive failures per project (for the backoff).
    public private(set) var failures: [String: Int] = [:]
    /// Why each waiting project will run, and for a running one why it started.
    public private(set) var triggers: [String: Trigger] = [:]
    /// Order in which due projects start: the longest-waiting first.
    private var order: [String]
    private var random: any RandomNumberGenerator & Sendable

    /// Where each project starts:
    /// - in `neverSynced`: due at once (a new node has nothing to serve until they arrive;
    ///   `maxConcurrent` still holds);
    /// - with a `previous` success: due when its interval since that run is up (no resync of a
    ///   project synced a minute ago), or soon (a random part of `overdueJitterMax`) when overdue;
    /// - with a `previous` failure: its retry, the backoff counted from that run;
    /// - otherwise: `now` plus a random part of its jitter (a node that boots does not sync
    ///   everything in the same second).
    public init(
        projects: [String], policy: Policy, now: Instant, neverSynced: Set<String> = [], previous: [String: Previous] = [:],
        random: any RandomNumberGenerator & Sendable = SystemRandomNumberGenerator()
    ) {
        self.policy = policy
        self.order = projects
        self.random = random
        for project in projects {
            triggers[project] = .startUp
            if neverSynced.contains(project) {
                states[project] = .waiting(until: now)
                continue
            }
            switch previous[project] {
            case .succeeded(let ago):
                let remaining = policy.timing(project).interval - ago
                if remaining > .zero {
                    states[project] = .waiting(until: now.advanced(by: remaining + randomJitter(project)))
                    triggers[project] = .interval
                } else {
                    states[project] = .waiting(until: now.advanced(by: randomJitter(project, atMost: Self.overdueJitterMax)))
                }
            case .failed(let ago, let count):
                failures[project] = max(1, count)
                states[project] = .waiting(until: now.advanced(by: max(.zero, backoff(max(1, count)) - ago)))
                triggers[project] = .retry
            case nil:
                states[project] = .waiting(until: now.advanced(by: randomJitter(project)))
            }
        }
    }

    /// The upstream says `project` changed.
    public mutating func push(_ project: String, now: Instant) {
        switch states[project] {
        case .waiting: states[project] = .waiting(until: now)
        case .running: states[project] = .running(followUp: true)
        case nil: return  // not a project of this node
        }
        if case .waiting = states[project] { triggers[project] = .push }
    }

    /// The projects to start now, marked running; the caller must report each with `finished`.
    public mutating func due(now: Instant) -> [String] {
        var running = states.values.filter { if case .running = $0 { true } else { false } }.count
        let ready = order.compactMap { project -> (String, Instant)? in
            if case .waiting(let until) = states[project], until <= now { return (project, until) }
            return nil
        }
        .sorted { $0.1 < $1.1 }
        var started: [String] = []
        for (project, _) in ready where running < policy.maxConcurrent {
            states[project] = .running(followUp: false)
            running += 1
            started.append(project)
        }
        return started
    }

    /// A run of `project` ended.
    public mutating func finished(_ project: String, succeeded: Bool, now: Instant) {
        guard case .running(let followUp) = states[project] else { return }
        if succeeded {
            failures[project] = nil
        } else {
            failures[project, default: 0] += 1
        }
        if followUp {
            states[project] = .waiting(until: now)
            triggers[project] = .push
        } else if succeeded {
            states[project] = .waiting(until: now.advanced(by: policy.timing(project).interval + randomJitter(project)))
            triggers[project] = .interval
        } else {
            states[project] = .waiting(until: now.advanced(by: backoff(failures[project] ?? 1)))
            triggers[project] = .retry
        }
    }

    /// When `project` runs next (nil while it runs, or for a project this node does not carry).
    public func nextRun(_ project: String) -> Instant? {
        if case .waiting(let until) = states[project] { until } else { nil }
    }

    /// When the next waiting project falls due (nil when none waits).
    public var nextDue: Instant? {
        states.values.compactMap { if case .waiting(let until) = $0 { until } else { nil } }.min()
    }

    /// `retryBase` doubled per consecutive failure, capped at `retryMax`.
    func backoff(_ failures: Int) -> Duration {
        var delay = policy.retryBase
        for _ in 1..<max(1, failures) where delay < policy.retryMax { delay = delay * 2 }
        return min(delay, policy.retryMax)
    }

    private mutating func randomJitter(_ project: String, atMost cap: Duration? = nil) -> Duration {
        let jitter = policy.timing(project).jitter
        let (seconds, _) = (cap.map { min($0, jitter) } ?? jitter).components
        guard seconds > 0 else { return .zero }
        return .seconds(Int64.random(in: 0...seconds, using: &random))
    }
}
