import NIOCore
import NIOEmbedded
import Testing
import TollgateCore

/// The decision, through the ledger that makes it, with a hand-moved clock.
@Suite struct AdmissionTests {
    let loop = EmbeddedEventLoop()
    let ledger = QuotaLedger(configuration: .init(isPersistent: false))
    let start = Timestamp(secondsSinceEpoch: 1_796_000_000)  // 2026-11-29T…Z

    func key(_ secret: String, scopes: [String] = ["*"], limits: [String] = [], expiresAt: Timestamp? = nil) throws -> APIKey {
        let draft = KeyDraft(
            scopes: try scopes.map { try ScopePattern(parsing: $0) },
            limits: try limits.map { try LimitSpec(parsing: $0) },
            expiresAt: expiresAt
        )
        let key = try KeyIssuer.issue(draft, secret: secret, now: start).key
        ledger.load(key, version: 0, counters: [:], apis: [:])
        return key
    }

    func decide(_ secret: String, _ path: String = "api1", at instant: Timestamp? = nil) -> AdmissionDecision {
        let request = AdmissionRequest(digest: KeyDigest(secret: secret), api: path, path: path, now: instant ?? start)
        let promise = loop.makePromise(of: AdmissionDecision.self)
        let decision: AdmissionDecision
        switch ledger.admit(request, promise: promise) {
        case .decided(let decided): decision = decided
        case .awaitingCommit:
            Issue.record("a memory ledger never waits")
            decision = .storeUnavailable
        case .unknownKey:
            // Not `.invalidKey`: a test that expects a refusal must not pass because the
            // ledger did not hold the key at all.
            Issue.record("the ledger does not hold this key: the store would look it up")
            decision = .storeUnavailable
        }
        promise.succeed(decision)
        return decision
    }

    /// A persistent ledger's answer for one request: the promise completes on commit.
    func admitPersistent(
        _ ledger: QuotaLedger, _ key: APIKey, _ path: String = "api1", at instant: Timestamp? = nil
    ) -> (QuotaLedger.Admission, EventLoopFuture<AdmissionDecision>) {
        let promise = loop.makePromise(of: AdmissionDecision.self)
        let request = AdmissionRequest(digest: key.digest, api: path, path: path, now: instant ?? start)
        let admission = ledger.admit(request, promise: promise)
        switch admission {
        case .decided(let decision): promise.succeed(decision)
        case .unknownKey: promise.succeed(.invalidKey)
        case .awaitingCommit: break
        }
        return (admission, promise.futureResult)
    }

    @Test func admitsUpToTheQuotaThenRefusesWithTheSpentPolicy() throws {
        _ = try key("k", limits: ["3/total"])
        for remaining in [2, 1, 0] {
            let decision = decide("k")
            #expect(decision.outcome == .admitted)
            #expect(decision.limits.map(\.remaining) == [Int64(remaining)])
        }
        let refused = decide("k")
        #expect(refused.outcome == .quotaExceeded)
        #expect(refused.limits.map(\.isSpent) == [true])
        #expect(refused.retryAfter == nil, "a total quota never resets, so there is no time to retry at")
    }

    @Test func aRequestTakesFromEveryApplicableLimitOrFromNone() throws {
        let key = try key("k", limits: ["api1:2/minute", "3/day"])
        #expect(decide("k", "api1").outcome == .admitted)
        #expect(decide("k", "api2").outcome == .admitted)
        #expect(decide("k", "api1").outcome == .admitted)
        // api1's minute limit is spent: the day limit must not lose a unit to this refusal.
        let refused = decide("k", "api1")
        #expect(refused.outcome == .quotaExceeded)
        #expect(refused.limits.map(\.policy) == ["api1-minute", "day"])
        #expect(refused.limits.map(\.remaining) == [0, 0])
        #expect(decide("k", "api2").outcome == .quotaExceeded)
        let usage = try #require(ledger.snapshot(of: key.id)).usage
        #expect(usage.counters["day"]?.used == 3)
        #expect(usage.counters["api1:minute"]?.used == 2)
        #expect(usage.apis["api1"]?.admitted == 2)
        #expect(usage.apis["api1"]?.quotaExceeded == 1)
        #expect(usage.apis["api2"]?.quotaExceeded == 1)
    }

    @Test func limitsForOtherPathsDoNotApply() throws {
        _ = try key("k", limits: ["api2:0/day"])
        let decision = decide("k", "api1")
        #expect(decision.outcome == .admitted)
        #expect(decision.limits.isEmpty)
    }

    /// A limit's pattern reads paths as scopes do: below a `/`, never a text prefix, so
    /// `api1*` meters `/api1` and `/api1/x` but leaves `/api10` alone.
    @Test func aStarLimitMetersItsTreeAndNotLongerNames() throws {
        _ = try key("k", limits: ["api1*:1/total", "api*:1/total"])
        for path in ["api10", "api10/x", "api1x", "api2", "api10"] {
            let decision = decide("k", path)
            #expect(decision.outcome == .admitted, "\(path)")
            #expect(decision.limits.isEmpty, "\(path) is metered by \(decision.limits.map(\.policy))")
        }
        let first = decide("k", "api1")
        #expect(first.outcome == .admitted)
        #expect(first.limits.map(\.policy) == ["api1*-total"])
        #expect(decide("k", "api1/x").outcome == .quotaExceeded, "/api1/x is below /api1, so api1* meters it")
        #expect(decide("k", "api").limits.map(\.policy) == ["api*-total"])
    }

    @Test func twoLimitsOnOneCounterTakeOneUnit() throws {
        _ = try key("k", limits: ["5/minute", "*:3/minute"])
        for _ in 0..<3 { #expect(decide("k").outcome == .admitted) }
        let refused = decide("k")
        #expect(refused.outcome == .quotaExceeded)
        #expect(refused.limits.map(\.remaining) == [2, 0])
    }

    @Test func windowsResetAtTheirBoundaryAndRetryAfterSaysWhen() throws {
        _ = try key("k", limits: ["1/minute"])
        let minuteStart = Timestamp(secondsSinceEpoch: (start.secondsSinceEpoch / 60) * 60)
        let late = minuteStart.adding(seconds: 45)
        #expect(decide("k", at: late).outcome == .admitted)
        let refused = decide("k", at: late)
        #expect(refused.outcome == .quotaExceeded)
        #expect(refused.retryAfter == 15)
        #expect(refused.limits.first?.windowSeconds == 60)
        #expect(refused.limits.first?.resetSeconds == 15)
        #expect(decide("k", at: minuteStart.adding(seconds: 60)).outcome == .admitted)
    }

    @Test func aClockSteppingBackDoesNotResetAQuota() throws {
        _ = try key("k", limits: ["1/minute"])
        let minuteStart = Timestamp(secondsSinceEpoch: (start.secondsSinceEpoch / 60) * 60)
        #expect(decide("k", at: minuteStart.adding(seconds: 61)).outcome == .admitted)
        // NTP steps the clock back into the previous minute, then forward again.
        #expect(decide("k", at: minuteStart.adding(seconds: 59)).outcome == .quotaExceeded)
        #expect(decide("k", at: minuteStart.adding(seconds: 62)).outcome == .quotaExceeded)
        #expect(decide("k", at: minuteStart.adding(seconds: 120)).outcome == .admitted)
    }

    @Test func loadingRefusesATakenDigestOrID() throws {
        let held = try key("k")
        var sameID = try KeyIssuer.issue(KeyDraft(scopes: [.all]), secret: "other", now: start).key
        sameID.id = held.id
        #expect(!ledger.load(sameID, version: 0, counters: [:], apis: [:]))
        #expect(ledger.snapshot(ofDigest: sameID.digest) == nil)
        #expect(ledger.snapshot(of: held.id)?.key == held)
        let sameDigest = try KeyIssuer.issue(KeyDraft(scopes: [.all]), secret: "k", now: start).key
        #expect(!ledger.load(sameDigest, version: 0, counters: [:], apis: [:]))
        #expect(ledger.snapshot(of: sameDigest.id) == nil)
    }

    @Test func olderRecordsNeverReplaceNewerOnesAndIDsMustMatch() throws {
        var key = try key("k")
        key.revokedAt = start
        #expect(ledger.refresh(key, version: 5))
        key.revokedAt = nil
        ledger.refresh(key, version: 3)  // a late copy from before the revocation
        #expect(decide("k").outcome == .keyRevoked)
        var impostor = key
        impostor.id = KeyID(rawValue: "key_other")
        impostor.revokedAt = nil
        #expect(!ledger.refresh(impostor, version: 9))
        #expect(decide("k").outcome == .keyRevoked)
    }

    @Test func scopeRevocationAndExpiryRefuseWithTheirReason() throws {
        var key = try key("k", scopes: ["api1"], limits: ["10/day"], expiresAt: start.adding(seconds: 60))
        let outOfScope = decide("k", "api2")
        #expect(outOfScope.outcome == .scopeDenied)
        #expect(outOfScope.keyID == key.id)
        #expect(decide("k", "api1", at: start.adding(seconds: 60)).outcome == .keyExpired)
        key.revokedAt = start
        ledger.refresh(key, version: nil)
        #expect(decide("k", "api1").outcome == .keyRevoked)
        #expect(try #require(ledger.snapshot(of: key.id)).usage.counters["day"]?.used == 0)
    }

    @Test func unknownSecretsAreRememberedUntilTheKeyAppears() throws {
        let first = AdmissionRequest(digest: KeyDigest(secret: "later"), api: "api1", path: "api1", now: start)
        let unanswered = loop.makePromise(of: AdmissionDecision.self)
        defer { unanswered.succeed(.invalidKey) }
        guard case .unknownKey = ledger.admit(first, promise: unanswered) else {
            Issue.record("a secret the ledger does not hold is for the store to look up")
            return
        }
        ledger.rememberUnknown(KeyDigest(secret: "later"), now: start)
        let request = AdmissionRequest(digest: KeyDigest(secret: "later"), api: "api1", path: "api1", now: start)
        let promise = loop.makePromise(of: AdmissionDecision.self)
        defer { promise.succeed(.invalidKey) }
        guard case .decided(let decision) = ledger.admit(request, promise: promise) else {
            Issue.record("a remembered unknown secret is refused without a lookup")
            return
        }
        #expect(decision.outcome == .invalidKey)
        _ = try key("later")
        #expect(decide("later").outcome == .admitted)
    }

    @Test func changingAQuotaKeepsTheCountUsed() throws {
        var key = try key("k", limits: ["2/day"])
        #expect(decide("k").outcome == .admitted)
        #expect(decide("k").outcome == .admitted)
        #expect(decide("k").outcome == .quotaExceeded)
        key.limits = [try LimitSpec(parsing: "3/day")]
        ledger.refresh(key, version: nil)
        #expect(decide("k").outcome == .admitted)
        #expect(decide("k").outcome == .quotaExceeded)
    }

    @Test func aPersistentLedgerHoldsAdmittedAnswersUntilTheirBatchCommits() throws {
        let ledger = QuotaLedger(configuration: .init(isPersistent: true))
        let key = try KeyIssuer.issue(KeyDraft(scopes: [.all], limits: [LimitSpec(quota: 10, period: .total)]), secret: "k", now: start).key
        ledger.load(key, version: 0, counters: [:], apis: [:])
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
        #expect(batch.snapshots.map { $0.counters["total"]?.used } == [2])
        #expect(answered == 0)
        ledger.committed(batch)
        loop.run()  // completions hop to the promises' loop, once per loop
        #expect(answered == 2)
        #expect(ledger.takeBatch() == nil)
    }

    @Test func beyondItsCapacityTheLedgerDropsOnlyKeysWhoseUsageIsCommitted() throws {
        let ledger = QuotaLedger(configuration: .init(isPersistent: true, keyCapacity: 2))
        func issue(_ secret: String) throws -> APIKey {
            try KeyIssuer.issue(KeyDraft(scopes: [.all], limits: [LimitSpec(quota: 9, period: .total)]), secret: secret, now: start).key
        }
        let (a, b, c) = (try issue("a"), try issue("b"), try issue("c"))
        ledger.load(a, version: 0, counters: [:], apis: [:])
        ledger.load(b, version: 0, counters: [:], apis: [:])
        // a is used: its count waits on a commit, so it must not be dropped yet.
        let promise = loop.makePromise(of: AdmissionDecision.self)
        guard
            case .awaitingCommit = ledger.admit(AdmissionRequest(digest: a.digest, api: "api1", path: "api1", now: start), promise: promise)
        else {
            Issue.record("an admitted request waits for its commit")
            return
        }
        ledger.load(c, version: 0, counters: [:], apis: [:])
        #expect(ledger.heldKeyCount == 2)
        #expect(ledger.snapshot(of: a.id) != nil, "a key with uncommitted usage stays")
        #expect(ledger.snapshot(of: b.id) == nil, "the least recently used clean key goes")
        // Once a's usage is committed, a is as droppable as any other idle key.
        let batch = try #require(ledger.takeBatch())
        #expect(batch.snapshots.map(\.keyID) == [a.id])
        ledger.committed(batch)
        loop.run()
        #expect(try promise.futureResult.wait().outcome == .admitted)
        ledger.load(b, version: 0, counters: [:], apis: [:])
        #expect(ledger.heldKeyCount == 2)
        #expect(ledger.snapshot(of: c.id) != nil)
        #expect(ledger.snapshot(of: b.id) != nil)
    }

    // MARK: Requests that are not served take nothing

    func persistentKey(_ ledger: QuotaLedger, limits: [String]) throws -> APIKey {
        let draft = KeyDraft(scopes: [.all], limits: try limits.map { try LimitSpec(parsing: $0) })
        let key = try KeyIssuer.issue(draft, secret: "p", now: start).key
        ledger.load(key, version: 0, counters: [:], apis: [:])
        return key
    }

    @Test func aFailedCommitAnswers503AndGivesTheUnitsBack() throws {
        let ledger = QuotaLedger(configuration: .init(isPersistent: true))
        let key = try persistentKey(ledger, limits: ["2/total", "api1:5/day"])
        let (_, first) = admitPersistent(ledger, key)
        let (_, second) = admitPersistent(ledger, key)
        let failing = try #require(ledger.takeBatch())
        ledger.failed(failing)
        loop.run()
        #expect(try first.wait().outcome == .storeUnavailable)
        #expect(try second.wait().outcome == .storeUnavailable)
        let usage = try #require(ledger.snapshot(of: key.id)).usage
        #expect(usage.counters["total"]?.used == 0, "a request that was not served takes nothing")
        #expect(usage.counters["api1:day"]?.used == 0)
        #expect(usage.apis["api1"]?.admitted == 0)
        // The corrected counts are written by the next commit, and the quota is whole again.
        let retry = try #require(ledger.takeBatch())
        #expect(retry.snapshots.map { $0.counters["total"]?.used } == [0])
        ledger.committed(retry)
        for _ in 0..<2 {
            let (_, answer) = admitPersistent(ledger, key)
            let batch = try #require(ledger.takeBatch())
            ledger.committed(batch)
            loop.run()
            #expect(try answer.wait().outcome == .admitted)
        }
        guard case .decided(let spent) = admitPersistent(ledger, key).0 else {
            Issue.record("a spent quota is refused at once")
            return
        }
        #expect(spent.outcome == .quotaExceeded)
    }

    @Test func aCommitOutlivingTheBoundAnswers503ThenLandsWithoutDoubleAnswers() throws {
        let ledger = QuotaLedger(configuration: .init(isPersistent: true))
        let key = try persistentKey(ledger, limits: ["10/total"])
        let (_, inFlight) = admitPersistent(ledger, key)
        let hung = try #require(ledger.takeBatch())
        let (_, queued) = admitPersistent(ledger, key)
        let now = NIODeadline.now()
        #expect(!ledger.expireWaiters(olderThan: .seconds(2), now: now), "within the bound nothing is answered")
        #expect(ledger.expireWaiters(olderThan: .seconds(2), now: now + .seconds(3)), "past the bound the commit is stalled")
        loop.run()
        #expect(try inFlight.wait().outcome == .storeUnavailable)
        #expect(try queued.wait().outcome == .storeUnavailable)
        #expect(try #require(ledger.snapshot(of: key.id)).usage.counters["total"]?.used == 0)
        // The hung commit returns at last: nobody is answered twice, and the next batch
        // rewrites the key without the units that were given back.
        ledger.committed(hung)
        loop.run()
        let next = try #require(ledger.takeBatch())
        #expect(next.snapshots.map { $0.counters["total"]?.used } == [0])
        #expect(next.waiterCount == 0)
    }

    @Test func unitsTakenUnderOldLimitsAreNotGivenBackToNewOnes() throws {
        let ledger = QuotaLedger(configuration: .init(isPersistent: true))
        var key = try persistentKey(ledger, limits: ["5/total"])
        let (_, answer) = admitPersistent(ledger, key)
        let batch = try #require(ledger.takeBatch())
        ledger.committed(batch)
        let (_, failing) = admitPersistent(ledger, key)
        key.limits = [try LimitSpec(parsing: "5/total"), try LimitSpec(parsing: "3/day")]
        ledger.refresh(key, version: nil)
        ledger.failed(try #require(ledger.takeBatch()))
        loop.run()
        #expect(try answer.wait().outcome == .admitted)
        #expect(try failing.wait().outcome == .storeUnavailable)
        let counters = try #require(ledger.snapshot(of: key.id)).usage.counters
        // Conservative: the limits changed in between, so no counter is lowered.
        #expect(counters["total"]?.used == 2)
        #expect(counters["day"]?.used ?? 0 == 0)
    }
}
