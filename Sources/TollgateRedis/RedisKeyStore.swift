import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization
import TollgateCore
import TollgateRESP

/// The shared store: keys and usage in Redis, so that several Tollgate instances share
/// keys and quotas exactly.
///
/// Every admission is one Lua script call ([`RedisScripts.admit`]) that checks the key's
/// record and takes all of a request's quotas atomically on Redis's clock; nothing is
/// counted in this process, so any number of instances may serve the same keys. Key
/// records are cached here by digest and follow a change stream in Redis (polled every
/// 200 ms), so creates, edits and revocations made elsewhere arrive within a second, and at
/// once here; the script refuses to count for a record that Redis no longer holds or holds
/// in another version, so a cached record never outlives Redis's.
///
/// Fail-closed: when Redis cannot be reached or answers late (the command timeout, 2 s by
/// default), a request is answered `503`: serving it would be serving uncounted. An
/// admission that Redis runs after its request was answered `503` gives its unit back.
public final class RedisKeyStore: KeyStore {
    public struct Configuration: Sendable {
        public var redis: RESPConfiguration
        /// How often this instance reads the change stream for keys changed elsewhere.
        public var changePollInterval: Duration = .milliseconds(200)
        /// How long a secret no key has is refused without asking Redis again.
        public var unknownKeyMilliseconds: Int64 = 1000
        /// How many key records this instance caches; beyond it the least recently used are
        /// dropped and read again from Redis when next used.
        public var cachedKeys = 1_000_000
        /// The prefix of every Redis key Tollgate writes, so that deployments can share a Redis.
        public var namespace = "tg"
        /// Admission script calls and key lookups: counts, errors, latency (none by default).
        public var metrics = StoreMetrics.disabled
        /// Control-plane writes (create, edit, rotate, revoke, usage reset, import) answer only
        /// once Redis has them on disk: Redis must append and fsync every write before it
        /// answers (`appendonly yes`, `appendfsync always`); checked at connect and with each
        /// write, refused otherwise (`?durable_writes=1` in the URL).
        public var durableWrites = false

        public init(redis: RESPConfiguration) {
            self.redis = redis
        }
    }

    public let configuration: Configuration
    let client: RESPClient
    let cache: Mutex<Cache>
    let names: RedisKeys
    let logger: Logger
    private let ready = Atomic<Bool>(false)
    /// Set when an admission found a held key gone from Redis: the run loop then reads the
    /// change stream from its new end.
    let storeLost = Atomic<Bool>(false)
    /// What the last check saw of Redis's identity; first taken by `connect()`, so that a
    /// loss right after start is seen too. Only the connect and the run loop touch it.
    private let identity = Mutex(StoreIdentity())

    public init(
        configuration: Configuration,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "tollgate.redis")
    ) throws(TollgateError) {
        self.configuration = configuration
        self.logger = logger
        names = RedisKeys(namespace: configuration.namespace)
        cache = Mutex(
            Cache(
                names: names,
                configuration: .init(capacity: configuration.cachedKeys, unknownKeyMilliseconds: configuration.unknownKeyMilliseconds)
            ))
        do {
            client = try RESPClient(configuration: configuration.redis, eventLoopGroup: eventLoopGroup, logger: logger)
        } catch {
            throw TollgateError(.invalidStoreURL, "the Redis store's settings are not valid: \(error.message)")
        }
    }

    /// Connects, failing with a clear error when Redis cannot be reached, or does not keep
    /// writes on disk as `durableWrites` asks: for the CLI, which runs one command and must
    /// say why it cannot, and for `serve`, which must not start on a promise it cannot keep.
    public func connect() async throws(TollgateError) {
        do {
            try await client.connect()
        } catch {
            throw TollgateError(
                .storeUnavailable,
                "cannot reach Redis at \(configuration.redis.host):\(configuration.redis.port) (\(error.message)): check that it runs and the URL and password are right"
            )
        }
        if configuration.durableWrites {
            do throws(TollgateError) {
                try await checkDurability()
            } catch {
                await client.close()
                throw error
            }
        }
        ready.store(true, ordering: .relaxed)
        // The identity later checks compare with.
        _ = await checkReady()
    }

    /// Closes the connections (the CLI calls it when done; `run()` does it on shutdown).
    public func close() async {
        await client.close()
    }

    // MARK: Service

    /// Keeps the connections, follows the change stream and checks Redis every 250 ms
    /// for `/readyz` and for data it lost, until graceful shutdown.
    public func run() async throws {
        client.start()
        var lastChange = await streamEnd() ?? "0-0"
        var lastCheck = ContinuousClock.now - .seconds(1)
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                try await Task.sleep(for: configuration.changePollInterval)
            } catch {
                break
            }
            if ContinuousClock.now - lastCheck >= .milliseconds(250) {
                lastCheck = ContinuousClock.now
                if await checkReady() { storeLost.store(true, ordering: .relaxed) }
            }
            if storeLost.exchange(false, ordering: .relaxed) {
                // Changes were lost with the data: start from the stream's new end (the
                // next tick tries again if Redis does not answer now).
                cache.withLock { $0.removeAll() }
                if let end = await streamEnd() { lastChange = end } else { storeLost.store(true, ordering: .relaxed) }
            }
            if let next = await followChanges(after: lastChange) { lastChange = next }
        }
        await client.close()
    }

    /// One round trip that tells whether Redis answers, and whether it lost what it held
    /// since the last check (see ``StoreIdentity``).
    /// - Returns: whether Redis lost its data (or restarted) since the last check.
    private func checkReady() async -> Bool {
        let token = StoreIdentity.newToken()
        let replies = await client.executePipeline([
            RESPCommand("SET", .string(names.marker), .string(token), "NX", "GET"),
            RESPCommand("INFO", "server"),
        ])
        var lost = false
        var isReady = false
        if replies.count == 2, case .success(let marker) = replies[0] {
            isReady = true
            let runID: String?
            if case .success(let info) = replies[1] { runID = StoreIdentity.runID(inInfo: info) } else { runID = nil }
            lost = identity.withLock { $0.observe(existing: marker.string, written: token, runID: runID) }
        }
        let wasReady = ready.exchange(isReady, ordering: .relaxed)
        if wasReady && !isReady {
            logger.error("Redis does not answer; answering 503 until it does")
        } else if !wasReady && isReady {
            logger.notice("Redis answers")
            // Changes made while this instance could not see them may be lost with the
            // stream (a Redis restart without persistence): read every record afresh.
            cache.withLock { $0.removeAll() }
        }
        if lost {
            logger.warning("Redis lost what it held or restarted (a new run_id or store marker); reading every key record afresh")
        }
        return lost
    }

    public func isReady() async -> Bool {
        ready.load(ordering: .relaxed)
    }
}
