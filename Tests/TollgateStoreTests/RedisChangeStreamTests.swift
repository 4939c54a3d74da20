import Testing

@testable import TollgateRedis

/// The change stream's gap check: a first entry later than the last one read means entries
/// may have been trimmed unread, and the cache must be read afresh.
@Suite struct RedisChangeStreamTests {
    @Test(arguments: [
        ("1700000000001-0", "1700000000000-5", true),
        ("1700000000000-6", "1700000000000-5", true),
        ("1700000000000-5", "1700000000000-5", false),
        ("1699999999999-9", "1700000000000-5", false),
        ("garbage", "1700000000000-5", false),
    ])
    func streamIDsCompareAsNumberPairs(a: String, b: String, isAfter: Bool) {
        #expect(RedisKeyStore.streamID(a, isAfter: b) == isAfter)
    }
}
