import Testing

@testable import TollgateCore

/// KeyState keeps what the store holds only while it differs from the counts; the
/// increments it hands a persistent store must be exactly those of the copy that kept both
/// counts always (``OldKeyState``), through every path that changes counts.
@Suite struct KeyStateModelTests {
    static let start = Timestamp(millisecondsSinceEpoch: 1_700_000_000_000)

    struct Admitted {
        var request: AdmissionRequest
        var new: AdmissionDecision.Receipt
        var old: AdmissionDecision.Receipt
    }

    @Test(arguments: 1...12 as ClosedRange<UInt64>) func incrementsAndCountsMatchTheOldCopyStepForStep(seed: UInt64) {
        var random = SplitMix(seed: seed)
        let shapes = [
            [LimitSpec(scope: .tree("api1"), quota: 6, period: .minute), LimitSpec(scope: .all, quota: 20, period: .hour)],
            [LimitSpec(scope: .all, quota: 20, period: .hour), LimitSpec(scope: .tree("api2"), quota: 3, period: .second)],
        ]
        let policies = shapes.map { KeyPolicy(scopes: [.all], limits: $0) }
        var shape = 0
        var key = APIKey(
            id: KeyID(rawValue: "key_model"), digest: KeyDigest(secret: "model"), scopes: [.all], limits: shapes[0], createdAt: Self.start)
        let loaded = UsageSnapshot(
            keyID: key.id, counters: [policies[0].counterIDs[1]: UsageCounter(windowStart: 0, used: 3)],
            apis: ["api1": APIUsage(admitted: 2, quotaExceeded: 1)])
        let new = KeyState(key: key, policy: policies[0], version: 1, usageEpoch: 0, usage: loaded)
        let old = OldKeyState(key: key, policy: policies[0], version: 1, usageEpoch: 0, usage: loaded)
        var now = Self.start
        var epoch: Int64 = 0
        var admitted: [Admitted] = []
        var inFlight: [(new: UsageIncrement, old: UsageIncrement)] = []
        func pick<T>(_ array: [T]) -> Int? { array.isEmpty ? nil : Int(random.next() % UInt64(array.count)) }

        for step in 0..<4000 {
            switch random.next() % 100 {
            case 0..<45:
                let api = ["api1", "api2", "api3"][Int(random.next() % 3)]
                let request = AdmissionRequest(digest: key.digest, api: api, path: api + "/x", now: now)
                let (a, b) = (new.decide(request), old.decide(request))
                #expect(a.outcome == b.outcome, "step \(step)")
                if let receiptA = a.receipt, let receiptB = b.receipt {
                    admitted.append(Admitted(request: request, new: receiptA, old: receiptB))
                }
            case 45..<52:
                if let index = pick(admitted) {
                    let held = admitted.remove(at: index)
                    new.giveBack(held.request, generation: held.new.generation)
                    old.giveBack(held.request, generation: held.old.generation)
                }
            case 52..<58:
                if let index = pick(admitted) {
                    let held = admitted.remove(at: index)
                    #expect(new.giveBack(held.request, receipt: held.new) == old.giveBack(held.request, receipt: held.old))
                }
            case 58..<63:
                if let index = pick(admitted), let targets = new.giveBackTargets(admitted[index].request, receipt: admitted[index].new) {
                    for target in targets {
                        new.applyWrittenGiveBack(counter: target.counter, windowStart: target.windowStart)
                        old.applyWrittenGiveBack(counter: target.counter, windowStart: target.windowStart)
                    }
                    new.applyWrittenGiveBack(api: admitted[index].request.api)
                    old.applyWrittenGiveBack(api: admitted[index].request.api)
                    admitted.remove(at: index)
                }
            case 63..<76:
                let (a, b) = (new.takeIncrement(), old.takeIncrement())
                #expect(a == b, "step \(step)")
                if !a.isEmpty { inFlight.append((a, b)) }
            case 76..<81:
                if let index = pick(inFlight) {
                    let held = inFlight.remove(at: index)
                    new.restore(held.new)
                    old.restore(held.old)
                }
            case 81..<83:
                new.resetUsage()
                old.resetUsage()
                epoch += 1
            case 83..<86:
                // A reset elsewhere, and writes since: the store holds other counts.
                epoch += 1 + Int64(random.next() % 3)
                var stored = new.snapshot
                for id in stored.counters.keys where random.next() % 2 == 0 {
                    stored.counters[id]!.used = Int64(random.next() % 4)
                }
                if random.next() % 2 == 0 { stored.apis["api2"] = APIUsage(admitted: Int64(random.next() % 3)) }
                if random.next() % 3 == 0 { stored.apis["api1"] = nil }
                new.resetUsage(epoch: epoch, stored: stored)
                old.resetUsage(epoch: epoch, stored: stored)
            case 86..<90:
                shape = random.next() % 2 == 0 ? 1 - shape : shape
                key.limits = shapes[shape]
                new.replace(key: key, policy: policies[shape])
                old.replace(key: key, policy: policies[shape])
            default:
                // Mostly forward, by up to a minute and a half; now and then a step back.
                let delta = random.next() % 10 == 0 ? -5_000 : Int64(random.next() % 90_000)
                now = Timestamp(millisecondsSinceEpoch: now.millisecondsSinceEpoch + delta)
            }
            #expect(new.snapshot == old.snapshot, "step \(step)")
            #expect(new.usageEpoch == old.usageEpoch)
        }
        #expect(new.takeIncrement() == old.takeIncrement())
    }
}

/// A key of a store whose memory is its only copy keeps no written counts: nothing would
/// ever take them, so each used key would hold a second copy for good.
@Suite struct UntrackedKeyStateTests {
    @Test func aKeyWithoutAJournalCountsButHasNothingToWrite() {
        let limits = [LimitSpec(scope: .all, quota: 2, period: .hour)]
        let key = APIKey(
            id: KeyID(rawValue: "key_memory"), digest: KeyDigest(secret: "memory"), scopes: [.all], limits: limits,
            createdAt: KeyStateModelTests.start)
        let state = KeyState(
            key: key, policy: KeyPolicy(scopes: [.all], limits: limits), version: 0, usageEpoch: 0, usage: nil, keepsWrittenCounts: false)
        let request = AdmissionRequest(digest: key.digest, api: "api1", path: "api1", now: KeyStateModelTests.start)
        #expect((0..<3).map { _ in state.decide(request).outcome } == [.admitted, .admitted, .quotaExceeded])
        #expect(state.snapshot.apis["api1"] == APIUsage(admitted: 2, quotaExceeded: 1))
        #expect(state.takeIncrement().isEmpty)
        #expect(!state.isDirty)
    }
}
