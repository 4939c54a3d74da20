/// Asks `condition` every `interval` until it holds or `timeout` has passed, and once more
/// at the end: what another process or thread changes (a change feed, a restarted server, a
/// reloaded file) arrives a little later, and a test must wait for it without a fixed sleep.
/// - Returns: whether `condition` held.
public func eventually(
    timeout: Duration = .seconds(5), every interval: Duration = .milliseconds(20), _ condition: () async throws -> Bool
) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: interval)
    }
    return try await condition()
}
