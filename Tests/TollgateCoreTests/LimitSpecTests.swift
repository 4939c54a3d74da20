import Testing
import TollgateCore

@Suite struct LimitSpecTests {
    @Test(arguments: [
        ("10/minute", LimitSpec(scope: .all, quota: 10, period: .minute)),
        ("1000/total", LimitSpec(scope: .all, quota: 1000, period: .total)),
        ("*:5/day", LimitSpec(scope: .all, quota: 5, period: .day)),
        ("api1:10/second", LimitSpec(scope: .exact("api1"), quota: 10, period: .second)),
        ("api*:7/hour", LimitSpec(scope: .tree("api"), quota: 7, period: .hour)),
        ("api1/:7/hour", LimitSpec(scope: .below("api1"), quota: 7, period: .hour)),
        ("/api2:3/MONTH", LimitSpec(scope: .exact("api2"), quota: 3, period: .month)),
        ("0/day", LimitSpec(scope: .all, quota: 0, period: .day)),
    ])
    func parses(text: String, expected: LimitSpec) throws {
        #expect(try LimitSpec(parsing: text) == expected)
    }

    @Test(arguments: [
        "", "10", "10/", "/minute", "ten/minute", "-1/minute", "10/week", "10/minutes", "a b:1/day", "api1/*:1/day", "..:1/day", "1.5/day",
        "99999999999999999999/day",
    ])
    func refusesWithTheAcceptedForms(text: String) {
        #expect {
            try LimitSpec(parsing: text)
        } throws: { error in
            let error = error as! TollgateError
            return error.code == .invalidLimit && error.message.contains("N/PERIOD") && error.message.contains("'\(text)'")
        }
    }

    /// The reason names the actual mistake, not a symptom of it.
    @Test(arguments: [
        ("99999999999999999999/day", "is too large"),
        ("-1/day", "is negative"),
        ("api1:10/minute:extra", "'extra' after the last ':' is not N/PERIOD"),
        ("10", "no '/PERIOD'"),
    ])
    func saysWhatIsWrong(text: String, reason: String) {
        #expect {
            try LimitSpec(parsing: text)
        } throws: { error in
            (error as? TollgateError)?.message.contains(reason) == true
        }
    }

    @Test func printsCanonicalText() throws {
        #expect(try LimitSpec(parsing: "*:5/day").description == "5/day")
        #expect(try LimitSpec(parsing: "/api1:5/day").description == "api1:5/day")
    }

    @Test func namesPoliciesAndCounters() throws {
        let keyWide = try LimitSpec(parsing: "100/total")
        let perAPI = try LimitSpec(parsing: "api1:10/minute")
        #expect(keyWide.policyName == "total")
        #expect(perAPI.policyName == "api1-minute")
        // A new quota on the same scope and period keeps drawing on the same counter.
        #expect(try LimitSpec(parsing: "api1:20/minute").counterID == perAPI.counterID)
        let key = APIKey(
            id: KeyID(rawValue: "k"), digest: KeyDigest(secret: "s"), scopes: [.all],
            limits: [keyWide, keyWide, perAPI], createdAt: Timestamp(secondsSinceEpoch: 0)
        )
        #expect(key.policyNames == ["total", "total-2", "api1-minute"])
    }
}
