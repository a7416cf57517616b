import Foundation
import NIOCore
import NIOPosix

/// What to send for one request: the head (with the body when it is small) and, for larger files,
/// the part of an open file that follows it with sendfile.
struct MirrorResponse {
    var status: HTTPStatus
    /// The encoded head, and the whole body when `file` is nil.
    var bytes: ByteBuffer
    /// Body bytes in `bytes` and `tail` (0 for HEAD and 304).
    var bodyInBytes: Int64
    /// More body, sent after `bytes` as its own buffer (larger in-memory files, without a copy).
    var tail: ByteBuffer? = nil
    /// A file region sent after `bytes`: an open descriptor the sender closes, `from..<to`.
    var file: (descriptor: Int32, from: Int64, to: Int64)?
    var keepAlive: Bool
    /// The project label (a configured project or `other`), for the per-project counters.
    var project: String
    /// An answer still to be made off the event loop (the rest is empty until then).
    var deferred: DeferredAnswer? = nil
}
