import TollgateCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// An advisory lock that lets one serving process own a SQLite store's usage.
///
/// The serving process decides in memory, from the counts it holds, and writes increments:
/// a second server on the same file would decide from counts that miss the first one's,
/// and the two would admit more than a quota allows. It must be refused, not tolerated.
/// The lock is an `flock` on the database file itself, so every name for the file (a hard
/// link, a symlink, another spelling) finds the same lock, and there is no lock file to
/// delete. SQLite's own locks are `fcntl` locks, which `flock` does not touch on Linux.
/// The CLI does not take the lock: it only changes keys, which servers follow.
///
/// Release it only after the store is closed: closing a descriptor of the file drops every
/// `fcntl` lock this process holds on it, SQLite's included.
public struct ServeLock: ~Copyable, Sendable {
    private let descriptor: Int32

    /// Takes the lock on the database at `storePath` (creating an empty file if there is
    /// none, which SQLite then initializes), or fails naming the remedy.
    public init(storePath: String) throws(TollgateError) {
        let descriptor = open(storePath, O_RDWR | O_CREAT | O_CLOEXEC, SQLiteFileMode.mode)
        guard descriptor >= 0 else {
            let reason = String(cString: strerror(errno))
            throw TollgateError(
                .storeUnavailable,
                "cannot open the SQLite store '\(storePath)' (\(reason)): check that the directory exists and is writable"
            )
        }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            close(descriptor)
            throw TollgateError(
                .storeLocked,
                "another 'tollgate serve' is using '\(storePath)' (or another name for the same file): stop it first, or give this one its own file with --store sqlite:OTHER.sqlite (servers that share quotas use redis://)"
            )
        }
        self.descriptor = descriptor
    }

    deinit {
        close(descriptor)
    }
}
