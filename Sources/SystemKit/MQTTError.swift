import CMosquitto
import Foundation
import Synchronization

/// An MQTT operation failed; `code` is libmosquitto's.
public struct MQTTError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var code: Int32

    public init(_ message: String, code: Int32) {
        self.message = message
        self.code = code
    }

    public var description: String {
        code == 0 ? message : "\(message): \(String(cString: mosquitto_strerror(code)))"
    }
}
