import AsyncHTTPClient
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import SystemKit

/// One project in cache mode: the files local users asked for, kept on mm-data under a budget and
/// filled from the project's origin on demand (seed 004's method of operation).
///
/// - A fresh cached file is served like a mirrored one (sendfile from the tree).
/// - A missing file is fetched once, however many ask at the same moment (`CacheTransfer`), and
///   streamed to all of them while it is written; it enters the tree only complete and checked.
/// - A file due for revalidation is asked about with a conditional request: 304 serves the copy,
///   200 replaces it, 404 drops it.
/// - While the origin fails, cached files are served stale (`X-Cache: STALE`, `/status`) and the
///   rest get 502 or 504 at once for a short while instead of each waiting on the origin.
/// - Over the budget, the least recently used files go; never one being sent or fetched.
///
/// Layout under the cache root: `PROJECT/…` (served), `.partial/PROJECT/N` (transfers in flight,
/// removed at start), `.state/PROJECT.json` (request counts for prefetching).
public final class PullThroughCache: Sendable {
    public let project: String
    public let policy: CachePolicy
    /// Resolves paths in the project's cache directory, beneath it only.
    let resolver: MirrorFileResolver
    let directory: String
    let partialDirectory: String
    let popularityPath: String
    private let client: HTTPClient
    private let logger: Logger
    private let state: NIOLockedValueBox<State>
    /// Paths whose requests are counted each day (for prefetching).
    static let pathsCountedPerDay = 20_000
    /// Transfers from the origin at once (more wait for a connection).
    static let originConnections = 32
    /// Eviction frees down to this share of the budget, so it does not run for every new file.
    static let lowWater = 0.95

    /// What the cache knows of one published file.
    struct Entry {
        var size: Int64
        /// Seconds (monotonic, or from the file's atime at start) of the last request.
        var lastUse: Double
        /// When the origin last confirmed it (nil: not since the server started).
        var validated: ContinuousClock.Instant?
        var etag: String?
        /// Requests sending it now.
        var pins = 0
        /// How long it stays fresh, from the policy's patterns (worked out at its first use).
        var freshness: CachePolicy.Freshness?
    }

    /// Counts since the server started, for `/status` and `/metrics`.
    public struct Counts: Sendable, Equatable, Codable {
        /// Served from the cache without asking the origin.
        public var hits = 0
        /// Asked the origin, which confirmed the copy (304).
        public var revalidated = 0
        /// Sent from the origin (a request joining a transfer in flight included).
        public var misses = 0
        /// Answered 404 because the origin does not have the file.
        public var notFound = 0
        /// Served from the cache while the origin failed.
        public var stale = 0
        /// Answered 502 or 504.
        public var errors = 0
        /// Body bytes taken from the origin.
        public var originBytes: Int64 = 0
        public var evicted = 0
        /// Files fetched or revalidated by prefetching.
        public var prefetched = 0
    }

    /// The cache at one moment, for `/status` and `/metrics`.
    public struct Summary: Sendable, Equatable, Codable {
        public var origin: String
        public var files: Int
        public var bytes: Int64
        public var budget: Int64
        public var counts: Counts
        /// Requests answered from the cache (hits, confirmed and stale) over all requests.
        public var hitRatio: Double?
        /// Why the origin is failing, and since when; nil while it answers.
        public var originError: String?
        public var originFailingSince: Date?
        public var transfers: Int
        public var lastPrefetch: Date?
    }

    private struct State {
        var entries: [String: Entry] = [:]
        var used: Int64 = 0
        /// Bytes announced by transfers not yet published.
        var reserved: Int64 = 0
        var inflight: [String: CacheTransfer] = [:]
        var counts = Counts()
        var originRetryAt: ContinuousClock.Instant?
        var originError: (text: String, since: Date)?
        var nextPartial = 0
        /// Requests per day (days since 1970) and path, for prefetching.
        var popularity: [Int: [String: Int]] = [:]
        var lastPrefetch: Date?
        var tasks: [Int: Task<Void, Never>] = [:]
    }

    /// Opens (making what is missing) the project's cache under `cacheRoot`, forgets transfers an
    /// earlier run left, and takes stock of what is cached.
    public init(project: String, policy: CachePolicy, cacheRoot: String, logger: Logger) throws {
        self.project = project
        self.policy = policy
        self.logger = logger
        directory = cacheRoot + "/" + project
        partialDirectory = cacheRoot + "/.partial/" + project
        popularityPath = cacheRoot + "/.state/" + project + ".json"
        for path in [cacheRoot, directory, partialDirectory, cacheRoot + "/.state"] {
            try Self.makeDirectory(path)
        }
        // Only the project's directory is served; the others must not be readable by "others".
        chmod(cacheRoot + "/.partial", 0o700)
        chmod(cacheRoot + "/.state", 0o700)
        for name in (try? FileManager.default.contentsOfDirectory(atPath: partialDirectory)) ?? [] {
            unlink(partialDirectory + "/" + name)
        }
        resolver = try MirrorFileResolver(root: directory)
        var configuration = HTTPClient.Configuration(
            redirectConfiguration: .disallow,
            timeout: .init(connect: .seconds(5), read: TimeAmount(policy.originTimeout)),
            decompression: .disabled
        )
        configuration.httpVersion = .http1Only
        // AsyncHTTPClient's default of 8 connections per host would queue the ninth miss behind
        // eight ISO downloads; each transfer is one file, so this bounds files fetched at once.
        configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: Self.originConnections)
        client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        var initial = State()
        (initial.entries, initial.used) = Self.scan(directory)
        initial.popularity = Self.loadPopularity(popularityPath)
        state = NIOLockedValueBox(initial)
        logger.info(
            "cache opened", metadata: ["project": "\(project)", "files": "\(initial.entries.count)", "bytes": "\(initial.used)", "origin": "\(policy.origin)"]
        )
    }

    /// Stops every transfer and the HTTP client.
    public func shutdown() async {
        let tasks = state.withLockedValue { Array($0.tasks.values) }
        for task in tasks { task.cancel() }
        for task in tasks { await task.value }
        savePopularity()
        try? await client.shutdown()
    }

    // MARK: - Requests

    /// What to do for a request of `relative` (a path below the project), decided on the event loop.
    enum Lookup {
        /// Serve the cached file: it is fresh (the lease, when asked for, keeps it from eviction while it is sent).
        case fresh(CacheLease?)
        /// Ask the origin (`answer`): not cached, or due for revalidation.
        case ask
    }

    /// A request for `relative` arrived: tells whether the cached copy (when there is one, `size`
    /// from the file) may be served as it is, and if so counts it (for prefetching) and, with
    /// `pin`, keeps it from eviction until the lease is dropped.
    func lookup(_ relative: String, cachedSize: Int64?, pin: Bool = true) -> Lookup {
        guard let size = cachedSize else { return .ask }
        let now = Self.monotonicSeconds()
        return state.withLockedValue { state in
            var entry = state.entries[relative] ?? {
                // On disk but not known (put there by hand, or a scan that missed it): account for it.
                state.used += size
                return Entry(size: size, lastUse: now)
            }()
            entry.lastUse = now
            // Matched against the patterns once per file, not per request.
            let freshness = entry.freshness ?? policy.freshness(of: relative)
            entry.freshness = freshness
            let fresh: Bool
            switch freshness {
            case .immutable: fresh = true
            case .revalidate(let after):
                fresh = after > .zero && entry.validated.map { ContinuousClock.now - $0 < after } == true
            }
            if fresh {
                if pin { entry.pins += 1 }
                state.counts.hits += 1
                count(relative, in: &state)
            }
            state.entries[relative] = entry
            return fresh ? .fresh(pin ? CacheLease(cache: self, relative: relative) : nil) : .ask
        }
    }

    /// The answer to a request the cache could not serve at once.
    enum Answer {
        /// Serve the cached file (`stale`: the origin could not be asked).
        case cached(stale: Bool, lease: CacheLease)
        /// Send the body from a transfer (in flight or just complete).
        case stream(CacheTransfer, CacheTransfer.Head)
        /// The origin does not have it (and the cache no longer does).
        case gone
        /// The origin sends the client elsewhere in the project (the path below the project).
        case redirect(String)
        case failure(CacheFailure)
    }

    /// Asks the origin about `relative` (joining a transfer in flight) and answers on `eventLoop`
    /// once it said enough: its head, 304, 404 or a failure.
    func answer(_ relative: String, on eventLoop: any EventLoop) -> EventLoopFuture<Answer> {
        let promise = eventLoop.makePromise(of: Answer.self)
        switch start(relative, prefetch: false) {
        case .immediate(let answer):
            promise.succeed(answer)
        case .transfer(let transfer):
            transfer.attach()
            // Everything below runs on `eventLoop`: the first answer wins, once.
            let answered = NIOLoopBoundBox(false, eventLoop: eventLoop)
            @Sendable func finish(_ answer: @autoclosure () -> Answer) {
                guard !answered.value else { return }
                answered.value = true
                transfer.detach()
                promise.succeed(answer())
            }
            @Sendable func check() {
                // The head is enough, unless it has no length: then the whole body is waited for.
                @Sendable func answerable(_ phase: CacheTransfer.Phase, _: Int64) -> Bool {
                    switch phase {
                    case .asking: false
                    case .streaming(let head): head.length != nil
                    default: true
                    }
                }
                guard answerable(transfer.phase, 0) else {
                    transfer.whenChanged(on: eventLoop, unless: answerable) { check() }
                    return
                }
                finish(settle(relative, transfer))
            }
            check()
            // A transfer still waiting for a connection to the origin (all of them busy) after the
            // origin's timeout: this client is answered 504 rather than kept waiting; the transfer goes on.
            eventLoop.scheduleTask(in: TimeAmount(policy.originTimeout) + .seconds(5)) { [self] in
                guard case .asking = transfer.phase, !answered.value else { return }
                state.withLockedValue { $0.counts.errors += 1 }
                finish(.failure(CacheFailure(timedOut: true, description: "\(relative): no answer from the origin \(policy.origin.absoluteString) within \(policy.originTimeout)", originFailing: false)))
            }
        }
        return promise.futureResult
    }

    private enum Start {
        case immediate(Answer)
        case transfer(CacheTransfer)
    }

    /// Joins the transfer of `relative` in flight or starts one (a conditional one when a copy is
    /// cached); while the origin is failing, answers from what is cached instead.
    private func start(_ relative: String, prefetch: Bool) -> Start {
        let cached = resolver.currentInfo(relative: relative) != nil
        let outcome = state.withLockedValue { state -> (Start, CacheTransfer?, (etag: String?, modified: Int?)?) in
            if let transfer = state.inflight[relative] {
                return (.transfer(transfer), nil, nil)
            }
            if let retry = state.originRetryAt, ContinuousClock.now < retry {
                let since = state.originError.map { " for \(Int(Date().timeIntervalSince($0.since))) s" } ?? ""
                let last = state.originError?.text ?? "?"
                let why = "the origin \(policy.origin.absoluteString) is failing\(since) (asked again in at most \(policy.originRetry)); last: \(last)"
                if cached {
                    state.counts.stale += 1
                    state.entries[relative, default: Entry(size: 0, lastUse: Self.monotonicSeconds())].pins += 1
                    return (.immediate(.cached(stale: true, lease: CacheLease(cache: self, relative: relative))), nil, nil)
                }
                state.counts.errors += 1
                return (.immediate(.failure(CacheFailure(timedOut: last.contains("did not answer in time"), description: "\(relative): \(why)"))), nil, nil)
            }
            state.nextPartial += 1
            let partial = partialDirectory + "/\(state.nextPartial)"
            let fd = open(partial, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
            guard fd >= 0 else {
                state.counts.errors += 1
                return (.immediate(.failure(CacheFailure(timedOut: false, description: "cannot write the cache (\(partial)): \(String(cString: strerror(errno)))"))), nil, nil)
            }
            let transfer = CacheTransfer(relative: relative, partialPath: partial, readDescriptor: fd, isPrefetch: prefetch)
            state.inflight[relative] = transfer
            let validators: (String?, Int?)? = cached ? (state.entries[relative]?.etag, resolver.currentInfo(relative: relative)?.modified) : nil
            return (.transfer(transfer), transfer, validators)
        }
        if let transfer = outcome.1 {
            let id = transfer.readDescriptor
            let task = Task { [self] in
                await fetch(transfer, validators: outcome.2)
                state.withLockedValue { state in
                    if state.inflight[relative] === transfer { state.inflight[relative] = nil }
                    state.tasks[Int(id)] = nil
                }
            }
            state.withLockedValue { state in
                // The task may have ended already (and must not be kept then).
                if state.inflight[relative] === transfer { state.tasks[Int(id)] = task }
            }
        }
        return outcome.0
    }

    /// The answer once a transfer has left `.asking`.
    private func settle(_ relative: String, _ transfer: CacheTransfer) -> Answer {
        switch transfer.phase {
        case .asking:
            preconditionFailure("settle before the origin answered")
        case .streaming(let head), .complete(let head):
            state.withLockedValue { state in
                state.counts.misses += 1
                count(relative, in: &state)
            }
            return .stream(transfer, head)
        case .notModified:
            return state.withLockedValue { state in
                state.counts.revalidated += 1
                count(relative, in: &state)
                state.entries[relative, default: Entry(size: 0, lastUse: Self.monotonicSeconds())].pins += 1
                return .cached(stale: false, lease: CacheLease(cache: self, relative: relative))
            }
        case .gone:
            state.withLockedValue { $0.counts.notFound += 1 }
            return .gone
        case .redirect(let target):
            state.withLockedValue { $0.counts.notFound += 1 }
            return .redirect(target)
        case .failed(let failure):
            return state.withLockedValue { state in
                if resolver.currentInfo(relative: relative) != nil {
                    state.counts.stale += 1
                    state.entries[relative, default: Entry(size: 0, lastUse: Self.monotonicSeconds())].pins += 1
                    return .cached(stale: true, lease: CacheLease(cache: self, relative: relative))
                }
                state.counts.errors += 1
                return .failure(failure)
            }
        }
    }

    /// A lease ended: the file may be evicted again.
    func release(_ relative: String) {
        state.withLockedValue { state in
            if let pins = state.entries[relative]?.pins, pins > 0 { state.entries[relative]?.pins = pins - 1 }
        }
    }

    // MARK: - The origin

    /// One transfer: ask the origin, stream the body into the partial file, check, publish.
    private func fetch(_ transfer: CacheTransfer, validators: (etag: String?, modified: Int?)?) async {
        let relative = transfer.relative
        let url = policy.origin.absoluteString + relative.split(separator: "/", omittingEmptySubsequences: false).map { DirectoryListing.percentEncode(String($0)) }.joined(separator: "/")
        var reserved: Int64 = 0
        do {
            var request = HTTPClientRequest(url: url)
            request.headers.add(name: "User-Agent", value: "micromirror-cache/1")
            if let validators {
                if let etag = validators.etag { request.headers.add(name: "If-None-Match", value: etag) }
                if let modified = validators.modified { request.headers.add(name: "If-Modified-Since", value: HTTPDate.format(modified)) }
            }
            let response = try await client.execute(request, deadline: .now() + .hours(24))
            switch response.status.code {
            case 200:
                break
            case 304 where validators != nil:
                originAnswered()
                state.withLockedValue { state in
                    state.entries[relative]?.validated = .now
                    if transfer.isPrefetch { state.counts.prefetched += 1 }
                }
                transfer.enter(.notModified)
                unlink(transfer.partialPath)
                return
            case 404, 410:
                originAnswered()
                drop(relative)
                logger.info("gone from the origin; dropped from the cache", metadata: ["project": "\(project)", "path": "\(relative)"])
                transfer.enter(.gone)
                unlink(transfer.partialPath)
                return
            case 300..<400:
                originAnswered()
                // A redirect within the project (a directory asked for without its slash) is passed
                // on as the same path here; one elsewhere is not followed: only what the configured
                // origin itself serves is cached.
                let location = response.headers.first(name: "location") ?? ""
                if !location.isEmpty, let target = URL(string: location, relativeTo: URL(string: url))?.absoluteString, target.hasPrefix(policy.origin.absoluteString),
                    target != url
                {
                    transfer.enter(.redirect(String(target.dropFirst(policy.origin.absoluteString.count))))
                    unlink(transfer.partialPath)
                    return
                }
                throw CacheFailure(
                    timedOut: false, description: "\(url): the origin redirects (\(response.status.code)) to \(location); point origin: at the final location",
                    originFailing: false
                )
            case 400..<500:
                originAnswered()
                throw CacheFailure(timedOut: false, description: "\(url): the origin answered \(response.status.code) \(response.status.reasonPhrase)", originFailing: false)
            default:
                throw CacheFailure(timedOut: response.status.code == 504, description: "\(url): the origin answered \(response.status.code) \(response.status.reasonPhrase)")
            }
            let length = response.headers.first(name: "content-length").flatMap { Int64($0) }
            let head = CacheTransfer.Head(length: length, lastModified: response.headers.first(name: "last-modified"), etag: response.headers.first(name: "etag"))
            let keep = (length ?? 0) <= policy.budget
            if let length, keep {
                reserved = length
                makeRoom(for: length)
            }
            transfer.enter(.streaming(head))
            let expected = Self.expectedDigest(relative: relative, headers: response.headers)
            let hasher = expected == nil ? nil : SHA256Hasher()
            let started = ContinuousClock.now
            var total: Int64 = 0
            for try await chunk in response.body {
                try Task.checkCancellation()
                // Writing may block (a disk behind on dirty pages): on the thread pool, not on a
                // thread of the cooperative pool the whole process shares.
                let (fd, offset) = (transfer.readDescriptor, total)
                try await NIOThreadPool.singleton.runIfActive { try chunk.withUnsafeReadableBytes { try Self.writeAll(fd, $0, at: offset) } }
                if let hasher { chunk.withUnsafeReadableBytes { hasher.update($0) } }
                total += Int64(chunk.readableBytes)
                if let length, total > length { throw CacheFailure(timedOut: false, description: "\(url): the origin sent more than its Content-Length \(length)") }
                transfer.wrote(chunk.readableBytes)
                state.withLockedValue { $0.counts.originBytes += Int64(chunk.readableBytes) }
                if transfer.isPrefetch, let rate = policy.prefetchRate, transfer.readers == 0 {
                    // Prefetching within its bandwidth; a request waiting on the file lifts the limit.
                    let due = started + .seconds(Double(total) / Double(rate))
                    if due > .now { try await Task.sleep(until: due, clock: .continuous) }
                }
            }
            if let length, total != length {
                throw CacheFailure(timedOut: false, description: "\(url): the transfer ended after \(total) of \(length) bytes")
            }
            if let expected, let hasher {
                let got = hasher.finalizeHex()
                if got != expected { throw CacheFailure(timedOut: false, description: "\(url): SHA-256 \(got), expected \(expected)", originFailing: false) }
            }
            originAnswered()
            if keep {
                do {
                    let (fd, partial, target) = (transfer.readDescriptor, transfer.partialPath, directory + "/" + relative)
                    try await NIOThreadPool.singleton.runIfActive { try Self.publish(fd, partial: partial, to: target, under: self.directory, lastModified: head.lastModified) }
                    record(relative, size: total, etag: head.etag)
                } catch {
                    // The body is whole and checked: the clients get it; only the cache goes without.
                    unlink(transfer.partialPath)
                    logger.error("cannot keep a fetched file in the cache", metadata: ["project": "\(project)", "path": "\(relative)", "why": "\(error)"])
                }
            } else {
                unlink(transfer.partialPath)
                logger.notice("larger than the cache's budget; served, not kept", metadata: ["project": "\(project)", "path": "\(relative)", "bytes": "\(total)"])
            }
            state.withLockedValue { state in
                state.reserved -= reserved
                if transfer.isPrefetch { state.counts.prefetched += 1 }
            }
            reserved = 0
            transfer.enter(.complete(head))
        } catch {
            unlink(transfer.partialPath)
            if reserved > 0 { state.withLockedValue { $0.reserved -= reserved } }
            let failure = Self.failure(error, url: url)
            // A transfer cut on our side (shutdown) says nothing about the origin.
            if !(error is CancellationError), failure.originFailing { originFailed(failure) }
            logger.warning("origin transfer failed", metadata: ["project": "\(project)", "path": "\(relative)", "why": "\(failure)"])
            transfer.enter(.failed(failure))
        }
    }

    /// Moves a complete, checked file into the tree: on disk first (a power cut must not leave a
    /// published file with holes), readable by the server's readers, its mtime the origin's
    /// `Last-Modified`. Blocking.
    private static func publish(_ fd: Int32, partial: String, to target: String, under directory: String, lastModified: String?) throws {
        guard fdatasync(fd) == 0, fchmod(fd, 0o644) == 0 else { throw CacheFailure(timedOut: false, description: "cannot write \(partial): \(String(cString: strerror(errno)))", originFailing: false) }
        if let text = lastModified, let modified = HTTPDate.parse(text) {
            var times = [timespec(tv_sec: Int(time(nil)), tv_nsec: 0), timespec(tv_sec: modified, tv_nsec: 0)]
            futimens(fd, &times)
        }
        try makeDirectory((target as NSString).deletingLastPathComponent, under: directory)
        guard rename(partial, target) == 0 else {
            throw CacheFailure(timedOut: false, description: "cannot publish \(target): \(String(cString: strerror(errno)))", originFailing: false)
        }
    }

    /// Records a file just published (replacing what was there).
    private func record(_ relative: String, size: Int64, etag: String?) {
        state.withLockedValue { state in
            var entry = state.entries[relative] ?? Entry(size: 0, lastUse: Self.monotonicSeconds())
            state.used += size - entry.size
            entry.size = size
            entry.validated = .now
            entry.etag = etag
            entry.lastUse = Self.monotonicSeconds()
            state.entries[relative] = entry
        }
    }

    /// Removes a file the origin no longer has.
    private func drop(_ relative: String) {
        state.withLockedValue { state in
            if let entry = state.entries.removeValue(forKey: relative) { state.used -= entry.size }
        }
        unlink(directory + "/" + relative)
    }

    /// Frees room for `incoming` bytes: least recently used first, never a file being sent.
    private func makeRoom(for incoming: Int64) {
        let victims = state.withLockedValue { state -> [String] in
            state.reserved += incoming
            guard state.used + state.reserved > policy.budget else { return [] }
            let target = Int64(Double(policy.budget) * Self.lowWater) - state.reserved
            var victims: [String] = []
            for (path, entry) in state.entries.sorted(by: { $0.value.lastUse < $1.value.lastUse }) {
                if state.used <= target { break }
                guard entry.pins == 0, state.inflight[path] == nil else { continue }
                state.entries[path] = nil
                state.used -= entry.size
                state.counts.evicted += 1
                victims.append(path)
            }
            return victims
        }
        for path in victims { unlink(directory + "/" + path) }
        if !victims.isEmpty { logger.info("evicted from the cache", metadata: ["project": "\(project)", "files": "\(victims.count)"]) }
    }

    private func originAnswered() {
        state.withLockedValue { state in
            if state.originError != nil { logger.notice("the origin answers again", metadata: ["project": "\(project)"]) }
            state.originError = nil
            state.originRetryAt = nil
        }
    }

    private func originFailed(_ failure: CacheFailure) {
        state.withLockedValue { state in
            state.originError = (failure.description, state.originError?.since ?? Date())
            state.originRetryAt = .now + policy.originRetry
        }
    }

    // MARK: - Status

    public func summary() -> Summary {
        state.withLockedValue { state in
            let c = state.counts
            let answered = c.hits + c.revalidated + c.stale
            let all = answered + c.misses + c.errors + c.notFound
            return Summary(
                origin: policy.origin.absoluteString, files: state.entries.count, bytes: state.used, budget: policy.budget, counts: c,
                hitRatio: all == 0 ? nil : Double(answered) / Double(all), originError: state.originError?.text, originFailingSince: state.originError?.since,
                transfers: state.inflight.count, lastPrefetch: state.lastPrefetch
            )
        }
    }

    // MARK: - Prefetching

    /// The prepopulate list and the files asked for most in the last `prefetchDays` days.
    func prefetchCandidates(today: Int = Int(Date().timeIntervalSince1970 / 86400)) -> [String] {
        let top = state.withLockedValue { state -> [String] in
            var totals: [String: Int] = [:]
            for (day, counts) in state.popularity where day > today - policy.prefetchDays {
                for (path, count) in counts { totals[path, default: 0] += count }
            }
            return totals.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.prefix(policy.prefetchTop).map(\.key)
        }
        var seen = Set<String>()
        return (policy.prepopulate + top).filter { seen.insert($0).inserted }
    }

    /// One prefetch round: each candidate not cached is fetched, each due for revalidation is
    /// revalidated, one at a time within the bandwidth limit. Stops when the origin fails.
    public func prefetch() async {
        var fetched = 0
        for relative in prefetchCandidates() {
            if Task.isCancelled { break }
            if resolver.currentInfo(relative: relative) != nil {
                if case .immutable = policy.freshness(of: relative) { continue }
                let due = state.withLockedValue { state -> Bool in
                    guard case .revalidate(let after) = policy.freshness(of: relative), let validated = state.entries[relative]?.validated else { return true }
                    return ContinuousClock.now - validated >= after
                }
                if !due { continue }
            }
            guard case .transfer(let transfer) = start(relative, prefetch: true) else { break }
            let phase = await Self.settled(transfer)
            fetched += 1
            if case .failed = phase { break }
        }
        state.withLockedValue { $0.lastPrefetch = Date() }
        savePopularity()
        if fetched > 0 { logger.info("prefetched", metadata: ["project": "\(project)", "files": "\(fetched)"]) }
    }

    /// Prefetches every `prefetchEvery` (the first round a minute after start) until cancelled.
    public func prefetchLoop(firstAfter: Duration = .seconds(60), every: Duration? = nil) async {
        var wait = firstAfter
        while !Task.isCancelled {
            do { try await Task.sleep(for: wait) } catch { return }
            await prefetch()
            wait = every ?? policy.prefetchEvery
        }
    }

    /// Waits until a transfer ended (complete, 304, 404 or failed).
    static func settled(_ transfer: CacheTransfer) async -> CacheTransfer.Phase {
        let loop = MultiThreadedEventLoopGroup.singleton.any()
        while true {
            switch transfer.phase {
            case .asking, .streaming:
                let seen = transfer.written
                await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                    transfer.whenChanged(on: loop, unless: { phase, written in
                        switch phase {
                        case .asking, .streaming: written != seen
                        default: true
                        }
                    }) { done.resume() }
                }
            case let phase:
                return phase
            }
        }
    }

    // MARK: - Helpers

    /// Counts a request served (from the cache or the origin: never one for a path the origin does
    /// not have) for prefetching.
    private func count(_ relative: String, in state: inout State) {
        let day = Int(Date().timeIntervalSince1970 / 86400)
        if state.popularity[day] == nil {
            // A new day: forget what is older than the window.
            state.popularity = state.popularity.filter { $0.key > day - policy.prefetchDays }
        }
        // Bounded: at most this many paths a day are told apart (about 2 MiB of memory).
        if state.popularity[day, default: [:]].count < Self.pathsCountedPerDay || state.popularity[day]?[relative] != nil {
            state.popularity[day, default: [:]][relative, default: 0] += 1
        }
    }

    private func savePopularity() {
        let snapshot = state.withLockedValue { state in state.popularity.map { (String($0.key), $0.value) } }
        guard let data = try? JSONEncoder().encode(Dictionary(uniqueKeysWithValues: snapshot)) else { return }
        try? AtomicFile.write(Array(data), to: popularityPath, mode: 0o600)
    }

    private static func loadPopularity(_ path: String) -> [Int: [String: Int]] {
        guard let data = FileManager.default.contents(atPath: path), let decoded = try? JSONDecoder().decode([String: [String: Int]].self, from: data) else { return [:] }
        return Dictionary(uniqueKeysWithValues: decoded.compactMap { key, value in Int(key).map { ($0, value) } })
    }

    /// Every file in the project's directory, its size and last access.
    private static func scan(_ directory: String) -> ([String: Entry], Int64) {
        var entries: [String: Entry] = [:]
        var used: Int64 = 0
        guard let walker = FileManager.default.enumerator(atPath: directory) else { return ([:], 0) }
        let offset = monotonicSeconds() - Date().timeIntervalSince1970
        while let relative = walker.nextObject() as? String {
            var info = stat()
            guard lstat(directory + "/" + relative, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { continue }
            let size = Int64(info.st_size)
            // Access times before the start map onto the monotonic clock's past.
            entries[relative] = Entry(size: size, lastUse: Double(info.st_atim.tv_sec) + offset)
            used += size
        }
        return (entries, used)
    }

    /// Seconds on a monotonic clock (for least-recently-used order).
    static func monotonicSeconds() -> Double {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
    }

    /// The SHA-256 the file must have, when its path (apt's `by-hash/SHA256/…`) or the origin
    /// (`Repr-Digest`, `Digest`) names one; lowercase hex.
    static func expectedDigest(relative: String, headers: HTTPHeaders) -> String? {
        let parts = relative.split(separator: "/")
        if parts.count >= 3, parts[parts.count - 3] == "by-hash", parts[parts.count - 2] == "SHA256" {
            let name = parts[parts.count - 1].lowercased()
            if name.count == 64, name.allSatisfy(\.isHexDigit) { return name }
        }
        for field in ["repr-digest", "digest"] {
            guard let value = headers.first(name: field) else { continue }
            for item in value.split(separator: ",") {
                let pair = item.trimmingCharacters(in: .whitespaces).split(separator: "=", maxSplits: 1)
                guard pair.count == 2, pair[0].lowercased() == "sha-256" else { continue }
                let encoded = pair[1].trimmingCharacters(in: CharacterSet(charactersIn: ":"))
                if let bytes = Data(base64Encoded: encoded), bytes.count == 32 { return SHA256Hasher.hex(of: bytes) }
            }
        }
        return nil
    }

    private static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: Int64) throws {
        var done = 0
        while done < bytes.count {
            let n = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw CacheFailure(timedOut: false, description: "cannot write the cache: \(String(cString: strerror(errno)))", originFailing: false)
            }
            done += n
        }
    }

    /// `mkdir -p` with modes readers can pass (the server's umask would hide them).
    private static func makeDirectory(_ path: String, under base: String? = nil) throws {
        var current = base ?? ""
        let rest = base.map { String(path.dropFirst($0.count)) } ?? path
        for component in rest.split(separator: "/") {
            current += "/" + component
            if mkdir(current, 0o755) == 0 {
                chmod(current, 0o755)
            } else if errno != EEXIST {
                throw CacheFailure(timedOut: false, description: "cannot make the cache directory \(current): \(String(cString: strerror(errno)))", originFailing: false)
            }
        }
    }

    private static func failure(_ error: any Error, url: String) -> CacheFailure {
        if let failure = error as? CacheFailure { return failure }
        if let client = error as? HTTPClientError {
            switch client {
            case .readTimeout, .connectTimeout, .deadlineExceeded:
                return CacheFailure(timedOut: true, description: "\(url): the origin did not answer in time (\(client))")
            default:
                return CacheFailure(timedOut: false, description: "\(url): \(client)")
            }
        }
        return CacheFailure(timedOut: false, description: "\(url): \(error)")
    }
}

/// Keeps a cached file from eviction while a response sends it; released when dropped.
final class CacheLease: Sendable {
    private let cache: PullThroughCache
    private let relative: String

    init(cache: PullThroughCache, relative: String) {
        self.cache = cache
        self.relative = relative
    }

    deinit { cache.release(relative) }
}
