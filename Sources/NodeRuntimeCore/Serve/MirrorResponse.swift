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
    /// An answer the project's pull-through cache still has to give (the origin is being asked).
    var cacheQuery: (cache: PullThroughCache, relative: String, path: RequestPath)? = nil
    /// A body sent from an origin transfer as it arrives, after `bytes`.
    var stream: CacheStream? = nil
    /// Keeps the cached file being sent from eviction until the response is dropped.
    var lease: CacheLease? = nil
}

/// The part of an origin transfer a response sends: `from..<to` of its file, sent as it is written.
struct CacheStream {
    let transfer: CacheTransfer
    /// The response's own descriptor on the transfer's file (closed when the response ends).
    let descriptor: Int32
    let from: Int64
    let to: Int64
    /// The whole file's length: its last byte is held back until the transfer is complete and
    /// checked, so a cut or corrupt transfer never reaches a client as a whole body.
    let size: Int64
}
