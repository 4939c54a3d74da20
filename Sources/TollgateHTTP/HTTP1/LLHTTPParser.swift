import CNIOLLHTTP
import NIOCore
import NIOHTTP1

/// Why a message could not be parsed.
enum HTTPParseFailure: Error, Equatable {
    /// The head's fields (with the target) exceed the byte or field-count bound: `431`.
    case headTooLarge
    /// Anything else llhttp refuses, by its error name (`HPE_INVALID_METHOD`...): `400`.
    case malformed(String)
    /// A version other than HTTP/1.0 and HTTP/1.1 (HTTP/1.x only; stricter than NIOHTTP1,
    /// which takes any 1.x).
    case unsupportedVersion
}

/// Where one call to ``LLHTTPParser/execute(_:)`` stopped.
enum ParseStop: Equatable {
    /// Every byte was consumed; more are needed.
    case endOfInput
    /// A message's head is complete (``LLHTTPParser/head``); nothing after it was consumed.
    case head
    /// A message is complete; nothing after it was consumed.
    case message
    /// A message that switches protocols (CONNECT, `Upgrade`) is complete: what follows is
    /// not HTTP/1.1.
    case upgrade
    case failed(HTTPParseFailure)
}

/// A reusable wrapper of llhttp, the parser NIOHTTP1 itself uses, strict (no lenient flag),
/// that records a message's head as spans of one buffer and its body as spans of the input,
/// without making a `String` or an `HTTPHeaders` per message.
///
/// It stops after each head and after each message, so that the connection decides what
/// to do with what follows (hold it, stream it, parse the next pipelined request). Body
/// bytes come as spans of the buffer given to ``execute(_:)``, valid until that buffer changes;
/// chunked framing is decoded (the spans are the data), so a body can be re-framed as it
/// goes on without trusting the sender's chunk lines.
final class LLHTTPParser {
    enum Kind {
        case request, response
    }

    let kind: Kind
    /// The most bytes of target and header fields a head may hold, and the most fields.
    let maximumHeadBytes: Int
    let maximumFields: Int

    private let parser: UnsafeMutablePointer<llhttp_t>

    /// The head being read, or read last (valid from the moment ``takeHead()`` returns
    /// `true` until the next message begins).
    private(set) var head = MessageHead()
    /// Spans of the buffer last given to ``execute(_:)`` that are body data of the current
    /// message, in order (offsets from its reader index).
    private(set) var bodySpans: [Range<Int>] = []
    /// For a response: whether the request it answers cannot have a body (`HEAD`), set
    /// before its head is parsed.
    var answersHEAD = false

    /// Where the element being read (target, field name or value) began in the head's bytes.
    private var elementStart = 0
    private var headBytesSoFar = 0
    private var trailerBytes = 0
    private var trailerFields = 0
    /// A head completed and not yet taken by ``takeHead()``.
    private var headWaiting = false
    private var failure: HTTPParseFailure?
    /// Base address of the buffer under parse, for body span offsets.
    private var base: UnsafeRawPointer?

    init(kind: Kind, maximumHeadBytes: Int = 16 * 1024, maximumFields: Int = 100) {
        self.kind = kind
        self.maximumHeadBytes = maximumHeadBytes
        self.maximumFields = maximumFields
        parser = .allocate(capacity: 1)
        c_nio_llhttp_init(parser, kind == .request ? HTTP_REQUEST : HTTP_RESPONSE, LLHTTPParser.settings)
    }

    deinit {
        parser.deallocate()
    }

    /// Parses the readable bytes of `buffer` until the end of a request's head, of a
    /// message, of the input, or an error; ``takeHead()`` then tells whether a head was
    /// completed, and ``bodySpans`` holds the body data found.
    ///
    /// A request with a body stops after its head, so that its body is parsed only when the
    /// connection wants it; every message stops after its end. A response does not stop
    /// after its head (it cannot pause and skip its body at once): its head and body come
    /// from the same call.
    func execute(_ buffer: ByteBuffer) -> (consumed: Int, stop: ParseStop) {
        bodySpans.removeAll(keepingCapacity: true)
        if let failure { return (0, .failed(failure)) }
        return buffer.withUnsafeReadableBytes { bytes -> (Int, ParseStop) in
            // With no bytes llhttp still runs what a head paused before (the end of a message
            // without a body, an error in its framing): it needs a pointer all the same.
            let start = bytes.count > 0 ? bytes.baseAddress! : UnsafeRawPointer(LLHTTPParser.noBytes)
            base = start
            parser.pointee.data = Unmanaged.passUnretained(self).toOpaque()
            defer {
                base = nil
                parser.pointee.data = nil
            }
            let code = c_nio_llhttp_execute(parser, start.assumingMemoryBound(to: CChar.self), bytes.count)
            switch code {
            case HPE_OK:
                return (bytes.count, .endOfInput)
            case HPE_PAUSED:
                let consumed = UnsafeRawPointer(c_nio_llhttp_get_error_pos(parser)!) - start
                c_nio_llhttp_resume(parser)
                return (consumed, isIdle ? .message : .head)
            case HPE_PAUSED_UPGRADE:
                // The message switches protocols: nothing after it is parsed here.
                let consumed = UnsafeRawPointer(c_nio_llhttp_get_error_pos(parser)!) - start
                failure = .malformed("HPE_PAUSED_UPGRADE")
                return (consumed, .upgrade)
            default:
                let reason = failure ?? .malformed(String(cString: c_nio_llhttp_errno_name(code)))
                failure = reason
                return (bytes.count, .failed(reason))
            }
        }
    }

    /// Whether a head was completed since the last call: the caller handles it (once) before
    /// the body spans and the end that came with it.
    func takeHead() -> Bool {
        defer { headWaiting = false }
        return headWaiting
    }

    /// The input ended (the peer closed): `.message` if that ends a message delimited by
    /// the connection's close (an answer without a length), `.endOfInput` between messages,
    /// else what was cut short.
    func finish() -> ParseStop {
        if let failure { return .failed(failure) }
        let wasIdle = isIdle
        parser.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        defer { parser.pointee.data = nil }
        switch c_nio_llhttp_finish(parser) {
        case HPE_OK, HPE_PAUSED: return wasIdle ? .endOfInput : .message
        case let code: return .failed(.malformed(String(cString: c_nio_llhttp_errno_name(code))))
        }
    }

    /// Whether the parser is between messages (no head or body begun).
    private(set) var isIdle = true

    /// A valid address for an execution over no bytes.
    nonisolated(unsafe) private static let noBytes = UnsafeMutableRawPointer.allocate(byteCount: 1, alignment: 1)

    // MARK: Callbacks

    private static func from(_ pointer: UnsafeMutablePointer<llhttp_t>?) -> LLHTTPParser {
        Unmanaged<LLHTTPParser>.fromOpaque(pointer!.pointee.data!).takeUnretainedValue()
    }

    /// One table of callbacks for every parser: each finds its parser through `data`.
    /// Written once, then only read (by every parser, on any thread).
    nonisolated(unsafe) private static let settings: UnsafeMutablePointer<llhttp_settings_t> = {
        let settings = UnsafeMutablePointer<llhttp_settings_t>.allocate(capacity: 1)
        c_nio_llhttp_settings_init(settings)
        settings.pointee.on_message_begin = { LLHTTPParser.from($0).messageBegan() }
        settings.pointee.on_url = { LLHTTPParser.from($0).data($1, $2) }
        settings.pointee.on_url_complete = { LLHTTPParser.from($0).targetComplete() }
        settings.pointee.on_header_field = { LLHTTPParser.from($0).data($1, $2) }
        settings.pointee.on_header_field_complete = { LLHTTPParser.from($0).nameComplete() }
        settings.pointee.on_header_value = { LLHTTPParser.from($0).data($1, $2) }
        settings.pointee.on_header_value_complete = { LLHTTPParser.from($0).valueComplete() }
        settings.pointee.on_headers_complete = { LLHTTPParser.from($0).headersComplete() }
        settings.pointee.on_body = { LLHTTPParser.from($0).body($1, $2) }
        settings.pointee.on_message_complete = { pointer in
            // llhttp keeps the last content length (nodejs/llhttp#202), as NIOHTTP1 notes too.
            pointer?.pointee.content_length = 0
            return LLHTTPParser.from(pointer).messageComplete()
        }
        return settings
    }()

    private func messageBegan() -> CInt {
        isIdle = false
        head.reset()
        elementStart = 0
        headBytesSoFar = 0
        trailerBytes = 0
        trailerFields = 0
        return 0
    }

    /// A piece of the target, a field name or a value: kept in the head's bytes (trailers,
    /// after a chunked body, are read past and never kept: the body is re-framed without them).
    private func data(_ at: UnsafePointer<CChar>?, _ length: Int) -> CInt {
        guard let at, length > 0 else { return 0 }
        if head.isComplete {
            trailerBytes += length
            return trailerBytes > maximumHeadBytes ? fail(.headTooLarge) : 0
        }
        headBytesSoFar += length
        if headBytesSoFar > maximumHeadBytes { return fail(.headTooLarge) }
        head.bytes.writeBytes(UnsafeRawBufferPointer(start: UnsafeRawPointer(at), count: length))
        return 0
    }

    private func currentSpan() -> Range<Int> {
        defer { elementStart = head.bytes.writerIndex }
        return elementStart..<head.bytes.writerIndex
    }

    private func targetComplete() -> CInt {
        head.target = currentSpan()
        return 0
    }

    private func nameComplete() -> CInt {
        if head.isComplete {
            trailerFields += 1
            return trailerFields > maximumFields ? fail(.headTooLarge) : 0
        }
        let span = currentSpan()
        // llhttp lets an empty field name through; HTTP does not.
        if span.isEmpty { return fail(.malformed("HPE_INVALID_HEADER_TOKEN")) }
        if head.fields.count >= maximumFields { return fail(.headTooLarge) }
        head.fields.append(MessageHead.Field(name: span, value: span.upperBound..<span.upperBound))
        return 0
    }

    private func valueComplete() -> CInt {
        if head.isComplete { return 0 }
        let span = currentSpan()
        if let last = head.fields.indices.last { head.fields[last].value = span }
        return 0
    }

    private func headersComplete() -> CInt {
        let major = parser.pointee.http_major
        let minor = parser.pointee.http_minor
        guard major == 1, minor <= 1 else { return fail(.unsupportedVersion) }
        head.version = minor == 0 ? .http1_0 : .http1_1
        head.keepAlive = c_nio_llhttp_should_keep_alive(parser) != 0
        head.isUpgrade = parser.pointee.upgrade != 0
        let flags = UInt32(parser.pointee.flags)
        head.isChunked = flags & F_CHUNKED.rawValue != 0
        head.contentLength = flags & F_CONTENT_LENGTH.rawValue != 0 ? Int(truncatingIfNeeded: parser.pointee.content_length) : nil
        head.isComplete = true
        headWaiting = true
        switch kind {
        case .request:
            head.method = HTTPMethodTable.method(Int(parser.pointee.method))
            // A request without a body goes on to its end in the same call; one with a body
            // stops here, so that its body is parsed only when the connection wants it.
            return head.hasBody ? CInt(HPE_PAUSED.rawValue) : 0
        case .response:
            let status = Int(parser.pointee.status_code)
            head.status = status
            // No body to HEAD, nor with 1xx, 204 or 304, whatever the fields say (RFC 9112
            // section 6.3); llhttp would otherwise wait for one.
            if answersHEAD || (100..<200).contains(status) || status == 204 || status == 304 {
                head.hasNoBody = true
                return 1
            }
            return 0
        }
    }

    private func body(_ at: UnsafePointer<CChar>?, _ length: Int) -> CInt {
        guard let at, let base else { return 0 }
        let offset = UnsafeRawPointer(at) - base
        bodySpans.append(offset..<(offset + length))
        return 0
    }

    private func messageComplete() -> CInt {
        isIdle = true
        // After CONNECT or an upgrade, llhttp itself stops (`HPE_PAUSED_UPGRADE`).
        return head.isUpgrade ? 0 : CInt(HPE_PAUSED.rawValue)
    }

    private func fail(_ reason: HTTPParseFailure) -> CInt {
        failure = reason
        return -1
    }
}

/// llhttp's method numbers as NIOHTTP1's `HTTPMethod`, made once (a custom method costs a
/// `String`; the table makes none per request).
enum HTTPMethodTable {
    /// llhttp numbers its methods 0 to 46 (`HTTP_ALL_METHOD_MAP`); asked for another, its
    /// name function aborts.
    static let methods: [HTTPMethod] = (0...46).map { number in
        HTTPMethod(rawValue: String(cString: c_nio_llhttp_method_name(llhttp_method_t(rawValue: UInt32(number)))))
    }

    static func method(_ number: Int) -> HTTPMethod {
        number < methods.count ? methods[number] : .RAW(value: "")
    }
}
