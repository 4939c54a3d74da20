import TollgateRESP

/// What tells an instance that Redis lost the data it held: a marker key that the first
/// instance writes (a random token, `SET NX GET`) disappears with a flush or a restart
/// without persistence, and Redis's `run_id` changes with every restart (a snapshot
/// restored included, which brings an old marker back). Either seen to change means every
/// cached record and the change stream position may be wrong.
struct StoreIdentity {
    private var marker: String?
    private var runID: String?

    /// Takes what one check saw: `existing` is the token that was there (`nil` when there
    /// was none, and this check wrote `written`), `runID` the server's (`nil` when `INFO`
    /// is not allowed to this user).
    /// - Returns: whether Redis lost its data or restarted since the previous check.
    mutating func observe(existing: String?, written: String, runID newRunID: String?) -> Bool {
        let current = existing ?? written
        var lost = false
        if let marker, marker != current { lost = true }
        marker = current
        if let newRunID {
            if let runID, runID != newRunID { lost = true }
            runID = newRunID
        }
        return lost
    }

    /// The `run_id` field of an `INFO server` reply.
    static func runID(inInfo reply: RESPValue) -> String? {
        guard let text = reply.string else { return nil }
        for line in text.split(whereSeparator: \.isNewline) where line.hasPrefix("run_id:") {
            return String(line.dropFirst("run_id:".count))
        }
        return nil
    }

    /// A token no other instance picks.
    static func newToken() -> String {
        var generator = SystemRandomNumberGenerator()
        return String(generator.next(), radix: 36) + "-" + String(generator.next(), radix: 36)
    }
}
