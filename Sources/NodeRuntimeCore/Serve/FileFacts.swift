import NIOCore

/// What the response to a file needs besides its bytes: the validators and the encoded
/// `Content-Type`, `Last-Modified`, `ETag`, `Accept-Ranges` and `Cache-Control` fields.
struct FileFacts {
    let info: MirrorFileResolver.FileInfo
    let etag: String
    let lastModified: String
    let fields: ByteBuffer

    init(info: MirrorFileResolver.FileInfo, path: RequestPath, lastModified: String, allocator: ByteBufferAllocator) {
        self.info = info
        self.etag = MirrorResponder.etag(info)
        self.lastModified = lastModified
        var fields = ResponseHead.Fields(allocator: allocator)
        fields.add("Content-Type", MirrorContentType.type(for: path.components.last ?? ""))
        fields.add("Last-Modified", lastModified)
        fields.add("ETag", etag)
        fields.add("Accept-Ranges", "bytes")
        fields.add("Cache-Control", MirrorContentType.cacheControl(for: path.components))
        self.fields = fields.buffer
    }
}
