internal import COpenSSL
import Foundation

/// Memory BIO helpers for PEM in and out.
enum PEMBio {
    static func withReadBio<T>(_ bytes: [UInt8], _ body: (OpaquePointer) -> T?) -> T? {
        bytes.withUnsafeBytes { buffer -> T? in
            guard let bio = BIO_new_mem_buf(buffer.baseAddress, Int32(buffer.count)) else { return nil }
            defer { BIO_free(bio) }
            return body(bio)
        }
    }

    static func write(_ body: (OpaquePointer) -> Bool) throws(OpenSSLError) -> [UInt8] {
        guard let bio = BIO_new(BIO_s_mem()) else { throw .drain("allocating a memory BIO") }
        defer { BIO_free(bio) }
        guard body(bio) else { throw .drain("writing PEM") }
        var pointer: UnsafeMutablePointer<CChar>?
        let length = COpenSSL_BIO_get_mem_data(bio, &pointer)
        guard let pointer, length > 0 else { throw .drain("reading PEM from memory") }
        return pointer.withMemoryRebound(to: UInt8.self, capacity: length) { Array(UnsafeBufferPointer(start: $0, count: length)) }
    }
}
