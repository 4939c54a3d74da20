import Foundation
import TollgateAdmin
import TollgateCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Where `serve` takes the admin token from: `--admin-token-file`, `TOLLGATE_ADMIN_TOKEN`
/// or `--admin-token`, exactly one of them. Two at once is an error rather than an order
/// of precedence to remember: a stale variable in a shell profile must not quietly win
/// over the file an operator named, nor lose to it.
enum AdminTokenSource {
    /// The token, if one is given, and warnings to print once the server is up.
    struct Loaded {
        var token: AdminToken?
        var notes: [String] = []
        var warnings: [String] = []
    }

    static func read(argument: String?, file: String?, environment: String?) throws(TollgateError) -> Loaded {
        let environment = environment.flatMap { $0.isEmpty ? nil : $0 }
        let given = [
            file.map { _ in "--admin-token-file" }, environment.map { _ in "TOLLGATE_ADMIN_TOKEN" }, argument.map { _ in "--admin-token" },
        ]
        .compactMap { $0 }
        if given.count > 1 {
            throw TollgateError(
                .invalidInput,
                "the admin token is given \(given.count) ways (\(given.joined(separator: ", "))): give it one way, preferably --admin-token-file, and unset or drop the others"
            )
        }
        if let file { return try read(file: file) }
        if let environment { return Loaded(token: try token(environment, from: "TOLLGATE_ADMIN_TOKEN")) }
        if let argument { return Loaded(token: try token(argument, from: "--admin-token")) }
        return Loaded()
    }

    /// Reads the token file, or makes one with a new token (mode 0600) if nothing is there.
    private static func read(file: String) throws(TollgateError) -> Loaded {
        let quoted = TollgateError.quote(file, limit: 1024)
        var loaded = Loaded()
        var info = stat()
        if stat(file, &info) != 0 && errno == ENOENT {
            try create(file: file)
            loaded.notes.append("Admin token: a new one is in \(file) (mode 0600); send it as 'Authorization: Bearer $(cat \(file))'")
        } else if info.st_mode & 0o077 != 0 {
            // As ssh does for private keys: the token opens every key's secret-free record,
            // creates keys, and reads every key's usage.
            loaded.warnings.append(
                "the admin token file \(quoted) can be read by other users (mode \(String(info.st_mode & 0o777, radix: 8))): 'chmod 600 \(file)'"
            )
        }
        let text: String
        do {
            text = try String(contentsOfFile: file, encoding: .utf8)
        } catch {
            throw TollgateError(
                .invalidInput, "cannot read the admin token file \(quoted): check --admin-token-file and that the file is readable")
        }
        // One line; the newline an editor or `echo` adds is not part of the token.
        loaded.token = try token(text.trimmingCharacters(in: .whitespacesAndNewlines), from: "--admin-token-file")
        return loaded
    }

    /// Writes a new token to `file`, readable by its owner only from the first byte.
    private static func create(file: String) throws(TollgateError) {
        var generator = SystemRandomNumberGenerator()
        let token = (0..<4).map { _ in
            let hex = String(generator.next() as UInt64, radix: 16)
            return String(repeating: "0", count: 16 - hex.count) + hex
        }.joined()
        let descriptor = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            throw TollgateError(
                .invalidInput,
                "cannot create the admin token file \(TollgateError.quote(file, limit: 1024)) (\(String(cString: strerror(errno)))): check --admin-token-file and that its folder exists and is writable"
            )
        }
        defer { close(descriptor) }
        let bytes = Array((token + "\n").utf8)
        guard write(descriptor, bytes, bytes.count) == bytes.count else {
            unlink(file)
            throw TollgateError(
                .invalidInput, "cannot write the admin token file \(TollgateError.quote(file, limit: 1024)): check the disk")
        }
    }

    private static func token(_ text: String, from source: String) throws(TollgateError) -> AdminToken {
        do {
            return try AdminToken(text)
        } catch {
            throw TollgateError(.invalidInput, "\(source): \(error.message)")
        }
    }
}
