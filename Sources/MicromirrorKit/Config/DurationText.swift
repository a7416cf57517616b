/// Durations as the node file and the recipes write them: `90s`, `30m`, `6h`, `1d`.
public enum DurationText {
    /// The duration `text` names (a count above 0 and a unit), or nil.
    public static func parse(_ text: String) -> Duration? {
        guard let unit = text.last, let count = Int64(text.dropLast()), count > 0 else { return nil }
        switch unit {
        case "s": return .seconds(count)
        case "m": return .seconds(count * 60)
        case "h": return .seconds(count * 3600)
        case "d": return .seconds(count * 86400)
        default: return nil
        }
    }
}
