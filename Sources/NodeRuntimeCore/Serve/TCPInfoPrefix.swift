/// The start of Linux's `struct tcp_info` (linux/tcp.h) up to `tcpi_bytes_acked`, read with
/// getsockopt(TCP_INFO); glibc's copy of the struct ends before that field. The kernel copies as
/// much as asked for, so this prefix is enough: 8 bytes of flags, 24 `__u32`s, then the `__u64`s
/// `tcpi_pacing_rate`, `tcpi_max_pacing_rate` and `tcpi_bytes_acked` at byte 120.
struct TCPInfoPrefix: Sendable {
    private var words: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) =
        (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)

    /// Bytes the peer has acknowledged on this connection (0 on kernels before 4.1).
    var bytesAcked: UInt64 { words.15 }
}
