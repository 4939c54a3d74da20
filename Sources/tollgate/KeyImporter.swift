import Dispatch
import Foundation
import Synchronization
import TollgateCore

/// Reads a `keys import` file in two streaming passes: ``check(_:now:apis:)`` checks every
/// line (and finds a key or id on two lines) before anything is stored, then ``Batches``
/// decodes it again for the store, a chunk at a time. Neither holds the whole file or all of
/// its keys: at most a chunk of lines, and 40 bytes a key for finding repeats.
///
/// Lines are decoded on every core: a chunk's lines are split into slices, decoded at once
/// with `DispatchQueue.concurrentPerform`, and their results taken in line order, so that
/// messages name the same line as a decoding one line at a time would.
enum KeyImporter {
    /// What checking a file found: how many keys it holds and the warnings about them.
    struct Report {
        var keys = 0
        /// The first ``KeyImporter/maximumWarnings`` warnings, each naming its line.
        var warnings: [String] = []
        /// How many lines have warnings, shown or not.
        var warningLines = 0
    }

    /// The most warnings a report keeps; the command prints how many more there were.
    static let maximumWarnings = 20

    /// Checks every line of `file`: each must be a valid key, and no secret, digest or id
    /// may appear on two lines. Throws the first problem, naming its line(s).
    static func check(_ file: ImportFile, now: Timestamp, apis: [KeyAdvice.ServedAPI]?) throws(TollgateError) -> Report {
        var report = Report()
        var repeats = RepeatFinder()
        var chunks = file.lines()
        while let chunk = try chunks.next() {
            let decoded = decode(chunk, now: now, pass: .check(apis: apis))
            for (offset, line) in decoded.enumerated() {
                let number = chunk.firstLine + offset
                switch line {
                case .blank: continue
                case .failure(let failure): throw failure.error(file: file.name, line: number)
                case .key(let key, let hasOwnID, let warnings):
                    report.keys += 1
                    repeats.add(digest: key.digest, id: hasOwnID ? key.id : nil, line: number)
                    if !warnings.isEmpty {
                        report.warningLines += 1
                        if report.warnings.count < maximumWarnings {
                            report.warnings.append("\(file.name) line \(number): " + warnings.joined(separator: "; "))
                        }
                    }
                }
            }
        }
        if let repeated = repeats.first() {
            switch repeated.kind {
            case .id:
                let id = try idOnLine(repeated.second, of: file)
                throw TollgateError(
                    .invalidInput,
                    "\(file.name) lines \(repeated.first) and \(repeated.second) both have the id '\(id)': give each key its own id; nothing was imported"
                )
            case .digest:
                throw TollgateError(
                    .invalidInput,
                    "\(file.name) lines \(repeated.first) and \(repeated.second) hold the same key (the same secret or digest): keep one of them; nothing was imported"
                )
            }
        }
        return report
    }

    /// The id written on line `number`, read again to name a repeated id.
    private static func idOnLine(_ number: Int, of file: ImportFile) throws(TollgateError) -> String {
        var chunks = file.lines()
        while let chunk = try chunks.next() {
            guard number < chunk.firstLine + chunk.lines.count else { continue }
            let line = Data(chunk.bytes[chunk.lines[number - chunk.firstLine]])
            return (try? JSONDecoder().decode(KeyImportLine.self, from: line))?.id ?? "?"
        }
        return "?"
    }

    /// The keys of a checked file, decoded again a chunk at a time for
    /// ``KeyStore/importKeys(_:)``. Lines without an id get a new one here.
    ///
    /// The next chunk is read and decoded in the background while the store writes the one
    /// just handed over, so that decoding and writing overlap (the writer is one thread).
    final class Batches: KeyBatchSource {
        private let chunks: Mutex<LineChunks>
        private let file: ImportFile
        private let now: Timestamp
        private let expectedKeys: Int
        private let handedOver = Atomic<Int>(0)
        /// The chunk decoded ahead, once `ahead` has been left.
        private let prefetched = Mutex<Result<[APIKey]?, TollgateError>?>(nil)
        private let ahead = DispatchGroup()
        private let isPrefetching = Atomic<Bool>(false)

        init(_ file: ImportFile, now: Timestamp, expectedKeys: Int) {
            self.file = file
            self.chunks = Mutex(file.lines())
            self.now = now
            self.expectedKeys = expectedKeys
        }

        func next() throws(TollgateError) -> [APIKey]? {
            let result: Result<[APIKey]?, TollgateError>
            if isPrefetching.exchange(false, ordering: .acquiring) {
                ahead.wait()
                result =
                    prefetched.withLock { slot in
                        defer { slot = nil }
                        return slot
                    } ?? .success(nil)
            } else {
                result = Result { () throws(TollgateError) in try decodeNext() }
            }
            // Decode the next chunk while the store writes this one; after the end or a
            // failure there is nothing more to read.
            if case .success(.some) = result {
                isPrefetching.store(true, ordering: .releasing)
                ahead.enter()
                DispatchQueue.global().async { [self] in
                    let next = Result { () throws(TollgateError) in try decodeNext() }
                    prefetched.withLock { $0 = next }
                    ahead.leave()
                }
            }
            return try result.get()
        }

        private func decodeNext() throws(TollgateError) -> [APIKey]? {
            try chunks.withLock { chunks throws(TollgateError) -> [APIKey]? in
                guard let chunk = try chunks.next() else {
                    // Checked, then changed: what was stored may not be what was checked.
                    guard file.isUnchanged, handedOver.load(ordering: .relaxed) == expectedKeys else {
                        throw TollgateError(
                            .invalidInput, "\(file.name) changed while it was being imported: import it again once it is complete")
                    }
                    return nil
                }
                var keys: [APIKey] = []
                keys.reserveCapacity(chunk.lines.count)
                for (offset, line) in KeyImporter.decode(chunk, now: now, pass: .store).enumerated() {
                    switch line {
                    case .blank: continue
                    case .failure(let failure): throw failure.error(file: file.name, line: chunk.firstLine + offset)
                    case .key(let key, _, _): keys.append(key)
                    }
                }
                handedOver.add(keys.count, ordering: .relaxed)
                return keys
            }
        }

        /// Waits for a chunk still being decoded, so that nothing runs after the import.
        deinit { ahead.wait() }
    }

    // MARK: Decoding

    /// One line, decoded.
    enum Line {
        case blank
        case key(APIKey, hasOwnID: Bool, warnings: [String])
        case failure(LineFailure)
    }

    /// Why a line is not a key; the message gets its file and line when it is reported.
    enum LineFailure {
        case invalid(TollgateError)
        case notAKeyObject(String)

        func error(file: String, line: Int) -> TollgateError {
            switch self {
            case .invalid(let error):
                TollgateError(error.code, "\(file) line \(line): \(error.message); nothing was imported")
            case .notAKeyObject(let why):
                TollgateError(
                    .invalidInput,
                    "\(file) line \(line): not a key object (\(why)); each line needs \"key\" or \"digest\" and \"scopes\"; nothing was imported"
                )
            }
        }
    }

    /// The id a line without one has while it is checked: it is never stored.
    static let placeholderID = KeyID(rawValue: "key_0000000000000000")

    /// What a decoding pass is for.
    enum Pass: Sendable {
        /// Checking: ids are placeholders, and warnings are worked out (those about routes
        /// only when the served APIs are known).
        case check(apis: [KeyAdvice.ServedAPI]?)
        /// Storing: lines without an id get a new one; no warnings.
        case store
    }

    /// Decodes a chunk's lines on every core; the result is in line order.
    static func decode(_ chunk: LineChunks.Chunk, now: Timestamp, pass: Pass) -> [Line] {
        let count = chunk.lines.count
        // A few slices a core, so that a slow slice does not leave a core idle.
        let slices = min(count, max(1, ProcessInfo.processInfo.activeProcessorCount * 4))
        var results = [Line](repeating: .blank, count: count)
        results.withUnsafeMutableBufferPointer { buffer in
            let output = UncheckedSendable(buffer)
            let input = UncheckedSendable(chunk)
            DispatchQueue.concurrentPerform(iterations: slices) { slice in
                let decoder = JSONDecoder()
                // Ids are made only for the store: checking needs none, and gets one that
                // passes the id grammar.
                var random = BulkRandom()
                var specs = ImportLineParser.Specs()
                let newID = {
                    if case .store = pass { return KeyID.generate(using: &random) }
                    return KeyImporter.placeholderID
                }
                let range = (count * slice / slices)..<(count * (slice + 1) / slices)
                input.value.bytes.withUnsafeBufferPointer { bytes in
                    for index in range {
                        let line = UnsafeBufferPointer(rebasing: bytes[input.value.lines[index]])
                        output.value[index] = decodeLine(line, decoder: decoder, specs: &specs, now: now, pass: pass, newID: newID)
                    }
                }
            }
        }
        return results
    }

    private static func decodeLine(
        _ line: UnsafeBufferPointer<UInt8>, decoder: JSONDecoder, specs: inout ImportLineParser.Specs, now: Timestamp,
        pass: Pass, newID: () -> KeyID
    ) -> Line {
        if line.allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\r") || $0 == UInt8(ascii: "\t") }) { return .blank }
        do {
            let entry: KeyImportLine
            if let parsed = ImportLineParser.parse(line, specs: &specs) {
                entry = parsed
            } else {
                // The decoder drops members it does not know and keeps the last of two with
                // one name: a misspelt "limit" would import an unlimited key.
                try checkMembers(line)
                entry = try decoder.decode(KeyImportLine.self, from: Data(line))
            }
            let key = try self.key(from: entry, now: now, newID: newID)
            var warnings: [String] = []
            if case .check(let apis) = pass { warnings = KeyAdvice.warnings(scopes: key.scopes, limits: key.limits, apis: apis) }
            return .key(key, hasOwnID: entry.id != nil, warnings: warnings)
        } catch let error as TollgateError {
            return .failure(.invalid(error))
        } catch {
            return .failure(.notAKeyObject(describe(error)))
        }
    }

    /// The members a line may have.
    static let members = ["key", "digest", "id", "name", "scopes", "limits", "expires_at"]

    /// Refuses a line with a member no key has or a member given twice. A line that is
    /// not an object is left to the decoder, whose message says so.
    static func checkMembers(_ line: UnsafeBufferPointer<UInt8>) throws(TollgateError) {
        guard let names = JSONMembers.names(in: line) else { return }
        if let repeated = JSONMembers.firstRepeat(in: names) {
            throw TollgateError(.invalidInput, "\"\(TollgateError.excerpt(repeated))\" appears twice: give each member once")
        }
        if let unknown = names.first(where: { !members.contains($0) }) {
            let suggestion = Spelling.closest(to: unknown, among: members).map { " (did you mean \"\($0)\"?)" } ?? ""
            throw TollgateError(
                .invalidInput,
                "\"\(TollgateError.excerpt(unknown))\" is not a member of a key line\(suggestion); the members are \(members.joined(separator: ", "))"
            )
        }
    }

    static func key(from entry: KeyImportLine, now: Timestamp, newID: () -> KeyID) throws(TollgateError) -> APIKey {
        let draft = KeyDraft(
            name: entry.name ?? "",
            scopes: entry.scopes,
            limits: entry.limits ?? [],
            expiresAt: try entry.expiresAt.map { text throws(TollgateError) in try Timestamp(parsing: text, now: now) }
        )
        let id = try entry.id.map { text throws(TollgateError) in try KeyID(validating: text) } ?? newID()
        switch (entry.key, entry.digest) {
        case (let secret?, nil):
            return try KeyIssuer.issue(draft, secret: secret, id: id, now: now).key
        case (nil, let hex?):
            guard let digest = KeyDigest(hex: hex) else {
                throw TollgateError(.invalidInput, "\"digest\" must be 64 hex digits (a SHA-256)")
            }
            try KeyIssuer.validate(draft, now: now)
            return APIKey(
                id: id, digest: digest, name: draft.name, scopes: draft.scopes, limits: draft.limits, createdAt: now,
                expiresAt: draft.expiresAt)
        default:
            throw TollgateError(.invalidInput, "give exactly one of \"key\" and \"digest\"")
        }
    }

    private static func describe(_ error: any Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, _): "missing \"\(key.stringValue)\""
        case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context):
            "\"\(context.codingPath.map(\.stringValue).joined(separator: "."))\" has the wrong type"
        case DecodingError.dataCorrupted(let context):
            context.underlyingError.map { "\($0)" } ?? context.debugDescription
        default: "\(error)"
        }
    }
}

/// Lets `concurrentPerform`'s iterations share a buffer each writes its own elements of.
private struct UncheckedSendable<Value>: @unchecked Sendable {
    var value: Value
    init(_ value: Value) { self.value = value }
}

/// The system's randomness (`/dev/urandom`, the kernel's generator that
/// `SystemRandomNumberGenerator` also draws on) read 4 KiB at a time rather than in one
/// system call per 8 bytes: new ids for a million lines took a fifth of an import's time.
struct BulkRandom: RandomNumberGenerator {
    private var words = [UInt64](repeating: 0, count: 512)
    private var position = 512

    mutating func next() -> UInt64 {
        if position == words.count {
            let filled = words.withUnsafeMutableBytes { buffer in
                let descriptor = open("/dev/urandom", O_RDONLY | O_CLOEXEC)
                guard descriptor >= 0 else { return false }
                defer { close(descriptor) }
                var filled = 0
                while filled < buffer.count {
                    let count = read(descriptor, buffer.baseAddress! + filled, buffer.count - filled)
                    if count > 0 {
                        filled += count
                    } else if count == 0 || errno != EINTR {
                        return false
                    }
                }
                return true
            }
            // No /dev/urandom (a bare chroot): the system generator, one word at a time.
            if !filled {
                var system = SystemRandomNumberGenerator()
                for index in words.indices { words[index] = system.next() }
            }
            position = 0
        }
        defer { position += 1 }
        return words[position]
    }
}
