import Dispatch
import Foundation
import GRDB
import Logging
import Synchronization
import TollgateCore

/// The change feed: key changes other processes (the CLI, another store on the file) made
/// reach the ledger through a poll of the `seq` column, which every change to a key row
/// moves on.
extension SQLiteKeyStore {
    /// Rows read from the change feed at a time.
    package static let changePageSize = 1000

    struct KeyChange: Sendable {
        var seq: Int64
        var kind: Kind

        enum Kind: Sendable {
            /// A key this process holds: its record and usage epoch.
            case held(APIKey, usageEpoch: Int64)
            /// A key it does not hold: only its digests, to forget as unknown.
            case notHeld(digests: [KeyDigest])
            /// A row that cannot be read: skipped and logged.
            case damaged(String)
        }
    }

    /// How far the feed has come. Past a change only once it is applied: one whose read
    /// failed (a reset's usage, say) is tried again with the next poll, but only a few
    /// times, so that it cannot hold back every later change (a revocation, say).
    struct ChangeCursor {
        static let triesBeforeSkipping = 5

        var lastSeq: Int64
        private var failing: (seq: Int64, tries: Int) = (0, 0)

        init(after seq: Int64) {
            lastSeq = seq
        }

        /// Counts a failed try to apply the change at `seq`.
        /// - Returns: whether it is to be skipped now.
        mutating func failed(_ seq: Int64) -> Bool {
            failing = (seq, failing.seq == seq ? failing.tries + 1 : 1)
            return failing.tries >= Self.triesBeforeSkipping
        }
    }

    func followChanges() async {
        var cursor = ChangeCursor(after: changeFeedStart)
        await Self.repeating(every: configuration.changePollInterval) {
            do {
                try await catchUp(&cursor)
            } catch {
                logger.warning("cannot read key changes", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Applies every change past the cursor, a page at a time: a million keys imported while
    /// serving must not be read (and held) in one go.
    private func catchUp(_ cursor: inout ChangeCursor) async throws(TollgateError) {
        while true {
            let changes = try await readChanges(after: cursor.lastSeq)
            for change in changes {
                try await apply(change, at: &cursor)
            }
            if changes.count < Self.changePageSize { return }
        }
    }

    private func apply(_ change: KeyChange, at cursor: inout ChangeCursor) async throws(TollgateError) {
        do {
            try await apply(change)
        } catch {
            guard cursor.failed(change.seq) else { throw error }
            logger.error(
                "skipping a key change that could not be applied in \(ChangeCursor.triesBeforeSkipping) tries",
                metadata: ["seq": "\(change.seq)", "error": "\(error)"])
        }
        cursor.lastSeq = change.seq
    }

    /// The changes after `seq`, a page of them. A key this process does not hold needs no
    /// record, only its digests (so that a secret remembered as unknown works at once): the
    /// rest is decoded for held keys only, so that a large import costs the feed little.
    private func readChanges(after seq: Int64) async throws(TollgateError) -> [KeyChange] {
        try await read { [ledger] db in
            try KeyRows.changes(after: seq, limit: Self.changePageSize, db).map { row in Self.change(row, ledger: ledger) }
        }
    }

    private static func change(_ row: Row, ledger: QuotaLedger<GroupCommit>) -> KeyChange {
        let seq: Int64 = row["seq"]
        let id: String? = row["id"]
        if let id, ledger.usageEpoch(of: KeyID(rawValue: id)) == nil {
            let digests = [row["digest"], row["previous_digest"]].compactMap { (data: Data?) in data.flatMap(KeyDigest.init(bytes:)) }
            return KeyChange(seq: seq, kind: .notHeld(digests: digests))
        }
        do {
            return KeyChange(seq: seq, kind: .held(try SQLiteSchema.decodeKey(row), usageEpoch: row["usage_epoch"]))
        } catch {
            let id = id.map { String($0.prefix(80)) } ?? "?"
            return KeyChange(seq: seq, kind: .damaged("key row '\(id)': \(Self.describe(error))"))
        }
    }

    private func apply(_ change: KeyChange) async throws(TollgateError) {
        switch change.kind {
        case .held(let key, let usageEpoch):
            // A reset made by another process: start from what the file holds now (the
            // reset, and what this process wrote since), not from zero.
            var stored: UsageSnapshot?
            if let held = ledger.usageEpoch(of: key.id), held < usageEpoch {
                stored = try await read { db in try UsageRows.usage(keyID: key.id, db) }
            }
            ledger.refresh(key, version: change.seq, usageEpoch: usageEpoch, storedUsage: stored)
        case .notHeld(let digests):
            for digest in digests { ledger.forgetUnknown(digest) }
        case .damaged(let problem):
            logger.error("skipping a key row that cannot be read", metadata: ["seq": "\(change.seq)", "problem": "\(problem)"])
        }
    }
}
