import NIOCore
import NIOEmbedded
import Testing
import TollgateCore

@testable import TollgateSQLite

/// SQLite's journal on the shared ledger: admitted answers wait for their batch, batches
/// carry increments, and requests that are not served take nothing.
@Suite struct GroupCommitTests {
    let loop = EmbeddedEventLoop()
    let start = Timestamp(secondsSinceEpoch: 1_796_000_000)

    func ledger(capacity: Int? = nil) -> QuotaLedger<GroupCommit> {
        QuotaLedger(cache: .init(capacity: capacity))
    }

    func issue(_ secret: String, limits: [String]) throws -> APIKey {
        let draft = KeyDraft(scopes: [.all], limits: try limits.map { try LimitSpec(parsing: $0) })
        return try KeyIssuer.issue(draft, secret: secret, now: start).key
    }

    /// One request's answer: the promise completes on commit.
    func admit(
        _ ledger: QuotaLedger<GroupCommit>, _ key: APIKey, _ path: String = "api1"
    ) -> (QuotaLedger<GroupCommit>.Admission, EventLoopFuture<AdmissionDecision>) {
        let promise = loop.makePromise(of: AdmissionDecision.self)
        let request = AdmissionRequest(digest: key.digest, api: path, path: path, now: start)
        let admission = ledger.admit(request, promise: promise)
        switch admission {
        case .decided(let decision): promise.succeed(decision)
        case .unknownKey: promise.succeed(.invalidKey)
        case .awaitingCommit: break
        }
        return (admission, promise.futureResult)
    }

    /// What a batch adds to one counter of its only key.
    func added(_ batch: CommitBatch, _ counter: String) -> [Int64] {
        batch.increments.map { increment in increment.counters.first { $0.counter == counter }?.added ?? 0 }
    }

    @Test func admittedAnswersWaitUntilTheirBatchCommits() throws {
        let ledger = ledger()
        let key = try issue("k", limits: ["10/total"])
        ledger.load(key)
        let request = AdmissionRequest(digest: key.digest, api: "api1", path: "api1", now: start)
        let first = loop.makePromise(of: AdmissionDecision.self)
        let second = loop.makePromise(of: AdmissionDecision.self)
        guard case .awaitingCommit(flush: true) = ledger.admit(request, promise: first),
            case .awaitingCommit(flush: false) = ledger.admit(request, promise: second)
        else {
            Issue.record("admitted requests wait, and only the first asks for a flush")
            return
        }
        var answered = 0
        first.futureResult.assumeIsolated().whenSuccess { _ in answered += 1 }
        second.futureResult.assumeIsolated().whenSuccess { _ in answered += 1 }
        let batch = try #require(ledger.takeBatch())
        #expect(added(batch, "total") == [2])
        #expect(batch.increments.first?.apis.first?.added.admitted == 2)
        #expect(answered == 0)
        ledger.committed(batch)
        loop.run()  // completions hop to the promises' loop, once per loop
        #expect(answered == 2)
        #expect(ledger.takeBatch() == nil)
    }

    @Test func batchesCarryIncrementsNeverTotals() throws {
        let ledger = ledger()
        let key = try issue("k", limits: ["10/total"])
        // The file holds 4 already: the next batch adds what this process counted.
        ledger.load(key, usage: UsageSnapshot(keyID: key.id, counters: ["total": .init(windowStart: 0, used: 4)], apis: [:]))
        _ = admit(ledger, key)
        let batch = try #require(ledger.takeBatch())
        #expect(added(batch, "total") == [1])
        ledger.committed(batch)
        #expect(ledger.snapshot(of: key.id)?.usage.counters["total"]?.used == 5)
    }

    @Test func beyondItsCapacityTheLedgerDropsOnlyKeysWhoseUsageIsCommitted() throws {
        let ledger = ledger(capacity: 2)
        let (a, b, c) = (try issue("a", limits: ["9/total"]), try issue("b", limits: ["9/total"]), try issue("c", limits: ["9/total"]))
        ledger.load(a)
        ledger.load(b)
        // a is used: its count waits on a commit, so it must not be dropped yet.
        guard case (.awaitingCommit, let answer) = admit(ledger, a) else {
            Issue.record("an admitted request waits for its commit")
            return
        }
        ledger.load(c)
        #expect(ledger.heldKeyCount == 2)
        #expect(ledger.snapshot(of: a.id) != nil, "a key with uncommitted usage stays")
        #expect(ledger.snapshot(of: b.id) == nil, "the least recently used clean key goes")
        // Once a's usage is committed, a is as droppable as any other idle key.
        let batch = try #require(ledger.takeBatch())
        #expect(batch.increments.map(\.keyID) == [a.id])
        ledger.committed(batch)
        loop.run()
        #expect(try answer.wait().outcome == .admitted)
        ledger.load(b)
        #expect(ledger.heldKeyCount == 2)
        #expect(ledger.snapshot(of: c.id) != nil)
        #expect(ledger.snapshot(of: b.id) != nil)
    }

    // MARK: Requests that are not served take nothing

    @Test func aFailedCommitAnswers503AndGivesTheUnitsBack() throws {
        let ledger = ledger()
        let key = try issue("p", limits: ["2/total", "api1:5/day"])
        ledger.load(key)
        let (_, first) = admit(ledger, key)
        let (_, second) = admit(ledger, key)
        ledger.failed(try #require(ledger.takeBatch()))
        loop.run()
        #expect(try first.wait().outcome == .storeUnavailable)
        #expect(try second.wait().outcome == .storeUnavailable)
        let usage = try #require(ledger.snapshot(of: key.id)).usage
        #expect(usage.counters["total"]?.used == 0, "a request that was not served takes nothing")
        #expect(usage.counters["api1:day"]?.used == 0)
        #expect(usage.apis["api1"]?.admitted == 0)
        // The file never saw those units: the next batch writes only what comes after.
        for _ in 0..<2 {
            let (_, answer) = admit(ledger, key)
            let batch = try #require(ledger.takeBatch())
            #expect(added(batch, "total") == [1])
            ledger.committed(batch)
            loop.run()
            #expect(try answer.wait().outcome == .admitted)
        }
        guard case .decided(let spent) = admit(ledger, key).0 else {
            Issue.record("a spent quota is refused at once")
            return
        }
        #expect(spent.outcome == .quotaExceeded)
    }

    @Test func aCommitOutlivingTheBoundAnswers503ThenLandsAndIsCorrected() throws {
        let ledger = ledger()
        let key = try issue("p", limits: ["10/total"])
        ledger.load(key)
        let (_, inFlight) = admit(ledger, key)
        let hung = try #require(ledger.takeBatch())
        #expect(added(hung, "total") == [1])
        let (_, queued) = admit(ledger, key)
        let now = NIODeadline.now()
        #expect(!ledger.expireWaiters(olderThan: .seconds(2), now: now), "within the bound nothing is answered")
        #expect(ledger.expireWaiters(olderThan: .seconds(2), now: now + .seconds(3)), "past the bound the commit is stalled")
        loop.run()
        #expect(try inFlight.wait().outcome == .storeUnavailable)
        #expect(try queued.wait().outcome == .storeUnavailable)
        #expect(try #require(ledger.snapshot(of: key.id)).usage.counters["total"]?.used == 0)
        // The hung commit lands at last with its unit: nobody is answered twice, and the
        // next batch takes back the unit that was given back.
        ledger.committed(hung)
        loop.run()
        let next = try #require(ledger.takeBatch())
        #expect(added(next, "total") == [-1])
        #expect(next.waiterCount == 0)
    }

    @Test func aHungCommitThatFailsLateLeavesNothingUnwritten() throws {
        let ledger = ledger()
        let key = try issue("p", limits: ["10/total"])
        ledger.load(key)
        _ = admit(ledger, key)
        let hung = try #require(ledger.takeBatch())
        ledger.expireWaiters(olderThan: .seconds(2), now: .now() + .seconds(3))
        // Meanwhile another request is admitted and waits for the next batch.
        let (_, later) = admit(ledger, key)
        ledger.failed(hung)
        let next = try #require(ledger.takeBatch())
        #expect(added(next, "total") == [1], "the given-back unit is gone, the later one is written")
        ledger.committed(next)
        loop.run()
        #expect(try later.wait().outcome == .admitted)
    }

    @Test func unitsTakenUnderOldLimitsAreNotGivenBackToNewOnes() throws {
        let ledger = ledger()
        var key = try issue("p", limits: ["5/total"])
        ledger.load(key)
        let (_, answer) = admit(ledger, key)
        ledger.committed(try #require(ledger.takeBatch()))
        let (_, failing) = admit(ledger, key)
        key.limits = [try LimitSpec(parsing: "5/total"), try LimitSpec(parsing: "3/day")]
        ledger.refresh(key, version: nil)
        ledger.failed(try #require(ledger.takeBatch()))
        loop.run()
        #expect(try answer.wait().outcome == .admitted)
        #expect(try failing.wait().outcome == .storeUnavailable)
        let counters = try #require(ledger.snapshot(of: key.id)).usage.counters
        // Conservative: the limits changed in between, so no counter is lowered; the unit
        // the failed batch carried is written again.
        #expect(counters["total"]?.used == 2)
        #expect(counters["day"]?.used ?? 0 == 0)
        #expect(added(try #require(ledger.takeBatch()), "total") == [1])
    }

    @Test func aResetDropsWhatAFailedBatchCarried() throws {
        let ledger = ledger()
        let key = try issue("p", limits: ["5/total"])
        ledger.load(key)
        _ = admit(ledger, key)
        let batch = try #require(ledger.takeBatch())
        ledger.resetUsage(id: key.id, epoch: 1)
        ledger.failed(batch)
        #expect(ledger.snapshot(of: key.id)?.usage.counters["total"]?.used == 0)
        let next = try #require(ledger.takeBatch())
        #expect(next.increments.isEmpty, "the reset deleted the counts; nothing of before is written")
    }
}
