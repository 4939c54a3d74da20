import Foundation
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
/// The serving process counts in memory and writes absolute values, so a second server on
/// the same file would overwrite the first one's counts: it must be refused, not tolerated.
/// The CLI does not take the lock: it only changes keys, which servers follow.
public struct ServeLock: ~Copyable, Sendable {
    private let descriptor: Int32

    /// Takes the lock beside `storePath`, or fails naming the remedy.
    public init(storePath: String) throws(TollgateError) {
        // Two spellings of one file (a symlink, `./`) must find one lock.
        let path = URL(fileURLWithPath: storePath).resolvingSymlinksInPath().standardizedFileURL.path + ".serve-lock"
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            throw TollgateError(.storeUnavailable, "cannot create the lock file '\(path)': check that its directory is writable")
        }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            close(descriptor)
            throw TollgateError(
                .storeLocked,
                "another 'tollgate serve' is using '\(storePath)': stop it first, or give this one its own file with --store sqlite:OTHER.sqlite (servers that share quotas use redis://)"
            )
        }
        self.descriptor = descriptor
    }

    deinit {
        close(descriptor)
    }
}
