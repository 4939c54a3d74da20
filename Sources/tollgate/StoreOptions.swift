import ArgumentParser
import Foundation
import Logging
import NIOCore
import TollgateCore
import TollgateRESP
import TollgateRedis
import TollgateSQLite

/// The `--store URL` that `serve` takes: it alone can use `memory:`.
struct StoreOptions: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp(
            "Where keys and usage live: sqlite:PATH, redis://HOST:PORT[/DB] (password in TOLLGATE_REDIS_PASSWORD) or memory:.",
            valueName: "URL")
    )
    var store: String = "sqlite:tollgate.sqlite"

    /// - Parameter storeTimeout: `serve --store-timeout`, Redis's command timeout unless the
    ///   URL gives `?timeout=`.
    func location(storeTimeout: TimeAmount) throws(TollgateError) -> StoreLocation {
        try StoreLocation(parsing: store, redisTimeout: storeTimeout)
    }
}

/// A parsed store URL.
enum StoreLocation {
    case sqlite(path: String, synchronous: SQLiteKeyStore.Configuration.Synchronous)
    case redis(RedisKeyStore.Configuration)
    case memory

    /// The Redis command timeout when neither `?timeout=` nor `serve --store-timeout` gives
    /// one: the same two seconds as `--store-timeout`'s default.
    static let defaultRedisTimeout = TimeAmount.seconds(2)

    /// `sqlite:PATH[?synchronous=full|normal]`, `memory:`; `redis://` is the shared store's
    /// scheme and arrives with it, its command timeout `redisTimeout` unless the URL says.
    init(parsing text: String, redisTimeout: TimeAmount = defaultRedisTimeout) throws(TollgateError) {
        if text == "memory:" || text == "memory" {
            self = .memory
            return
        }
        if text.hasPrefix("sqlite:") {
            var path = String(text.dropFirst("sqlite:".count))
            if path.hasPrefix("//") { path.removeFirst(2) }
            var synchronous = SQLiteKeyStore.Configuration.Synchronous.full
            if let question = path.firstIndex(of: "?") {
                let query = path[path.index(after: question)...]
                path = String(path[..<question])
                for item in query.split(separator: "&") {
                    let parts = item.split(separator: "=", maxSplits: 1).map(String.init)
                    guard parts.count == 2, parts[0] == "synchronous",
                        let value = SQLiteKeyStore.Configuration.Synchronous(rawValue: parts[1])
                    else {
                        throw TollgateError(
                            .invalidStoreURL,
                            "'\(item)' is not a SQLite store option: the only one is synchronous=full or synchronous=normal")
                    }
                    synchronous = value
                }
            }
            guard !path.isEmpty else {
                throw TollgateError(.invalidStoreURL, "'\(text)' names no file: write sqlite:PATH, e.g. sqlite:tollgate.sqlite")
            }
            self = .sqlite(path: path, synchronous: synchronous)
            return
        }
        if text.hasPrefix("redis://") || text.hasPrefix("rediss://") {
            // The password may come apart from the URL, so that it is not in argv or `ps`.
            let password = ProcessInfo.processInfo.environment["TOLLGATE_REDIS_PASSWORD"].flatMap { $0.isEmpty ? nil : $0 }
            do {
                self = .redis(try RedisKeyStore.Configuration(url: text, password: password, commandTimeout: redisTimeout))
            } catch {
                throw TollgateError(
                    .invalidStoreURL,
                    "the Redis URL is not valid (\(error.message)): write redis://[USER:PASSWORD@]HOST[:PORT][/DB][?timeout=MS&durable_writes=1], e.g. redis://127.0.0.1:6379/0; the password may come from TOLLGATE_REDIS_PASSWORD"
                )
            }
            return
        }
        // A bare path (`--store tollgate.sqlite`) is the usual slip: say what it needs.
        let looksLikePath = !text.contains("://") && !text.hasPrefix("-") && (text.contains("/") || text.contains("."))
        let fix = looksLikePath ? "for a SQLite file write sqlite:\(TollgateError.excerpt(text, limit: 200)); the store URLs are" : "use"
        throw TollgateError(
            .invalidStoreURL,
            "\(TollgateError.quote(text, limit: 200)) is not a store URL: \(fix) sqlite:PATH (e.g. sqlite:tollgate.sqlite), redis://HOST:PORT[/DB] or memory:"
        )
    }
}

/// The `--store URL` that the key and usage commands take. `memory:` is not offered: it
/// would keep nothing between two commands.
struct KeyStoreOptions: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp(
            "Where keys and usage live: sqlite:PATH or redis://HOST:PORT[/DB] (password in TOLLGATE_REDIS_PASSWORD).", valueName: "URL")
    )
    var store: String = "sqlite:tollgate.sqlite"
}

/// What a command does with its store: a command that only reads must not create one.
enum StoreAccess {
    /// Reads (or changes) what is there; a missing SQLite file is an error.
    case existing
    /// May create the store, as `keys create` and `keys import` do.
    case create
}

/// Runs `body` with the store the options name.
///
/// The store logs nothing: a command's failure is the one line its error prints, and a
/// store's retries (Redis down) would otherwise print log lines before it.
func withStore<T>(
    _ options: KeyStoreOptions,
    _ access: StoreAccess,
    logger: Logger = Logger(label: "tollgate", factory: { _ in SwiftLogNoOpLogHandler() }),
    redisCommandTimeout: TimeAmount? = nil,
    _ body: (any KeyStore) async throws -> T
) async throws -> T {
    switch try StoreLocation(parsing: options.store) {
    case .memory:
        throw TollgateError(
            .invalidStoreURL,
            "the memory: store keeps nothing between commands, so this command would change nothing: use it with 'tollgate serve', or use sqlite:PATH"
        )
    case .sqlite(let path, let synchronous):
        if access == .existing && !FileManager.default.fileExists(atPath: path) {
            // Opening would create an empty database: a mistyped path would then look like
            // a store without keys.
            throw TollgateError(
                .invalidStoreURL,
                "no database at \(TollgateError.quote(path, limit: 1024)): check --store (sqlite:PATH, default sqlite:tollgate.sqlite, relative to the current directory); 'tollgate keys create' or 'tollgate serve' makes one"
            )
        }
        let store = try SQLiteKeyStore(configuration: .init(path: path, synchronous: synchronous), logger: logger)
        return try await body(store)
    case .redis(var configuration):
        if let redisCommandTimeout { configuration.redis.commandTimeout = max(configuration.redis.commandTimeout, redisCommandTimeout) }
        let store = try RedisKeyStore(configuration: configuration, logger: logger)
        try await store.connect()
        do {
            let result = try await body(store)
            await store.close()
            return result
        } catch {
            await store.close()
            throw error
        }
    }
}
