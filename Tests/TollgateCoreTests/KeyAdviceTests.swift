import Testing
import TollgateCore

@Suite struct KeyAdviceTests {
    static let routes = ["api1", "api2", "api3"]

    func warnings(_ scopes: [String], _ limits: [String]) throws -> [String] {
        KeyAdvice.warnings(
            scopes: try scopes.map { try ScopePattern(parsing: $0) },
            limits: try limits.map { try LimitSpec(parsing: $0) },
            routes: Self.routes
        )
    }

    /// Keys whose every part can take effect get no warning.
    @Test(arguments: [
        (["*"], ["100/day", "api1:10/minute", "api1*:5/day"]),
        (["api1"], ["api1:10/minute", "api1*:5/day", "10/total", "*:1/second"]),
        (["api1", "api2"], ["api2:1/total"]),
        (["api1*"], ["api1:1/total"]),
        (["*"], []),
    ])
    func aUsefulKeyGetsNoWarning(scopes: [String], limits: [String]) throws {
        #expect(try warnings(scopes, limits) == [])
    }

    /// Each row: a key, and the text every one of its warnings must show, in order.
    @Test(arguments: [
        ([], ["api1:1/total"], ["no scope"]),
        (["api1"], ["api9:10/minute"], ["'api9:10/minute' can never apply"]),
        (["api1"], ["api2:10/minute"], ["'api2:10/minute' can never apply"]),
        (["api1/"], ["api1:10/minute"], ["scope 'api1/' reaches none", "'api1:10/minute' can never apply"]),
        (
            ["*"], ["API1:5/total"],
            [
                "'API1:5/total' applies to none of the APIs this gateway serves (/api1, /api2, /api3) that the key reaches, so it meters nothing (paths are case-sensitive)"
            ]
        ),
        // `api*` is /api and below, which no route is: the text-prefix reading would have hidden this.
        (["*"], ["api*:5/day"], ["'api*:5/day' applies to none of the APIs"]),
        (["*"], ["api9:5/total"], ["'api9:5/total' applies to none of the APIs"]),
        (["api1*"], ["api10:5/total"], ["'api10:5/total' can never apply"]),
        (["API1"], [], ["scope 'API1' reaches none of the APIs this gateway serves (/api1, /api2, /api3) (paths are case-sensitive)"]),
        (["*"], ["0/total"], ["'0/total' has a quota of 0"]),
        (
            ["api1"], ["api1:0/day", "api3:0/day"],
            ["'api1:0/day' has a quota of 0", "'api3:0/day' has a quota of 0", "'api3:0/day' can never apply"]
        ),
    ])
    func warnsOncePerPartThatCannotTakeEffect(scopes: [String], limits: [String], expected: [String]) throws {
        let got = try warnings(scopes, limits)
        #expect(got.count == expected.count, "\(got)")
        for (warning, text) in zip(got, expected) { #expect(warning.contains(text), "\(warning)") }
    }

    /// A prefix route serves the paths below its name: `orders/` reaches `/v1/orders/5`.
    @Test func aPrefixRouteIsReachedBelowItsName() throws {
        let apis = [KeyAdvice.ServedAPI(name: "orders", servesBelow: true), .init(name: "ping", servesBelow: false)]
        func warnings(_ scopes: [String], _ limits: [String]) throws -> [String] {
            KeyAdvice.warnings(
                scopes: try scopes.map { try ScopePattern(parsing: $0) }, limits: try limits.map { try LimitSpec(parsing: $0) },
                apis: apis)
        }
        #expect(try warnings(["orders/"], ["orders/:1/day", "orders/5:1/day"]) == [])
        #expect(try warnings(["orders*"], ["orders*:100/minute", "1/day"]) == [])
        #expect(try warnings(["ping/"], []).first?.contains("scope 'ping/' reaches none") == true)
        #expect(try warnings(["orders"], ["orders/:1/day"]).first?.contains("can never apply") == true)
        #expect(try warnings(["*"], ["ping/:1/day"]).first?.contains("applies to none of the APIs") == true)
        // Routes unknown: only what holds whatever is served.
        let unknown = KeyAdvice.warnings(
            scopes: [try ScopePattern(parsing: "orders*")], limits: [try LimitSpec(parsing: "api9:0/day")], apis: nil)
        #expect(unknown.count == 2, "\(unknown)")
        #expect(unknown.allSatisfy { !$0.contains("this gateway serves") })
    }

    @Test func limitsApplyWhereTheirPatternOverlapsAScope() throws {
        func can(_ limit: String, _ scopes: [String]) throws -> Bool {
            KeyAdvice.canApply(try LimitSpec(parsing: limit), scopes: try scopes.map { try ScopePattern(parsing: $0) })
        }
        #expect(try can("api1/:1/day", ["api1*"]))
        #expect(try can("api1*:1/day", ["api1/"]))
        #expect(try !can("api1/:1/day", ["api1"]))
        #expect(try can("1/day", ["api1"]))
        #expect(try can("api1/x:1/day", ["api1/"]))
        #expect(try !can("api1/x:1/day", ["api1"]))
        #expect(try !can("/:1/day", ["api1*"]))
        #expect(try can("/:1/day", ["*"]))
    }
}
