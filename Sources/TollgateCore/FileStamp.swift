#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// What tells one version of a file from another without reading it: which file a path
/// names, when it was last written, and its size. One `stat`, for the two watchers of a
/// file: the SQLite store (was its file deleted or replaced?) and the route file's reloader
/// (did it change?).
package struct FileStamp: Hashable, Sendable {
    /// Which file: two names for one file share it, and a file deleted or replaced under a
    /// running server no longer has it at its path.
    package struct Identity: Hashable, Sendable {
        package var device: UInt64
        package var inode: UInt64
    }

    package var identity: Identity
    package var modifiedSeconds: Int64
    package var modifiedNanoseconds: Int64
    package var size: Int64

    /// `nil` when nothing is at `path`.
    package init?(path: String) {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        identity = Identity(device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
        #if canImport(Darwin)
            modifiedSeconds = Int64(info.st_mtimespec.tv_sec)
            modifiedNanoseconds = Int64(info.st_mtimespec.tv_nsec)
        #else
            modifiedSeconds = Int64(info.st_mtim.tv_sec)
            modifiedNanoseconds = Int64(info.st_mtim.tv_nsec)
        #endif
        size = Int64(info.st_size)
    }
}
