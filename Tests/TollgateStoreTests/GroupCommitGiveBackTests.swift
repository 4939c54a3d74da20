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

    /// Gives back `decision`'s units; the promise says, once the batch is applied, whether
    /// anything came back.
    func giveBack(_ ledger: QuotaLedger<GroupCommit>, _ decision: AdmissionDecision) throws -> EventLoopFuture<Bool> {
        let promise = loop.makePromise(of: Bool.self)
        guard case .queued = ledger.giveBack(try request, decision: decision, promise: promise) else {
            Issue.record("a give-back of a held key's admission is queued for the writer")
            promise.succeed(false)
            return promise.futureResult
        }
        return promise.futureResult
    }

    /// Written first, then taken off the held counts (and the written ones, so that nothing
    /// is netted against the next admission).
    @Test func aGiveBackIsWrittenWithTheNextBatchThenTakenOffMemory() throws {
        let ledger = ledger()
        let key = try issue("g", limits: ["5/total"])
        ledger.load(key)
        let decisions = try admitAndCommit(ledger, key, count: 2)
        #expect(decisions.allSatisfy { $0.outcome == .admitted })
        let given = try giveBack(ledger, decisions[0])
        #expect(ledger.snapshot(of: key.id)?.usage.counters["total"]?.used == 2, "nothing comes off before the file took it")
        let batch = try #require(ledger.takeBatch(), "a give-back starts a batch")
        #expect(batch.increments.isEmpty)
        #expect(batch.waiterCount == 0)
        #expect(batch.giveBacks.map(\.keyID) == [key.id])
        #expect(batch.giveBacks.first?.counters.map(\.counter) == ["total"])
        #expect(batch.giveBacks.first?.api == "api1")
        ledger.committed(batch, givenBack: [GiveBackOutcome(counters: [true], admitted: true)])
        loop.run()
        #expect(try given.wait())
        let usage = try #require(ledger.snapshot(of: key.id)?.usage)
        #expect(usage.counters["total"]?.used == 1)
        #expect(usage.apis["api1"]?.admitted == 1)
        #expect(ledger.takeBatch() == nil, "nothing left to write: the file has it")
    }

    /// Another process reset the key between the give-back and its write: the file's epoch
    /// guard takes nothing, memory takes nothing off, and the admission made meanwhile is
    /// written and kept (it was lost when memory netted the give-back against it).
    @Test func aGiveBackAfterAResetElsewhereNeverCancelsALaterAdmission() throws {
        let ledger = ledger()
        let key = try issue("g", limits: ["3/total"])
        ledger.load(key)
        let decisions = try admitAndCommit(ledger, key, count: 2)
        let given = try giveBack(ledger, decisions[1])
        let later = admit(ledger, key).1
        let batch = try #require(ledger.takeBatch())
        #expect(added(batch, "total") == [1], "the later admission is written")
        ledger.committed(batch, givenBack: [GiveBackOutcome(counters: [false], admitted: false)])
        loop.run()
        #expect(try later.wait().outcome == .admitted)
        #expect(try !given.wait(), "the file took nothing: the reset had")
        // The change feed brings the reset: the file holds the later admission only.
        let window = try #require(ledger.snapshot(of: key.id)?.usage.counters["total"]).windowStart
        ledger.refresh(
            key, version: 1, usageEpoch: 1,
            storedUsage: UsageSnapshot(
                keyID: key.id, counters: ["total": UsageCounter(windowStart: window, used: 1)], apis: ["api1": APIUsage(admitted: 1)]))
        #expect(ledger.snapshot(of: key.id)?.usage.counters["total"]?.used == 1)
        #expect(try admitAndCommit(ledger, key, count: 3).map(\.outcome) == [.admitted, .admitted, .quotaExceeded])
    }

    /// A batch that fails drops its give-backs: the units stay counted.
    @Test func aFailedBatchGivesNothingBack() throws {
        let ledger = ledger()
        let key = try issue("g", limits: ["5/total"])
        ledger.load(key)
        let decisions = try admitAndCommit(ledger, key, count: 1)
        let given = try giveBack(ledger, decisions[0])
        ledger.failed(try #require(ledger.takeBatch()))
        loop.run()
        #expect(try !given.wait())
        #expect(ledger.snapshot(of: key.id)?.usage.counters["total"]?.used == 1)
    }
}
