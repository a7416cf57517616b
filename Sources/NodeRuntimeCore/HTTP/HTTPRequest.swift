/// One parsed HTTP/1.x request head: the request line and the header fields the mirror acts on.
///
/// Other fields are checked for syntax by the parser and then dropped; nothing here keeps a copy of
/// the whole head, so a connection holds no more than this between parsing and answering.
public struct HTTPRequest: Sendable, Equatable {
    public enum Method: Sendable, Equatable {
        case get
        case head
        /// Any other syntactically valid method (answered 405).
        case other(String)

        public var name: String {
            switch self {
            case .get: "GET"
            case .head: "HEAD"
            case .other(let name): name
            }
        }
    }

    /// How the request says its body is framed (RFC 9112 §6.3).
    public enum Body: Sendable, Equatable {
        case none
        case length(Int64)
        /// `Transfer-Encoding` was sent; the mirror accepts no request bodies of that kind.
        case chunked
    }

    public var method: Method
    /// The request target exactly as sent (origin form is checked later by `RequestPath`).
    public var target: String
    /// `(1, 0)` or `(1, 1)`.
    public var version: (major: Int, minor: Int)
    public var keepAlive: Bool
    public var body: Body = .none
    public var host: String?
    public var range: String?
    public var ifRange: String?
    /// Every `If-None-Match` line, joined with ", ".
    public var ifNoneMatch: String?
    public var ifModifiedSince: String?
    public var accept: String?
    public var referer: String?
    public var userAgent: String?

    public init(method: Method, target: String, version: (major: Int, minor: Int), keepAlive: Bool) {
        self.method = method
        self.target = target
        self.version = version
        self.keepAlive = keepAlive
    }

    public static func == (a: HTTPRequest, b: HTTPRequest) -> Bool {
        a.method == b.method && a.target == b.target && a.version == b.version && a.keepAlive == b.keepAlive && a.body == b.body
            && a.host == b.host && a.range == b.range && a.ifRange == b.ifRange && a.ifNoneMatch == b.ifNoneMatch
            && a.ifModifiedSince == b.ifModifiedSince && a.accept == b.accept && a.referer == b.referer && a.userAgent == b.userAgent
    }
}
