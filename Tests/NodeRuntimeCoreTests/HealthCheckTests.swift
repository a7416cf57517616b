import Foundation
import Testing

@testable import NodeRuntimeCore

@Suite("Health gate verdicts")
struct HealthCheckTests {
    final class Counter: @unchecked Sendable {
        private let lock = NSLock()
        private var value = 0
        func next() -> Int { lock.withLock { value += 1; return value } }
        var count: Int { lock.withLock { value } }
    }

    @Test("checks still starting are retried until they pass")
    func retried() async {
        let looks = Counter()
        var check = HealthCheck(checks: [.init(name: "serve") { looks.next() < 3 ? .waiting("starting") : .pass }], deadline: .seconds(30))
        check.retryEvery = .milliseconds(10)
        let verdict = await check.run()
        #expect(verdict.healthy && looks.count == 3, "\(verdict.text) after \(looks.count) looks")
    }

    @Test("a check that cannot pass in this boot ends the wait at once; the verdict names every failure")
    func definitive() async {
        let looks = Counter()
        var check = HealthCheck(
            checks: [
                .init(name: "address") { _ = looks.next(); return .waiting("not up") },
                .init(name: "mm-node-serve.service") { .failed("mm-node-serve.service is masked") },
            ], deadline: .seconds(600))
        check.retryEvery = .seconds(60)
        let verdict = await check.run()
        #expect(!verdict.healthy && looks.count == 1, "waited for the deadline: \(looks.count) looks")
        #expect(verdict.text == "unhealthy: address: not up; mm-node-serve.service: mm-node-serve.service is masked")
    }

    @Test("the deadline bounds a check that never passes")
    func deadline() async {
        var check = HealthCheck(checks: [.init(name: "http") { .waiting("GET answered 503") }], deadline: .milliseconds(50))
        check.retryEvery = .milliseconds(10)
        let verdict = await check.run()
        #expect(verdict.text == "unhealthy: http: GET answered 503")
    }

    @Test("unit states from systemctl: active passes, failed/masked/missing are final, starting waits")
    func unitStates() {
        #expect(HealthCheck.unitOutcome("s", show: "LoadState=loaded\nActiveState=active\n") == .pass)
        #expect(HealthCheck.unitOutcome("s", show: "LoadState=masked\nActiveState=inactive\n") == .failed("s is masked"))
        #expect(HealthCheck.unitOutcome("s", show: "LoadState=not-found\nActiveState=inactive\n") == .failed("s is not-found"))
        #expect(HealthCheck.unitOutcome("s", show: "LoadState=loaded\nActiveState=failed\n") == .failed("s failed"))
        #expect(HealthCheck.unitOutcome("s", show: "LoadState=loaded\nActiveState=activating\n") == .waiting("s is activating"))
        #expect(HealthCheck.unitOutcome("s", show: "") == .waiting("s is unknown"))
    }
}
