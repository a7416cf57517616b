import Foundation

/// A traffic graph drawn by the server as inline SVG: one line per series, in bits per second
/// averaged over each bucket, with the peak on the axis and the window's ends under it. No
/// script, no font files, nothing fetched: the status page stays a single fast response.
public enum TrafficGraph {
    static let palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"]

    /// `series` maps a label to its buckets (start, bytes) within `[from, to)`, each `bucket` seconds wide.
    public static func svg(title: String, series: [String: [(start: Date, bytes: Int64)]], from: Date, to: Date, bucket: Int64, width: Int = 720, height: Int = 180) -> String {
        let e = DirectoryListing.escape
        let (left, right, top, bottom) = (64.0, 8.0, 22.0, 34.0)
        let plotWidth = Double(width) - left - right
        let plotHeight = Double(height) - top - bottom
        let span = max(1, to.timeIntervalSince(from))
        let names = series.keys.sorted()
        let rate = { (bytes: Int64) in Double(bytes) * 8 / Double(bucket) }
        let peak = max(1, series.values.flatMap { $0.map { rate($0.bytes) } }.max() ?? 1)
        func x(_ date: Date) -> Double { left + plotWidth * min(1, max(0, date.timeIntervalSince(from) / span)) }
        func y(_ value: Double) -> Double { top + plotHeight * (1 - value / peak) }
        var body = ""
        for (index, name) in names.enumerated() {
            let color = palette[index % palette.count]
            // Every bucket of the window, zero where nothing was recorded, so gaps show as zero.
            let byStart = Dictionary((series[name] ?? []).map { (Int64($0.start.timeIntervalSince1970), $0.bytes) }, uniquingKeysWith: +)
            let first = Int64(from.timeIntervalSince1970) / bucket * bucket
            var points: [String] = []
            var start = first
            while start < Int64(to.timeIntervalSince1970) {
                let value = rate(byStart[start] ?? 0)
                let middle = Date(timeIntervalSince1970: TimeInterval(start) + TimeInterval(bucket) / 2)
                points.append(String(format: "%.1f,%.1f", x(middle), y(value)))
                start += bucket
            }
            body += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"1.5\" points=\"\(points.joined(separator: " "))\"/>\n"
            body += "<text x=\"\(Int(left) + 8 + index * 130)\" y=\"14\" fill=\"\(color)\" font-size=\"12\">\(e(name))</text>\n"
        }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = span > 3 * 86400 ? "MMM d" : "MMM d HH:mm"
        return """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(width)" height="\(height)" viewBox="0 0 \(width) \(height)" role="img" aria-label="\(e(title))">
            <title>\(e(title))</title>
            <rect x="\(Int(left))" y="\(Int(top))" width="\(Int(plotWidth))" height="\(Int(plotHeight))" fill="#fafafa" stroke="#ccc"/>
            <text x="\(Int(left) - 4)" y="\(Int(top) + 10)" text-anchor="end" font-size="11">\(bitRate(peak))</text>
            <text x="\(Int(left) - 4)" y="\(Int(top + plotHeight))" text-anchor="end" font-size="11">0</text>
            <text x="\(Int(left))" y="\(height - 12)" font-size="11">\(formatter.string(from: from)) UTC</text>
            <text x="\(width - Int(right))" y="\(height - 12)" text-anchor="end" font-size="11">\(formatter.string(from: to)) UTC</text>
            \(body)</svg>
            """
    }

    /// `12.3 Mbit/s`, in powers of 1000 as network rates are.
    public static func bitRate(_ bits: Double) -> String {
        let units = ["bit/s", "kbit/s", "Mbit/s", "Gbit/s", "Tbit/s"]
        var value = bits
        var unit = 0
        while value >= 1000, unit < units.count - 1 {
            value /= 1000
            unit += 1
        }
        return unit == 0 ? "\(Int(value)) \(units[0])" : String(format: "%.1f", value) + " " + units[unit]
    }
}

/// The traffic part of `/status`: the last 24 hours (10-minute buckets of the per-minute rows)
/// and the last 30 days (3-hour buckets of the hourly rows), per project and per interface.
public struct TrafficPanels: Sendable {
    public typealias Buckets = [String: [(start: Date, bytes: Int64)]]
    public var day: Buckets
    public var month: Buckets
    public var now: Date
    static let dayBucket: Int64 = 600
    static let monthBucket: Int64 = 3 * 3600

    /// Reads the history at `path` (nil when there is none yet).
    public static func load(path: String, now: Date = Date()) -> TrafficPanels? {
        guard FileManager.default.fileExists(atPath: path), let history = try? TrafficHistory(path: path, readOnly: true) else { return nil }
        guard let day = try? history.buckets(.minute, from: now - 86400, to: now, bucket: dayBucket),
            let month = try? history.buckets(.hour, from: now - 30 * 86400, to: now, bucket: monthBucket)
        else { return nil }
        return TrafficPanels(day: day, month: month, now: now)
    }

    /// A series' name as the graphs label it: the project, or `IFACE sent` / `IFACE received`.
    static func label(_ series: String) -> String {
        if series.hasPrefix("project:") { return String(series.dropFirst("project:".count)) }
        let parts = series.split(separator: ":")
        return parts.count == 3 ? "\(parts[1]) \(parts[2])" : series
    }

    private func pick(_ buckets: Buckets, projects: Bool) -> Buckets {
        Dictionary(uniqueKeysWithValues: buckets.filter { $0.key.hasPrefix("project:") == projects }.map { (Self.label($0.key), $0.value) })
    }

    /// Four graphs: projects and interfaces, over a day and over a month.
    public func html() -> String {
        let graphs = [
            TrafficGraph.svg(title: "Served per project, last 24 hours", series: pick(day, projects: true), from: now - 86400, to: now, bucket: Self.dayBucket),
            TrafficGraph.svg(title: "Network, last 24 hours", series: pick(day, projects: false), from: now - 86400, to: now, bucket: Self.dayBucket),
            TrafficGraph.svg(title: "Served per project, last 30 days", series: pick(month, projects: true), from: now - 30 * 86400, to: now, bucket: Self.monthBucket),
            TrafficGraph.svg(title: "Network, last 30 days", series: pick(month, projects: false), from: now - 30 * 86400, to: now, bucket: Self.monthBucket),
        ]
        let captions = ["Served per project, last 24 hours", "Network, last 24 hours", "Served per project, last 30 days", "Network, last 30 days"]
        return zip(captions, graphs).map { "<figure><figcaption>\($0)</figcaption>\n\($1)\n</figure>\n" }.joined()
    }

    /// One series in `/status?format=json`: its bytes over the day and the month, and the buckets.
    public struct Series: Codable, Sendable, Equatable {
        public var series: String
        public var dayBytes: Int64
        public var monthBytes: Int64
        /// `[bucket start (Unix seconds), bytes]`, 10-minute buckets over the last 24 hours.
        public var day: [[Int64]]
        /// The same in 3-hour buckets over the last 30 days.
        public var month: [[Int64]]
    }

    public func summary() -> [Series] {
        Set(day.keys).union(month.keys).sorted().map { name in
            let d = day[name] ?? [], m = month[name] ?? []
            return Series(
                series: name, dayBytes: d.reduce(0) { $0 + $1.bytes }, monthBytes: m.reduce(0) { $0 + $1.bytes },
                day: d.map { [Int64($0.start.timeIntervalSince1970), $0.bytes] }, month: m.map { [Int64($0.start.timeIntervalSince1970), $0.bytes] }
            )
        }
    }
}
