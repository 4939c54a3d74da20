import TollgateCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// A store's files are for their owner only: they hold every key's digest (an unsalted
/// SHA-256, so an imported low-entropy secret falls to an offline guess) and its usage.
///
/// SQLite makes a new database file `0644` (less the umask) and gives its `-wal` and `-shm`
/// files the database file's mode, so making the database file `0600` first covers all
/// three.
public enum SQLiteFileMode {
    /// The mode a new database file is made with.
    public static let mode: mode_t = 0o600

    /// Makes an empty database file at `path` with ``mode`` if nothing is there; SQLite
    /// takes an empty file as a new database.
    static func createIfMissing(path: String) {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        if descriptor >= 0 { close(descriptor) }
    }

    /// A warning when the database file at `path` can be read by other users (one made
    /// before this version, or by hand).
    public static func warning(path: String) -> String? {
        var info = stat()
        guard stat(path, &info) == 0, info.st_mode & 0o077 != 0 else { return nil }
        let octal = String(info.st_mode & 0o777, radix: 8)
        return
            "the database \(TollgateError.quote(path, limit: 1024)) can be read by other users (mode \(octal)), and it holds every key's digest: 'chmod 600 \(path)' (its -wal and -shm files take the mode when next made)"
    }
}
