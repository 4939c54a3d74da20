import Synchronization
import Testing

@testable import TollgateCore

/// KeyState as it was before it kept its written counts only while they differ (64754cf),
/// the model the new one must match increment for increment.
final class OldKeyState {
    private(set) var key: APIKey
    private(set) var policy: KeyPolicy
    /// One per ``KeyPolicy/counterIDs``, with what the store holds of it, as far as this
    /// process knows: a persistent store writes the difference, an increment, so that no
    /// write ever replaces a count another writer made.
    private var counters: [CounterSlot]
    /// Per API: admitted and refused counts, and what the store holds of them.
    private var apis: [APISlot]
    /// Moved on whenever the limits are replaced or the usage reset, so that units taken
    /// before are never given back to counters that did not take them. Drawn from one
    /// process-wide sequence, so that a key dropped from memory and loaded again never
    /// repeats a generation an earlier copy handed out in an ``AdmissionDecision/Receipt``.
    private(set) var generation = OldKeyState.nextGeneration()
    /// The store's version of the record held (SQLite's change `seq`), so that a late,
    /// older copy never replaces a newer one.
    var version: Int64
    /// How many times the usage was reset (the store's count, where it keeps one): a write
    /// counted before a reset must not land after it.
    private(set) var usageEpoch: Int64
    /// For a persistent store's journal: whether the key has counts not yet in a batch, and
    /// the last batch that carried its usage (the key may leave memory once it finished).
    var isDirty = false
    var lastBatch: Int64 = 0

    struct CounterSlot {
        var current: UsageCounter
        var written: UsageCounter
    }

    struct APISlot {
        var api: String
        var current: APIUsage
        var written: APIUsage
    }

    /// A key loaded with the usage the store holds for it (which is what counts as written).
    init(key: APIKey, policy: KeyPolicy, version: Int64, usageEpoch: Int64, usage: UsageSnapshot?) {
        self.key = key
        self.policy = policy
        self.version = version
        self.usageEpoch = usageEpoch
        let zero = UsageCounter(windowStart: 0, used: 0)
        counters = policy.counterIDs.map { id in
            let held = usage?.counters[id] ?? zero
            return CounterSlot(current: held, written: held)
        }
        apis = (usage?.apis ?? [:]).map { APISlot(api: $0.key, current: $0.value, written: $0.value) }
    }

    private static let generations = Atomic<Int64>(0)

    private static func nextGeneration() -> Int64 {
        generations.wrappingAdd(1, ordering: .relaxed).newValue
    }

    /// Takes a new record (an update or revocation) with its policy, keeping the counts of
    /// every counter the new limits still draw on.
    func replace(key: APIKey, policy: KeyPolicy) {
        self.key = key
        generation = Self.nextGeneration()
        guard policy !== self.policy else { return }
        let old = Dictionary(uniqueKeysWithValues: zip(self.policy.counterIDs, counters))
        let zero = UsageCounter(windowStart: 0, used: 0)
        counters = policy.counterIDs.map { old[$0] ?? CounterSlot(current: zero, written: zero) }
        self.policy = policy
    }

    /// Decides a request and, when it is admitted, takes one unit from every counter that
    /// applies: all or nothing, since the caller holds the ledger's lock throughout.
    func decide(_ request: AdmissionRequest) -> AdmissionDecision {
        if key.revokedAt != nil || key.refusesRetired(request.digest, at: request.now) {
            count(.keyRevoked, api: request.api)
            return AdmissionDecision(outcome: .keyRevoked, keyID: key.id)
        }
        if key.isExpired(at: request.now) {
            count(.keyExpired, api: request.api)
            return AdmissionDecision(outcome: .keyExpired, keyID: key.id)
        }
        let cached = policy.plan(for: request.path, key: key)
        let plan = cached.plan
        var used: [Int64] = []
        var windowStarts: [Int64] = []
        used.reserveCapacity(plan.counters.count)
        windowStarts.reserveCapacity(plan.counters.count)
        for (counter, slot) in zip(plan.counters, cached.slots) {
            let window = counter.period.window(containing: request.now)
            used.append(counters[slot].current.used(in: window))
            windowStarts.append(window.start)
        }
        var decision = plan.evaluate(used: used, now: request.now, keyID: key.id)
        if decision.outcome == .admitted {
            decision.receipt = AdmissionDecision.Receipt(decidedAt: request.now, generation: generation)
            for (index, slot) in cached.slots.enumerated() {
                // Never move a window backwards: after a clock step back, the later window
                // keeps counting rather than starting afresh.
                counters[slot].current = UsageCounter(
                    windowStart: max(counters[slot].current.windowStart, windowStarts[index]), used: used[index] + 1)
            }
        }
        count(decision.outcome, api: request.api)
        return decision
    }

    /// Undoes an admission whose request was not served (its commit failed or took too
    /// long): the per-API count, and one unit from each counter it took, unless that
    /// counter has since moved to a later window (then the unit is gone already).
    func giveBack(_ request: AdmissionRequest, generation: Int64) {
        guard generation == self.generation else { return }
        if let index = apis.firstIndex(where: { $0.api == request.api }), apis[index].current.admitted > 0 {
            apis[index].current.admitted -= 1
        }
        let cached = policy.plan(for: request.path, key: key)
        for (counter, slot) in zip(cached.plan.counters, cached.slots) {
            let window = counter.period.window(containing: request.now)
            if counters[slot].current.used(in: window) > 0 { counters[slot].current.used -= 1 }
        }
    }

    /// Gives back the units of an admitted request that was not served after all (see
    /// ``KeyStore/giveBack(_:decision:)``): nothing unless the key's generation is the
    /// receipt's; then the per-API admitted count, and one unit from each counter that is
    /// still in the window the receipt's instant falls in, never below zero.
    ///
    /// Stricter than ``giveBack(_:generation:)``: a counter in a later window, even one the
    /// unit went to after a clock step back, gets nothing, since it cannot be told from a
    /// counter that moved on.
    /// - Returns: whether anything changed.
    func giveBack(_ request: AdmissionRequest, receipt: AdmissionDecision.Receipt) -> Bool {
        guard receipt.generation == generation else { return false }
        var changed = false
        if let index = apis.firstIndex(where: { $0.api == request.api }), apis[index].current.admitted > 0 {
            apis[index].current.admitted -= 1
            changed = true
        }
        let cached = policy.plan(for: request.path, key: key)
        for (counter, slot) in zip(cached.plan.counters, cached.slots) {
            let window = counter.period.window(containing: receipt.decidedAt)
            if counters[slot].current.windowStart == window.start, counters[slot].current.used > 0 {
                counters[slot].current.used -= 1
                changed = true
            }
        }
        return changed
    }

    /// The counters a give-back for `request` would return a unit to, with the window it was
    /// taken in, as a persistent store writes them; `nil` when the receipt is of an earlier
    /// generation (a reset or an edit since), which gets nothing back.
    func giveBackTargets(
        _ request: AdmissionRequest, receipt: AdmissionDecision.Receipt
    ) -> [(counter: String, windowStart: Int64)]? {
        guard receipt.generation == generation else { return nil }
        let cached = policy.plan(for: request.path, key: key)
        return zip(cached.plan.counters, cached.slots).map { counter, slot in
            (policy.counterIDs[slot], counter.period.window(containing: receipt.decidedAt).start)
        }
    }

    /// A give-back the file has taken: one unit off the counter's held and written counts
    /// where they are in the unit's window, so that what remains to be written is unchanged.
    /// Found by id: an edit since may have changed the key's counters (and their slots).
    func applyWrittenGiveBack(counter: String, windowStart: Int64) {
        guard let slot = policy.counterIDs.firstIndex(of: counter) else { return }
        if counters[slot].current.windowStart == windowStart, counters[slot].current.used > 0 { counters[slot].current.used -= 1 }
        if counters[slot].written.windowStart == windowStart, counters[slot].written.used > 0 { counters[slot].written.used -= 1 }
    }

    /// As ``applyWrittenGiveBack(slot:windowStart:)``, for the API's admitted count.
    func applyWrittenGiveBack(api: String) {
        guard let index = apis.firstIndex(where: { $0.api == api }) else { return }
        if apis[index].current.admitted > 0 { apis[index].current.admitted -= 1 }
        if apis[index].written.admitted > 0 { apis[index].written.admitted -= 1 }
    }

    /// Starts every counter and per-API count again from zero, as the store does. A new
    /// generation, so that a request admitted before and answered `503` after gives nothing
    /// back to the new counts.
    ///
    /// `stored` is what the store holds after a reset made elsewhere (and writes since): the
    /// counts then start from it plus what this process counted and has not written yet (it
    /// will be written, as an increment, exactly as the store applies it).
    func resetUsage(epoch: Int64? = nil, stored: UsageSnapshot? = nil) {
        generation = Self.nextGeneration()
        usageEpoch = epoch ?? usageEpoch + 1
        let zero = UsageCounter(windowStart: 0, used: 0)
        guard let stored else {
            counters = counters.map { _ in CounterSlot(current: zero, written: zero) }
            apis = []
            return
        }
        for (index, id) in policy.counterIDs.enumerated() {
            let now = counters[index].current
            let before = counters[index].written
            let held = stored.counters[id] ?? zero
            var current = held
            if now != before {
                let added = now.windowStart == before.windowStart ? now.used - before.used : now.used
                if now.windowStart > held.windowStart {
                    current = UsageCounter(windowStart: now.windowStart, used: max(0, added))
                } else if now.windowStart == held.windowStart {
                    // Units given back and not yet written may exceed what the reset left.
                    current.used = max(0, current.used + added)
                }
            }
            counters[index] = CounterSlot(current: current, written: held)
        }
        var merged: [APISlot] = stored.apis.map { APISlot(api: $0.key, current: $0.value, written: $0.value) }
        for slot in apis where slot.current != slot.written {
            let added = slot.current.subtracting(slot.written)
            if let index = merged.firstIndex(where: { $0.api == slot.api }) {
                merged[index].current = merged[index].current.adding(added)
                merged[index].current.admitted = max(0, merged[index].current.admitted)
            } else {
                var current = added
                current.admitted = max(0, current.admitted)
                merged.append(APISlot(api: slot.api, current: current, written: APIUsage()))
            }
        }
        apis = merged
    }

    private func count(_ outcome: AdmissionDecision.Outcome, api: String) {
        // A key reaches a few APIs: a scan of a small array beats hashing into a dictionary.
        if let index = apis.firstIndex(where: { $0.api == api }) {
            apis[index].current.count(outcome)
        } else {
            var usage = APIUsage()
            usage.count(outcome)
            apis.append(APISlot(api: api, current: usage, written: APIUsage()))
        }
    }

    /// What changed since the last call, as increments for the store; from then on the
    /// changes count as written. ``restore(_:)`` undoes that if the write fails.
    func takeIncrement() -> UsageIncrement {
        var increment = UsageIncrement(keyID: key.id, usageEpoch: usageEpoch)
        for index in counters.indices where counters[index].current != counters[index].written {
            let now = counters[index].current
            let before = counters[index].written
            // A later window starts from zero, so its whole count is the increment.
            let added = now.windowStart == before.windowStart ? now.used - before.used : now.used
            increment.counters.append(
                .init(counter: policy.counterIDs[index], windowStart: now.windowStart, added: added, before: before))
            counters[index].written = now
        }
        for index in apis.indices where apis[index].current != apis[index].written {
            let before = apis[index].written
            increment.apis.append(.init(api: apis[index].api, added: apis[index].current.subtracting(before), before: before))
            apis[index].written = apis[index].current
        }
        return increment
    }

    /// A write of `increment` failed: what it carried counts as unwritten again, so that the
    /// next increment includes it. Not after a reset: the store's counts were deleted, and
    /// the written counts are zero, as they should be.
    func restore(_ increment: UsageIncrement) {
        guard increment.usageEpoch == usageEpoch else { return }
        for write in increment.counters {
            if let index = policy.counterIDs.firstIndex(of: write.counter) { counters[index].written = write.before }
        }
        for write in increment.apis {
            if let index = apis.firstIndex(where: { $0.api == write.api }) { apis[index].written = write.before }
        }
    }

    var snapshot: UsageSnapshot {
        UsageSnapshot(
            keyID: key.id,
            counters: Dictionary(uniqueKeysWithValues: zip(policy.counterIDs, counters.map(\.current))),
            apis: Dictionary(apis.map { ($0.api, $0.current) }, uniquingKeysWith: { a, _ in a })
        )
    }
}
