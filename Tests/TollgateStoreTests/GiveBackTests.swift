import Foundation
import NIOCore
import NIOPosix
import Testing
import TollgateCore
import TollgateSQLite
import TollgateTestSupport

/// Gives back what `decision` took for `secret` on `path`, on one of the shared event loops,
/// and waits for the store to say whether anything went back.
func giveBack(
    _ store: some KeyStore, secret: String, decision: AdmissionDecision, path: String = "api1", now: Timestamp = SystemWallClock().now
) async throws -> Bool {
    let loop = MultiThreadedEventLoopGroup.singleton.next()
    let promise = loop.makePromise(of: Bool.self)
    let request = AdmissionRequest(digest: KeyDigest(secret: secret), api: path, path: path, now: now)
    loop.execute { store.giveBack(request, decision: decision, promise: promise) }
    return try await promise.futureResult.get()
}

/// `giveBack(_:decision:promise:)` on every store: a unit goes back only to the window it
/// was taken in, never below zero, never across a reset.
///
/// The Redis store decides on Redis's clock, so these tests use `total` and `day` windows
/// (a boundary never falls between two lines of a test in practice) and move a receipt's
/// instant to stand for a window that has rolled over.
extension StoreConformanceTests {
    @Test(arguments: StoreKind.allCases)
    func aGiveBackReturnsTheUnitAndTheAdmittedCount(kind: StoreKind) async throws {
        let store = try await kind.make()
        let key = try await makeKey(in: store, limits: ["2/total", "api1:5/day"], secret: "k").key
        let first = try await admit(store, secret: "k")
        #expect(first.outcome == .admitted && first.receipt != nil)
        #expect(try await admit(store, secret: "k").outcome == .admitted)
        let refused = try await admit(store, secret: "k")
        #expect(refused.outcome == .quotaExceeded && refused.receipt == nil)

        #expect(try await giveBack(store, secret: "k", decision: first))
        let usage = try #require(try await store.usage(id: key.id))
        #expect(usage.counters["total"]?.used == 1)
        #expect(usage.counters["api1:day"]?.used == 1)
        #expect(usage.apis["api1"]?.admitted == 1, "billing does not charge the call given back")
        #expect(usage.apis["api1"]?.quotaExceeded == 1, "refusals stay counted")
        #expect(try await admit(store, secret: "k").outcome == .admitted, "the unit is there to take again")
        #expect(try await admit(store, secret: "k").outcome == .quotaExceeded)
        #expect(!(try await giveBack(store, secret: "k", decision: refused)), "a refusal took nothing to give back")
    }

    @Test(arguments: StoreKind.allCases)
    func aGiveBackNeverGoesBelowZero(kind: StoreKind) async throws {
        let store = try await kind.make()
        let key = try await makeKey(in: store, limits: ["1/total"], secret: "k").key
        let decision = try await admit(store, secret: "k")
        #expect(decision.outcome == .admitted)
        #expect(try await giveBack(store, secret: "k", decision: decision))
        #expect(!(try await giveBack(store, secret: "k", decision: decision)), "nothing is left to give back")
        let usage = try #require(try await store.usage(id: key.id))
        #expect(usage.counters["total"]?.used == 0)
        #expect(usage.apis["api1"]?.admitted == 0)
        // A counter below zero would admit two now.
        #expect(try await admit(store, secret: "k").outcome == .admitted)
        #expect(try await admit(store, secret: "k").outcome == .quotaExceeded)
    }

    /// A unit taken in a window that has since rolled over is gone with it: the later
    /// window's counter gets nothing (the admitted count, which has no window, goes back).
    @Test(arguments: StoreKind.allCases)
    func aLaterWindowGetsNothingBack(kind: StoreKind) async throws {
        let store = try await kind.make()
        let key = try await makeKey(in: store, limits: ["api1:5/day"], secret: "k").key
        var decision = try await admit(store, secret: "k")
        #expect(decision.outcome == .admitted)
        // The same admission, as if it had been decided the day before.
        let receipt = try #require(decision.receipt)
        decision.receipt?.decidedAt = receipt.decidedAt.adding(seconds: -86_400)
        _ = try await giveBack(store, secret: "k", decision: decision)
        let usage = try #require(try await store.usage(id: key.id))
        #expect(usage.counters["api1:day"]?.used == 1)
        #expect(usage.apis["api1"]?.admitted == 0)
    }

    /// The same, with a real rollover on the stores whose clock the test sets.
    @Test(arguments: [StoreKind.memory, .sqlite])
    func aUnitTakenBeforeARolloverIsNotGivenToTheNextWindow(kind: StoreKind) async throws {
        let store = try await kind.make()
        let start = Timestamp(secondsSinceEpoch: 1_800_000_000 / 60 * 60 + 10)
        let key = try await makeKey(in: store, limits: ["api1:1/minute"], secret: "k", now: start).key
        let before = try await admit(store, secret: "k", now: start)
        #expect(before.outcome == .admitted)
        #expect(try await admit(store, secret: "k", now: start.adding(seconds: 60)).outcome == .admitted)
        _ = try await giveBack(store, secret: "k", decision: before, now: start.adding(seconds: 61))
        let usage = try #require(try await store.usage(id: key.id))
        #expect(usage.counters["api1:minute"] == UsageCounter(windowStart: start.secondsSinceEpoch + 50, used: 1))
        #expect(try await admit(store, secret: "k", now: start.adding(seconds: 62)).outcome == .quotaExceeded)
    }

    @Test(arguments: StoreKind.allCases)
    func aGiveBackFromBeforeAResetGivesNothing(kind: StoreKind) async throws {
        let store = try await kind.make()
        let key = try await makeKey(in: store, limits: ["5/total"], secret: "k").key
        let old = try await admit(store, secret: "k")
        #expect(old.outcome == .admitted)
        try await store.resetUsage(id: key.id)
        #expect(try await admit(store, secret: "k").outcome == .admitted)
        #expect(!(try await giveBack(store, secret: "k", decision: old)))
        let usage = try #require(try await store.usage(id: key.id))
        #expect(usage.counters["total"]?.used == 1, "the unit taken after the reset stays taken")
        #expect(usage.apis["api1"]?.admitted == 1)
    }

    /// New limits may draw on other counters: a unit taken under the old ones is not given
    /// to them.
    @Test(arguments: StoreKind.allCases)
    func aGiveBackFromBeforeAnEditGivesNothing(kind: StoreKind) async throws {
        let store = try await kind.make()
        var key = try await makeKey(in: store, limits: ["5/total"], secret: "k").key
        let old = try await admit(store, secret: "k")
        #expect(old.outcome == .admitted)
        key.limits = [try LimitSpec(parsing: "6/total")]
        try await store.updateKey(key, keepingRevocation: true)
        #expect(try await admit(store, secret: "k").outcome == .admitted)
        #expect(!(try await giveBack(store, secret: "k", decision: old)))
        #expect(try await store.usage(id: key.id)?.counters["total"]?.used == 2)
    }

    /// SQLite: a give-back is written to the file (a negative increment) like any count.
    @Test func aGiveBackIsInTheSQLiteFile() async throws {
        let path = try TestPaths.temporaryDirectory().appendingPathComponent("store.sqlite").path
        let store = try SQLiteKeyStore(configuration: .init(path: path))
        let key = try await makeKey(in: store, limits: ["10/total", "api1:10/day"], secret: "k").key
        var decisions: [AdmissionDecision] = []
        for _ in 0..<3 { decisions.append(try await admit(store, secret: "k")) }
        #expect(try await giveBack(store, secret: "k", decision: decisions[0]))
        #expect(try await giveBack(store, secret: "k", decision: decisions[1]))
        store.flushNow()
        let reopened = try SQLiteKeyStore(configuration: .init(path: path))
        let usage = try #require(try await reopened.usage(id: key.id))
        #expect(usage.counters["total"]?.used == 1)
        #expect(usage.counters["api1:day"]?.used == 1)
        #expect(usage.apis["api1"]?.admitted == 1)
    }
}
