import MicromirrorKit

/// A machine the image runs on: kernel, firmware and drivers, console, watchdog. Read from `hardware/*.yaml`.
public struct HardwareProfile: Sendable, Equatable {
    public var name: String
    public var description: String
    /// Extra packages (kernel flavour, firmware, microcode).
    public var packages: [String]
    /// Modules forced into the initramfs (storage and NIC drivers the machine boots from).
    public var initramfsModules: [String]
    /// Modules loaded at boot (`/etc/modules-load.d`), e.g. the hardware watchdog.
    public var loadModules: [String]
    /// Kernel options for this machine (console).
    public var kernelOptions: [String]
    /// systemd `RuntimeWatchdogSec=`; nil for none.
    public var watchdogSeconds: Int?
    public var path: String

    /// Reads and validates a hardware profile, reporting every problem at once.
    public static func load(path: String) throws(ConfigError) -> HardwareProfile {
        let root = try YAMLConfig.load(path: path)
        let name = root.required("name")?.nonEmptyString()
        let description = root.optional("description")?.string() ?? ""
        let packages = root.optional("packages")?.stringList() ?? []
        for item in root.optional("packages")?.list() ?? [] {
            if let package = item.string(), !PackageName.isValid(package) {
                item.report("\"\(package)\" is not a valid Debian package name")
            }
        }
        var initramfsModules: [String] = []
        var loadModules: [String] = []
        var kernelOptions: [String] = []
        if let kernel = root.optional("kernel")?.mapping() {
            initramfsModules = kernel.optional("initramfs-modules")?.stringList() ?? []
            loadModules = kernel.optional("load-modules")?.stringList() ?? []
            kernelOptions = kernel.optional("options")?.stringList() ?? []
            kernel.rejectUnknownKeys()
        }
        var watchdog: Int?
        if let value = root.optional("watchdog-seconds") {
            watchdog = value.int()
            if let seconds = watchdog, seconds < 1 || seconds > 600 { value.report("must be between 1 and 600 seconds") }
        }
        root.rejectUnknownKeys()
        try root.diagnostics.throwIfAny()
        return HardwareProfile(
            name: name!, description: description, packages: packages, initramfsModules: initramfsModules,
            loadModules: loadModules, kernelOptions: kernelOptions, watchdogSeconds: watchdog, path: path
        )
    }
}
