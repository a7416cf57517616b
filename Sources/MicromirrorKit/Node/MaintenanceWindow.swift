import Foundation

/// When a node may reboot into an update: daily or on one weekday, in UTC.
public struct MaintenanceWindow: Sendable, Equatable, CustomStringConvertible {
    /// 1 = Monday … 7 = Sunday; nil = every day.
    public var weekday: Int?
    /// Minutes after midnight UTC.
    public var start: Int
    public var end: Int

    public static let anyTime = MaintenanceWindow(weekday: nil, start: 0, end: 24 * 60)

    /// Whether `date` falls in the window (a window may wrap past midnight: `23:00-01:00`).
    public func contains(_ date: Date) -> Bool {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let parts = calendar.dateComponents([.weekday, .hour, .minute], from: date)
        let minute = parts.hour! * 60 + parts.minute!
        // Calendar: 1 = Sunday; ours: 1 = Monday.
        let today = (parts.weekday! + 5) % 7 + 1
        let yesterday = (today + 5) % 7 + 1
        if start < end { return (weekday == nil || weekday == today) && minute >= start && minute < end }
        if minute >= start { return weekday == nil || weekday == today }
        return minute < end && (weekday == nil || weekday == yesterday)
    }

    public init(weekday: Int?, start: Int, end: Int) {
        self.weekday = weekday
        self.start = start
        self.end = end
    }

    static let days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]

    /// Parses `HH:MM-HH:MM` or `Day HH:MM-HH:MM`.
    public init?(_ text: String) {
        var words = text.lowercased().split(separator: " ").map(String.init)
        var weekday: Int?
        if words.count == 2 {
            guard let index = Self.days.firstIndex(of: String(words[0].prefix(3))) else { return nil }
            weekday = index + 1
            words.removeFirst()
        }
        guard words.count == 1 else { return nil }
        let times = words[0].split(separator: "-")
        guard times.count == 2, let start = Self.minutes(times[0]), let end = Self.minutes(times[1]), start != end else { return nil }
        self.init(weekday: weekday, start: start, end: end)
    }

    static func minutes(_ text: Substring) -> Int? {
        let parts = text.split(separator: ":")
        guard parts.count == 2, let h = Int(parts[0]), let m = Int(parts[1]), (0...24).contains(h), (0...59).contains(m), h * 60 + m <= 1440 else {
            return nil
        }
        return h * 60 + m
    }

    public var description: String {
        let time = String(format: "%02d:%02d-%02d:%02d", start / 60, start % 60, end / 60, end % 60)
        return weekday.map { Self.days[$0 - 1].capitalized + " " + time } ?? time
    }
}
