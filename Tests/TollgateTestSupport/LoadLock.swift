/// Keeps the tests that load the machine apart from the tests that time it.
///
/// Tests run in parallel in one process on two cores. A test that measures a deadline (a
/// revocation reaching a server within a second) would otherwise measure whatever load
/// test runs beside it rather than the gateway. Both kinds take this lock; the many light
/// tests do not, and still run in parallel.
public enum LoadLock {
    private static let gate = Gate()

    public static func exclusively<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        await gate.acquire()
        do {
            let result = try await body()
            await gate.release()
            return result
        } catch {
            await gate.release()
            throw error
        }
    }

    private actor Gate {
        private var busy = false
        private var waiters: [CheckedContinuation<Void, Never>] = []

        func acquire() async {
            guard busy else {
                busy = true
                return
            }
            await withCheckedContinuation { waiters.append($0) }
        }

        func release() {
            if waiters.isEmpty { busy = false } else { waiters.removeFirst().resume() }
        }
    }
}
