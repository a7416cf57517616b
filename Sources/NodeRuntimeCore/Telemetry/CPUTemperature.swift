import Foundation

/// The processor's temperature from hwmon: the T620's GX-415GA reports through `k10temp`
/// (`temp1_input`, millidegrees Celsius). Nil on a machine without it (QEMU, most VMs).
public enum CPUTemperature {
    /// Drivers whose first sensor is the CPU package, in the order they are preferred.
    static let drivers = ["k10temp", "coretemp", "zenpower"]

    public static func celsius(hwmon directory: String = "/sys/class/hwmon") -> Double? {
        let entries = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
        let named = entries.compactMap { entry -> (String, String)? in
            guard let data = FileManager.default.contents(atPath: "\(directory)/\(entry)/name") else { return nil }
            return (String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines), entry)
        }
        for driver in drivers {
            guard let entry = named.first(where: { $0.0 == driver })?.1,
                let data = FileManager.default.contents(atPath: "\(directory)/\(entry)/temp1_input"),
                let milli = Double(String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
            else { continue }
            return milli / 1000
        }
        return nil
    }
}
