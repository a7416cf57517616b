internal import COpenSSL

/// An OpenSSL call failed; carries the operation and OpenSSL's own error queue.
public struct OpenSSLError: Error, Sendable, CustomStringConvertible {
    /// What we were doing, e.g. "reading Ed25519 private key /keys/dev.key".
    public var operation: String
    /// The messages drained from OpenSSL's error queue, oldest first.
    public var details: [String]

    public var description: String {
        details.isEmpty ? "\(operation) failed" : "\(operation) failed: \(details.joined(separator: "; "))"
    }

    /// Drains the thread's OpenSSL error queue into an error for `operation`.
    static func drain(_ operation: String) -> OpenSSLError {
        var details: [String] = []
        while true {
            let code = ERR_get_error()
            if code == 0 { break }
            var buffer = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &buffer, buffer.count)
            details.append(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return OpenSSLError(operation: operation, details: details)
    }
}
