#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// The device and inode a path names: two names for one file share it, and a file deleted
/// or replaced under a running server no longer has it at its path.
struct FileIdentity: Hashable, Sendable {
    var device: UInt64
    var inode: UInt64

    /// `nil` when nothing is at `path`.
    init?(path: String) {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        device = UInt64(info.st_dev)
        inode = UInt64(info.st_ino)
    }
}
