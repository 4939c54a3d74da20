import NIOCore
import NIOEmbedded
import Testing
import TollgateCore

@testable import TollgateSQLite

/// Give-backs in SQLite's journal: written as the difference, never below zero.
extension GroupCommitTests {
    /// Admits `count` requests and commits them; returns their decisions.
    func admitAndCommit(_ ledger: QuotaLedger<GroupCommit>, _ key: APIKey, count: Int) throws -> [AdmissionDecision] {
        let futures = (0..<count).map { _ in admit(ledger, key).1 }
        ledger.committed(try #require(ledger.takeBatch()))
        loop.run()
        return try futures.map { try $0.wait() }
    }

    var request: AdmissionRequest {
        get throws { AdmissionRequest(digest: try issue("g", limits: []).digest, api: "api1", path: "api1", now: start) }
    }

    @Test func aGiveBackIsWrittenAsANegativeIncrementWithTheNextBatch() throws {
        let ledger = ledger()
        let key = try issue("g", limits: ["5/total"])
        ledger.load(key)
        let decisions = try admitAndCommit(ledger, key, count: 2)
        #expect(decisions.allSatisfy { $0.outcome == .admitted })
        #expect(ledger.giveBack(try request, decision: decisions[0]))
        let batch = try #require(ledger.takeBatch(), "a give-back makes the key dirty")
        #expect(added(batch, "total") == [-1])
        #expect(batch.increments.first?.apis.first?.added.admitted == -1)
        #expect(batch.waiterCount == 0)
        ledger.committed(batch)
        #expect(ledger.snapshot(of: key.id)?.usage.counters["total"]?.used == 1)
    }

    /// A reset made by another process lands while a give-back is not yet written: the
    /// counts start from the reset's zero, not below it (which would admit one too many).
    @Test func aGiveBackNotYetWrittenNeverTakesAResetBelowZero() throws {
        let ledger = ledger()
        let key = try issue("g", limits: ["2/total"])
        ledger.load(key)
        let decisions = try admitAndCommit(ledger, key, count: 2)
        #expect(ledger.giveBack(try request, decision: decisions[0]))
        ledger.refresh(
            key, version: 1, usageEpoch: 1, storedUsage: UsageSnapshot(keyID: key.id, counters: [:], apis: [:]))
        let usage = try #require(ledger.snapshot(of: key.id)?.usage)
        #expect(usage.counters["total"]?.used == 0)
        #expect(usage.apis["api1"]?.admitted ?? 0 == 0)
        #expect(!ledger.giveBack(try request, decision: decisions[1]), "units from before the reset are not given back")
        #expect(try admitAndCommit(ledger, key, count: 3).map(\.outcome) == [.admitted, .admitted, .quotaExceeded])
    }
}
