import CoreMetrics
import NIOCore

/// A store's metrics: operations and errors by kind, how long they take, how many requests
/// one commit carries, and how many keys were looked up (cache misses).
///
/// Handles are made once, from a factory the caller passes (never the global
/// `MetricsSystem`), so that a library never needs a bootstrapped system and tests read
/// their own registry. Every method costs an atomic add or a short lock; the stores call
/// them once per commit or lookup batch, not per request.
public struct StoreMetrics: Sendable {
    /// What a store does that is worth counting.
    public enum Operation: String, Sendable, CaseIterable {
        /// A group commit (SQLite): one transaction for many requests' usage.
        case commit
        /// A batch of key lookups in the store (keys not held in memory).
        case lookup
        /// One admission script call (Redis).
        case admit
    }

    private struct Handles: Sendable {
        var operations: [Counter]
        var errors: [Counter]
        var durations: [Timer]
        var commitRequests: Recorder
        var lookups: Counter
    }

    private let handles: Handles?

    /// Metrics that go nowhere, for stores made without a factory (tests, the CLI).
    public static let disabled = StoreMetrics(handles: nil)

    private init(handles: Handles?) { self.handles = handles }

    /// - Parameter store: the `store` label (`sqlite`, `redis`): bounded, never a path.
    public init(store: String, factory: any MetricsFactory) {
        let operations = Operation.allCases
        handles = Handles(
            operations: operations.map {
                Counter(
                    label: "tollgate_store_operations_total", dimensions: [("store", store), ("operation", $0.rawValue)], factory: factory)
            },
            errors: operations.map {
                Counter(label: "tollgate_store_errors_total", dimensions: [("store", store), ("operation", $0.rawValue)], factory: factory)
            },
            durations: operations.map {
                Timer(
                    label: "tollgate_store_duration_seconds", dimensions: [("store", store), ("operation", $0.rawValue)], factory: factory)
            },
            commitRequests: Recorder(label: "tollgate_store_commit_requests", dimensions: [("store", store)], factory: factory),
            lookups: Counter(label: "tollgate_store_lookups_total", dimensions: [("store", store)], factory: factory)
        )
    }

    private static func index(_ operation: Operation) -> Int {
        switch operation {
        case .commit: 0
        case .lookup: 1
        case .admit: 2
        }
    }

    /// An operation finished with `result`; see ``finished(_:startedAt:succeeded:requests:)``.
    public func finished<Success, Failure: Error>(
        _ operation: Operation, startedAt start: NIODeadline, result: Result<Success, Failure>, requests: Int = 1
    ) {
        guard handles != nil else { return }
        let succeeded: Bool
        switch result {
        case .success: succeeded = true
        case .failure: succeeded = false
        }
        finished(operation, startedAt: start, succeeded: succeeded, requests: requests)
    }

    /// An operation finished: counts it (and its failure) and records how long it took.
    /// - Parameter requests: for a commit, the requests it carried (the batch size); for a
    ///   lookup, the keys looked up (memory misses); ignored otherwise.
    public func finished(_ operation: Operation, startedAt start: NIODeadline, succeeded: Bool, requests: Int = 1) {
        guard let handles else { return }
        let index = Self.index(operation)
        handles.operations[index].increment()
        if !succeeded { handles.errors[index].increment() }
        handles.durations[index].recordNanoseconds((NIODeadline.now() - start).nanoseconds)
        switch operation {
        case .commit: handles.commitRequests.record(requests)
        case .lookup: handles.lookups.increment(by: requests)
        case .admit: break
        }
    }
}
