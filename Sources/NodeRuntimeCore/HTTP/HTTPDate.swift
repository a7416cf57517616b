import Foundation

/// RFC 9110 IMF-fixdate formatting and parsing (and the two obsolete forms clients still send).
public enum HTTPDate {
    public static func format(_ seconds: Int) -> String {
        var t = time_t(seconds)
        var parts = tm()
        gmtime_r(&t, &parts)
        var buffer = [CChar](repeating: 0, count: 64)
        strftime(&buffer, buffer.count, "%a, %d %b %Y %H:%M:%S GMT", &parts)
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static let months = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]

    /// Seconds since the epoch, or nil for a date in none of the three HTTP forms:
    /// `Sun, 06 Nov 1994 08:49:37 GMT`, `Sunday, 06-Nov-94 08:49:37 GMT`, `Sun Nov  6 08:49:37 1994`.
    public static func parse(_ text: String) -> Int? {
        let words = text.split(separator: " ").map { $0.lowercased() }
        var day: Int?, month: Int?, year: Int?, clock: String?
        if words.count == 6, words[5] == "gmt" {  // IMF-fixdate
            (day, month, year, clock) = (Int(words[1]), months.firstIndex(of: words[2]), Int(words[3]), words[4])
        } else if words.count == 4, words[3] == "gmt" {  // RFC 850
            let parts = words[1].split(separator: "-")
            guard parts.count == 3, let y = Int(parts[2]) else { return nil }
            (day, month, year, clock) = (Int(parts[0]), months.firstIndex(of: String(parts[1])), y < 70 ? 2000 + y : 1900 + y, words[2])
        } else if words.count == 5 {  // asctime
            (day, month, year, clock) = (Int(words[2]), months.firstIndex(of: words[1]), Int(words[4]), words[3])
        }
        guard let day, let month, let year, let clock else { return nil }
        let hms = clock.split(separator: ":").compactMap { Int($0) }
        guard hms.count == 3, (1...31).contains(day), (0...23).contains(hms[0]), (0...59).contains(hms[1]), (0...60).contains(hms[2]) else {
            return nil
        }
        var parts = tm()
        parts.tm_year = Int32(year - 1900)
        parts.tm_mon = Int32(month)
        parts.tm_mday = Int32(day)
        parts.tm_hour = Int32(hms[0])
        parts.tm_min = Int32(hms[1])
        parts.tm_sec = Int32(hms[2])
        return Int(timegm(&parts))
    }
}
