import NIOCore
import TollgateCore

/// SQLite's journal: the admitted requests waiting for their usage to be committed, and the
/// keys with counts not yet written.
///
/// It lives under the ledger's lock (see ``UsageJournal``), so a decision and its place in
/// the queue are one step. The store's writer takes everything counted since the last batch
/// with ``QuotaLedger/takeBatch()``, commits it in one transaction, and reports back: every
/// request that arrived during a commit shares the next one (group commit).
struct GroupCommit: UsageJournal {
    struct Waiter: Waiting {
        var promise: EventLoopPromise<AdmissionDecision>
        var decision: AdmissionDecision
        /// What was decided, so that the units can be given back if the request is not served.
        var request: AdmissionRequest
        var key: KeyState
        /// The key's generation when the units were taken (see ``KeyState/generation``).
        var generation: Int64
        var enqueuedAt: NIODeadline
    }

    /// Keys with counts not yet in a batch.
    var dirty: [KeyState] = []
    /// Admitted requests waiting for their commit: those of the next batch, and those of the
    /// batch being committed (its number is the number of batches handed to the writer).
    var commits = BatchQueue<Waiter>()
    /// What the batch in flight writes, kept until its commit ends (even once its requests
    /// were answered `503`), so that a failed write counts as unwritten again.
    var committingIncrements: [(KeyState, UsageIncrement)] = []
    /// The last batch the writer finished.
    var batchesFinished: Int64 = 0

    init() {}

    static var writesIncrements: Bool { true }

    mutating func record(
        _ decision: AdmissionDecision, of request: AdmissionRequest, by key: KeyState, promise: EventLoopPromise<AdmissionDecision>
    ) -> Bool? {
        markDirty(key)
        // A refusal's count may wait for the next commit or the store's periodic flush: a
        // flood of refused requests then costs no writes of its own.
        guard decision.outcome == .admitted else { return nil }
        return commits.append(
            Waiter(promise: promise, decision: decision, request: request, key: key, generation: key.generation, enqueuedAt: .now()))
    }

    /// A key may leave memory once nothing it counted is still to be written.
    func mayDrop(_ key: KeyState) -> Bool {
        !key.isDirty && key.lastBatch <= batchesFinished
    }

    /// Give-backs waiting for the next batch, and those of the batch in flight.
    var giveBacks: [PendingGiveBack] = []
    var committingGiveBacks: [PendingGiveBack] = []

    /// A give-back is written first and taken off the held counts after, only as far as the
    /// file took it: in memory it would be netted against the next admission, and if another
    /// process reset the key meanwhile, that admission would never reach the file. The unit
    /// comes back with the next batch (the store starts one at once).
    mutating func giveBack(
        _ request: AdmissionRequest, receipt: AdmissionDecision.Receipt, key: KeyState, promise: EventLoopPromise<Bool>?
    ) -> GiveBackResult {
        guard let targets = key.giveBackTargets(request, receipt: receipt) else { return .done(false) }
        let write = GiveBackWrite(
            keyID: key.key.id, usageEpoch: key.usageEpoch, api: request.api,
            counters: targets.map { GiveBackWrite.Target(counter: $0.counter, windowStart: $0.windowStart) })
        giveBacks.append(PendingGiveBack(key: key, write: write, promise: promise))
        // Dirty, so that the key stays in memory until the batch carrying this is written.
        markDirty(key)
        return .queued(flush: commits.wake())
    }

    mutating func markDirty(_ key: KeyState) {
        if !key.isDirty {
            key.markDirty()
            dirty.append(key)
        }
    }

    /// What every dirty key counted since its last batch, for batch `number`, kept as what
    /// the batch in flight writes.
    mutating func takeIncrements(inBatch number: Int64) -> [UsageIncrement] {
        committingIncrements.removeAll(keepingCapacity: true)
        var increments: [UsageIncrement] = []
        increments.reserveCapacity(dirty.count)
        for key in dirty {
            key.markTaken(inBatch: number)
            let increment = key.takeIncrement()
            guard !increment.isEmpty else { continue }
            increments.append(increment)
            committingIncrements.append((key, increment))
        }
        dirty.removeAll(keepingCapacity: true)
        return increments
    }

    /// Gives back the units an admitted request took, for a request that is answered `503`.
    mutating func giveBack(_ waiter: Waiter) {
        waiter.key.giveBack(waiter.request, generation: waiter.generation)
        markDirty(waiter.key)
    }
}

/// A give-back queued in the journal: what to write, and what to take off the held counts
/// once the file took it.
struct PendingGiveBack {
    var key: KeyState
    var write: GiveBackWrite
    var promise: EventLoopPromise<Bool>?
}

/// One unit off each counter in the window it was taken in, and off the API's admitted
/// count, in the file: only while the key's usage epoch is the one the unit was counted
/// under (a reset since, by any process, took it already) and never below zero.
struct GiveBackWrite: Sendable, Equatable {
    struct Target: Sendable, Equatable {
        var counter: String
        var windowStart: Int64
    }
    var keyID: KeyID
    var usageEpoch: Int64
    var api: String
    var counters: [Target]
}

/// What the file took of a ``GiveBackWrite``: per counter, and the admitted count.
struct GiveBackOutcome: Sendable, Equatable {
    var counters: [Bool]
    var admitted: Bool

    var tookAnything: Bool { admitted || counters.contains(true) }
}

/// Usage to write: increments per key. The requests that wait on it stay in the journal,
/// so that a commit that fails or takes too long can answer them `503` and give their
/// units back.
struct CommitBatch: Sendable, Equatable {
    var increments: [UsageIncrement]
    /// Written after the increments, so that a unit counted in this batch can be given back.
    var giveBacks: [GiveBackWrite] = []
    var number: Int64
    /// How many admitted requests wait on this batch.
    var waiterCount: Int
}

extension QuotaLedger where Journal == GroupCommit {
    /// Takes everything counted since the last batch; `nil`, and the writer stops, when
    /// there is nothing. The writer calls this in a loop until `nil`, so that requests
    /// arriving during a commit share the next one.
    func takeBatch() -> CommitBatch? {
        withState { _, journal -> CommitBatch? in
            guard !journal.dirty.isEmpty || !journal.commits.pending.isEmpty || !journal.giveBacks.isEmpty else {
                journal.commits.stop()
                return nil
            }
            let increments = journal.takeIncrements(inBatch: journal.commits.nextNumber)
            // The commit starts once its increments are taken.
            let number = journal.commits.startBatch(at: .now())
            // Swap rather than copy, so that neither array is reallocated per batch.
            swap(&journal.committingGiveBacks, &journal.giveBacks)
            journal.giveBacks.removeAll(keepingCapacity: true)
            return CommitBatch(
                increments: increments, giveBacks: journal.committingGiveBacks.map(\.write), number: number,
                waiterCount: journal.commits.inFlight.count)
        }
    }

    /// The writer stopped early (after a failure): the next admitted request starts it again.
    func flushStopped() {
        withState { _, journal in journal.commits.stop() }
    }

    /// The writer committed `batch`: its requests are answered with their decisions, and
    /// its give-backs, as far as the file took them (`givenBack`, one per
    /// ``CommitBatch/giveBacks``), come off the held counts.
    func committed(_ batch: CommitBatch, givenBack: [GiveBackOutcome] = []) {
        let (answers, gave) = withState { _, journal -> (PendingAnswers, [(EventLoopPromise<Bool>?, Bool)]) in
            journal.batchesFinished = max(journal.batchesFinished, batch.number)
            var gave: [(EventLoopPromise<Bool>?, Bool)] = []
            if journal.commits.number == batch.number {
                journal.committingIncrements.removeAll(keepingCapacity: true)
                for (giveBack, outcome) in zip(journal.committingGiveBacks, givenBack) {
                    // The file's guard was the usage epoch; memory follows the same rule (a
                    // reset moves it, an edit does not), so the two take the same units off.
                    let applies = giveBack.key.usageEpoch == giveBack.write.usageEpoch
                    if applies {
                        for (target, took) in zip(giveBack.write.counters, outcome.counters) where took {
                            giveBack.key.applyWrittenGiveBack(counter: target.counter, windowStart: target.windowStart)
                        }
                        if outcome.admitted { giveBack.key.applyWrittenGiveBack(api: giveBack.write.api) }
                    }
                    gave.append((giveBack.promise, outcome.tookAnything))
                }
                journal.committingGiveBacks.removeAll(keepingCapacity: true)
            }
            var answers = PendingAnswers()
            for waiter in journal.commits.finish(batch.number) { answers.add(waiter.promise, waiter.decision) }
            return (answers, gave)
        }
        answers.send()
        for (promise, given) in gave { promise?.succeed(given) }
    }

    /// The writer could not commit `batch`: its requests are answered `503` and take
    /// nothing, like any refusal, and what it carried counts as unwritten again.
    func failed(_ batch: CommitBatch) {
        let (answers, dropped) = withState { _, journal -> (PendingAnswers, [EventLoopPromise<Bool>?]) in
            journal.batchesFinished = max(journal.batchesFinished, batch.number)
            var dropped: [EventLoopPromise<Bool>?] = []
            if journal.commits.number == batch.number {
                for (key, increment) in journal.committingIncrements {
                    key.restore(increment)
                    journal.markDirty(key)
                }
                journal.committingIncrements.removeAll(keepingCapacity: true)
                // A give-back is best effort: one the store could not write gives nothing.
                dropped = journal.committingGiveBacks.map(\.promise)
                journal.committingGiveBacks.removeAll(keepingCapacity: true)
            }
            return (journal.refuse(journal.commits.finish(batch.number)), dropped)
        }
        answers.send()
        for promise in dropped { promise?.succeed(false) }
    }

    /// Answers `503`, giving their units back, every admitted request that has waited
    /// longer than `bound` for its commit: the one in flight if it started before
    /// `now - bound`, and those queued behind it since then.
    ///
    /// The commit may still land later. The units given back are then counted in the file
    /// and not in memory, and the next batch writes the difference (a negative increment);
    /// if it fails instead, what it carried counts as unwritten again. Either way the file
    /// ends up with what memory holds, and until then it can only count too much.
    /// - Returns: whether the writer is behind: a commit has been running for longer than
    ///   `bound`, or requests waited that long for one to start.
    @discardableResult
    func expireWaiters(olderThan bound: TimeAmount, now: NIODeadline = .now()) -> Bool {
        let (answers, stalled) = withState { _, journal -> (PendingAnswers, Bool) in
            let (expired, stalled) = journal.commits.expire(olderThan: bound, now: now)
            return (journal.refuse(expired), stalled)
        }
        answers.send()
        return stalled
    }
}

extension GroupCommit {
    /// Gives back the units of requests that will not be served, and answers them `503`.
    mutating func refuse(_ waiters: [Waiter]) -> PendingAnswers {
        var answers = PendingAnswers()
        for waiter in waiters {
            giveBack(waiter)
            answers.add(waiter.promise, .storeUnavailable)
        }
        return answers
    }
}
