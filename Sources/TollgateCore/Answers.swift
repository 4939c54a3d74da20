import NIOCore

/// Decisions for requests waiting on promises, completed from a store's own thread.
///
/// Completing a promise from another thread wakes its event loop; a commit or a batch of
/// lookups answers many requests at once, so they are handed to each loop in one task
/// rather than one wake-up per request.
public struct PendingAnswers: Sendable {
    private var byLoop: [ObjectIdentifier: (loop: any EventLoop, answers: [(EventLoopPromise<AdmissionDecision>, AdmissionDecision)])] =
        [:]

    public init() {}

    public mutating func add(_ promise: EventLoopPromise<AdmissionDecision>, _ decision: AdmissionDecision) {
        let loop = promise.futureResult.eventLoop
        byLoop[ObjectIdentifier(loop), default: (loop, [])].answers.append((promise, decision))
    }

    /// Completes every promise on its own event loop.
    public func send() {
        for (loop, answers) in byLoop.values {
            loop.execute {
                for (promise, decision) in answers { promise.succeed(decision) }
            }
        }
    }
}
