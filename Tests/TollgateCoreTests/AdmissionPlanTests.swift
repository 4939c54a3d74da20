import Testing
import TollgateCore

/// The plan and its evaluation: the one decision every store runs (the in-process ledger
/// from memory, the Redis store through its Lua script).
@Suite struct AdmissionPlanTests {
    let now = Timestamp(secondsSinceEpoch: 1_796_000_010)  // 30 s into a minute

    func key(scopes: [String] = ["*"], limits: [String]) throws -> APIKey {
        let draft = KeyDraft(
            scopes: try scopes.map { try ScopePattern(parsing: $0) }, limits: try limits.map { try LimitSpec(parsing: $0) })
        return try KeyIssuer.issue(draft, secret: "plan", now: now).key
    }

    @Test func limitsOnOnePatternAndPeriodShareACounterAtTheSmallerQuota() throws {
        let plan = AdmissionPlan(key: try key(limits: ["api1:10/minute", "api1:5/minute", "100/day"]), path: "api1")
        #expect(plan.counters.map(\.id) == ["api1:minute", "day"])
        #expect(plan.counters.map(\.quota) == [5, 100])
        #expect(plan.limits.map(\.policy) == ["api1-minute", "api1-minute-2", "day"])
        #expect(plan.limits.map(\.counter) == [0, 0, 1])
    }

    @Test func onlyLimitsWhosePatternMatchesThePathApply() throws {
        let plan = AdmissionPlan(key: try key(limits: ["api1:10/minute", "api2:5/minute", "100/total"]), path: "api2")
        #expect(plan.limits.map(\.policy) == ["api2-minute", "total"])
    }

    @Test(arguments: [
        // used per counter (api1:minute, total) -> outcome, remaining per limit, retry after
        ([Int64(0), 0], AdmissionDecision.Outcome.admitted, [Int64(9), 99], Int64?.none),
        ([9, 0], .admitted, [0, 99], nil),
        ([10, 0], .quotaExceeded, [0, 100], 30),
        ([0, 100], .quotaExceeded, [10, 0], nil),
        ([10, 100], .quotaExceeded, [0, 0], nil),
    ])
    func evaluatesCountsIntoTheOutcomeAndStatuses(
        used: [Int64], outcome: AdmissionDecision.Outcome, remaining: [Int64], retryAfter: Int64?
    ) throws {
        let key = try key(limits: ["api1:10/minute", "100/total"])
        let plan = AdmissionPlan(key: key, path: "api1")
        #expect(plan.admits(used: used) == (outcome == .admitted))
        let decision = plan.evaluate(used: used, now: now, keyID: key.id)
        #expect(decision.outcome == outcome)
        #expect(decision.limits.map(\.remaining) == remaining)
        #expect(decision.retryAfter == retryAfter, "a spent total never resets, so there is no time to wait for")
        #expect(decision.limits.map(\.windowSeconds) == [60, nil])
        #expect(decision.limits.map(\.resetSeconds) == [30, nil])
    }

    @Test func outOfScopeTakesNothingAndReportsTheLimitsThatApply() throws {
        let key = try key(scopes: ["api1"], limits: ["100/total"])
        let plan = AdmissionPlan(key: key, path: "api2")
        #expect(!plan.inScope)
        #expect(!plan.admits(used: [0]))
        let decision = plan.evaluate(used: [7], now: now, keyID: key.id)
        #expect(decision.outcome == .scopeDenied)
        #expect(decision.limits.map(\.remaining) == [93])
        #expect(decision.retryAfter == nil)
    }

    @Test func anUnmeteredKeyInScopeIsAdmittedWithNoCounters() throws {
        let key = try key(limits: [])
        let plan = AdmissionPlan(key: key, path: "api3")
        #expect(plan.counters.isEmpty)
        #expect(plan.evaluate(used: [], now: now, keyID: key.id).outcome == .admitted)
    }
}
