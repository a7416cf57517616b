import SystemKit

/// GPT partition type GUIDs from the UAPI Discoverable Partitions Specification.
public enum PartitionType {
    public static let esp = GUID("c12a7328-f81f-11d2-ba4b-00a0c93ec93b")!
    public static let rootX86_64 = GUID("4f68bce3-e8cd-4db1-96e7-fbcaf984b709")!
    public static let linuxGeneric = GUID("0fc63daf-8483-4772-8e79-3d69d8477de4")!
    public static let srv = GUID("3b8f8425-20e0-4f3b-907f-1a25a76f98e8")!

    /// A short name for a known type, for `inspect`.
    public static func name(of guid: GUID) -> String {
        switch guid {
        case esp: return "esp"
        case rootX86_64: return "root-x86-64"
        case linuxGeneric: return "linux-generic"
        case srv: return "srv"
        default: return "unknown"
        }
    }
}
