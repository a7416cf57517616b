import CLinuxShims

/// The kernel's load averages over 1, 5 and 15 minutes, from `sysinfo(2)`.
public enum LoadAverage {
    /// Rounded to two decimals; empty when the kernel will not say.
    public static func read() -> [Double] {
        var values: (Double, Double, Double) = (0, 0, 0)
        let result = withUnsafeMutableBytes(of: &values) { CLinuxShims_loadAverages($0.baseAddress!.assumingMemoryBound(to: Double.self)) }
        guard result == 0 else { return [] }
        return [values.0, values.1, values.2].map { ($0 * 100).rounded() / 100 }
    }
}
