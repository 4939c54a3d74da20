import NIOCore
import NIOHTTP1

/// A request's or a response's head as llhttp found it: its target and fields as spans of
/// one buffer of the bytes they came in, so that reading a head makes no `String` per field
/// and a proxy can rewrite it from the spans.
struct MessageHead {
    /// One field: its name and value as spans of ``bytes``. Values are as llhttp gives them
    /// (leading spaces dropped); ``value(_:)`` also drops trailing ones.
    struct Field {
        var name: Range<Int>
        var value: Range<Int>
    }

    /// The target and every field name and value, back to back.
    var bytes = ByteBuffer()
    var target: Range<Int> = 0..<0
    var fields: [Field] = []
    var method: HTTPMethod = .GET
    /// A response's status.
    var status = 0
    var version: HTTPVersion = .http1_1
    /// Whether the message lets the connection go on (its version and `Connection` fields).
    var keepAlive = true
    /// CONNECT, or an `Upgrade` request: what follows the message is not HTTP/1.1.
    var isUpgrade = false
    var isChunked = false
    var contentLength: Int?
    /// A response that has no body whatever its fields say (to `HEAD`, `1xx`, `204`, `304`).
    var hasNoBody = false
    var isComplete = false

    /// Ready for the next message, keeping the storage (a copy still held elsewhere keeps its own).
    mutating func reset() {
        bytes.clear()
        fields.removeAll(keepingCapacity: true)
        target = 0..<0
        method = .GET
        status = 0
        version = .http1_1
        keepAlive = true
        isUpgrade = false
        isChunked = false
        contentLength = nil
        hasNoBody = false
        isComplete = false
    }

    /// Whether the message has a body (framed by a length other than 0, or chunks).
    var hasBody: Bool { isChunked || (contentLength ?? 0) > 0 }

    var targetString: String { string(target) }

    func string(_ span: Range<Int>) -> String {
        bytes.getString(at: bytes.readerIndex + span.lowerBound, length: span.count) ?? ""
    }

    /// The bytes of `span`, without trailing spaces and tabs.
    func trimmed(_ span: Range<Int>) -> Range<Int> {
        var end = span.upperBound
        while end > span.lowerBound, let byte = bytes.getInteger(at: bytes.readerIndex + end - 1, as: UInt8.self),
            byte == 0x20 || byte == 0x09
        {
            end -= 1
        }
        return span.lowerBound..<end
    }

    /// Whether field `field`'s name is `lowercaseName` (ASCII letters, digits and `-`),
    /// ignoring case. Names are tokens (llhttp refuses anything else), and OR-ing `0x20`
    /// folds a token's letters without making another token character equal a letter,
    /// digit or `-`.
    @inline(__always)
    func name(of field: Field, is lowercaseName: StaticString) -> Bool {
        guard field.name.count == lowercaseName.utf8CodeUnitCount else { return false }
        return bytes.withUnsafeReadableBytes { raw in
            let name = UnsafeRawBufferPointer(rebasing: raw[field.name])
            let lower = UnsafeRawBufferPointer(start: lowercaseName.utf8Start, count: lowercaseName.utf8CodeUnitCount)
            for index in 0..<name.count where name[index] | 0x20 != lower[index] | 0x20 { return false }
            return true
        }
    }

    /// Whether field `field`'s name is `lowercaseName` (any string), ignoring ASCII case.
    func name(of field: Field, isText lowercaseName: String) -> Bool {
        guard field.name.count == lowercaseName.utf8.count else { return false }
        return bytes.withUnsafeReadableBytes { raw in
            zip(raw[field.name], lowercaseName.utf8).allSatisfy { $0 | 0x20 == $1 | 0x20 }
        }
    }

    /// The first field named `lowercaseName`, if any.
    func first(_ lowercaseName: StaticString) -> Field? {
        fields.first { name(of: $0, is: lowercaseName) }
    }

    /// The value of the first field named `lowercaseName`, trailing spaces dropped.
    func value(_ lowercaseName: StaticString) -> String? {
        first(lowercaseName).map { string(trimmed($0.value)) }
    }

    /// Every value of the fields named `lowercaseName`, in order, trailing spaces dropped.
    func values(_ lowercaseName: StaticString) -> [String] {
        fields.compactMap { name(of: $0, is: lowercaseName) ? string(trimmed($0.value)) : nil }
    }

    /// How many fields are named `lowercaseName`.
    func count(_ lowercaseName: StaticString) -> Int {
        fields.reduce(0) { $0 + (name(of: $1, is: lowercaseName) ? 1 : 0) }
    }

    /// Whether `span` starts with `lowercasePrefix`, ignoring ASCII case.
    func hasPrefix(_ span: Range<Int>, _ lowercasePrefix: StaticString) -> Bool {
        guard span.count >= lowercasePrefix.utf8CodeUnitCount else { return false }
        return equalsIgnoringCase(span.lowerBound..<(span.lowerBound + lowercasePrefix.utf8CodeUnitCount), lowercasePrefix)
    }

    /// Whether `span` is `lowercaseText`, ignoring ASCII case (for tokens and such values as
    /// `100-continue`, `keep-alive`).
    func equalsIgnoringCase(_ span: Range<Int>, _ lowercaseText: StaticString) -> Bool {
        guard span.count == lowercaseText.utf8CodeUnitCount else { return false }
        return bytes.withUnsafeReadableBytes { raw in
            let lower = UnsafeRawBufferPointer(start: lowercaseText.utf8Start, count: lowercaseText.utf8CodeUnitCount)
            for (index, byte) in raw[span].enumerated() where byte | 0x20 != lower[index] | 0x20 { return false }
            return true
        }
    }

    /// Whether `span` holds `byte`.
    func contains(_ span: Range<Int>, _ byte: UInt8) -> Bool {
        bytes.withUnsafeReadableBytes { $0[span].contains(byte) }
    }

    /// Writes the bytes of `span`.
    func write(_ span: Range<Int>, to out: inout ByteBuffer) {
        bytes.withUnsafeReadableBytes { out.writeBytes(UnsafeRawBufferPointer(rebasing: $0[span])) }
    }

    /// Writes `name: value\r\n` for `field`, its bytes as they came.
    func writeField(_ field: Field, to out: inout ByteBuffer) {
        bytes.withUnsafeReadableBytes { raw in
            out.writeBytes(UnsafeRawBufferPointer(rebasing: raw[field.name]))
            out.writeStaticString(": ")
            out.writeBytes(UnsafeRawBufferPointer(rebasing: raw[field.value]))
            out.writeStaticString("\r\n")
        }
    }

    /// The fields as `HTTPHeaders`, for code that wants them so (forward-auth, tests).
    var headers: HTTPHeaders {
        HTTPHeaders(fields.map { (string($0.name), string(trimmed($0.value))) })
    }
}
