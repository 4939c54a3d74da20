import NIOCore
import NIOEmbedded
import Testing
import TollgateCore

/// The decision, through the ledger that makes it, with a hand-moved clock.
@Suite struct AdmissionTests {
    let loop = EmbeddedEventLoop()
    let ledger = QuotaLedger<NoJournal>()
    let start = Timestamp(secondsSinceEpoch: 1_796_000_000)  // 2026-11-29T…Z

    func key(_ secret: String, scopes: [String] = ["*"], limits: [String] = [], expiresAt: Timestamp? = nil) throws -> APIKey {
        let draft = KeyDraft(
            scopes: try scopes.map { try ScopePattern(parsing: $0) },
            limits: try limits.map { try LimitSpec(parsing: $0) },
            expiresAt: expiresAt
        )
        let key = try KeyIssuer.issue(draft, secret: secret, now: start).key
        ledger.load(key)
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
        #expect(!ledger.load(sameID))
        #expect(ledger.snapshot(ofDigest: sameID.digest) == nil)
        #expect(ledger.snapshot(of: held.id)?.key == held)
        let sameDigest = try KeyIssuer.issue(KeyDraft(scopes: [.all]), secret: "k", now: start).key
        #expect(!ledger.load(sameDigest))
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
}
