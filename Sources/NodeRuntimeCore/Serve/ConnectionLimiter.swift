import NIOConcurrencyHelpers

/// Counts open connections per client address and in all; refuses past the limits.
public final class ConnectionLimiter: Sendable {
    private struct State {
        var perAddress: [String: Int] = [:]
        var total = 0
    }

    private let state = NIOLockedValueBox(State())
    public let maxPerAddress: Int
    public let maxTotal: Int

    public init(maxPerAddress: Int, maxTotal: Int) {
        self.maxPerAddress = maxPerAddress
        self.maxTotal = maxTotal
    }

    public enum Decision: Sendable, Equatable {
        case admitted
        case tooManyFromAddress
        case tooManyInAll
    }

    /// Takes a slot for `address` if one is free.
    public func acquire(_ address: String) -> Decision {
        state.withLockedValue { s in
            if s.total >= maxTotal { return .tooManyInAll }
            if s.perAddress[address, default: 0] >= maxPerAddress { return .tooManyFromAddress }
            s.total += 1
            s.perAddress[address, default: 0] += 1
            return .admitted
        }
    }

    /// Gives back a slot taken by `acquire`.
    public func release(_ address: String) {
        state.withLockedValue { s in
            s.total -= 1
            let left = s.perAddress[address, default: 1] - 1
            s.perAddress[address] = left > 0 ? left : nil
        }
    }

    public var open: Int { state.withLockedValue { $0.total } }
}
