import Foundation
import MicromirrorKit

/// A file mm-firstboot writes: path (absolute on the node), content, mode.
public struct RenderedFile: Sendable, Equatable {
    public var path: String
    public var content: String
    public var mode: Int32

    public init(path: String, content: String, mode: Int32 = 0o644) {
        self.path = path
        self.content = content
        self.mode = mode
    }
}
