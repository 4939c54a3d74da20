import Foundation
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

@testable import TollgateHTTP

/// The data plane's own parsing (``LLHTTPParser``) against NIOHTTP1's `HTTPRequestDecoder`,
/// on random and mutated request streams fed in random pieces: both must agree on accept
/// or refuse, and on each message's method, target, version, fields, keep-alive and body.
///
/// Documented stricter refusals (the only disagreements allowed): a version other than
/// HTTP/1.0 and 1.1 (NIOHTTP1 takes any 1.x).
@Suite struct ParserDifferentialTests {
    enum Event: Equatable, CustomStringConvertible {
        case head(method: String, target: String, version: String, fields: [String], keepAlive: Bool)
        case body([UInt8])
        case end
        case error(tooLarge: Bool)

        var description: String {
            switch self {
            case .head(let method, let target, let version, let fields, let keepAlive):
                "head(\(method) \(target) \(version) keepAlive=\(keepAlive) \(fields))"
            case .body(let bytes): "body(\(bytes.count) bytes: \(String(decoding: bytes.prefix(40), as: UTF8.self)))"
            case .end: "end"
            case .error(let tooLarge): tooLarge ? "error(too large)" : "error"
            }
        }
    }

    static let limits: NIOHTTPDecoderLimitConfiguration = {
        var limits = NIOHTTPDecoderLimitConfiguration()
        limits.maxHeaderListSize = 16 * 1024
        limits.maxHeaderFieldSize = 16 * 1024
        limits.maxHeaderFieldCount = 100
        return limits
    }()

    /// What the data plane's parser makes of `pieces`, as the connection feeds it.
    static func gateway(_ pieces: [[UInt8]]) -> [Event] {
        let parser = LLHTTPParser(kind: .request)
        var events: [Event] = []
        var body: [UInt8] = []
        var input = ByteBuffer()
        for piece in pieces {
            input.writeBytes(piece)
            while true {
                let (consumed, stop) = parser.execute(input)
                if parser.takeHead() {
                    let head = parser.head
                    events.append(
                        .head(
                            method: head.method.rawValue, target: head.targetString, version: "\(head.version)",
                            fields: head.fields.map { head.string($0.name) + ": " + head.string($0.value) }, keepAlive: head.keepAlive))
                }
                for span in parser.bodySpans {
                    body += input.getBytes(at: input.readerIndex + span.lowerBound, length: span.count) ?? []
                }
                input.moveReaderIndex(forwardBy: consumed)
                switch stop {
                case .endOfInput:
                    break
                case .head:
                    continue
                case .message, .upgrade:
                    if !body.isEmpty { events.append(.body(body)) }
                    body = []
                    events.append(.end)
                    if stop == .upgrade { return events }
                    continue
                case .failed(let failure):
                    if !body.isEmpty { events.append(.body(body)) }
                    events.append(.error(tooLarge: failure == .headTooLarge))
                    return events
                }
                break
            }
        }
        if !body.isEmpty { events.append(.body(body)) }
        return events
    }

    /// What NIOHTTP1's decoder makes of `pieces`.
    static func nio(_ pieces: [[UInt8]]) -> [Event] {
        let channel = EmbeddedChannel(
            handler: ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes, limitConfiguration: limits)))
        var events: [Event] = []
        var body: [UInt8] = []
        func drain() {
            while let part = try? channel.readInbound(as: HTTPServerRequestPart.self) {
                switch part {
                case .head(let head):
                    events.append(
                        .head(
                            method: head.method.rawValue, target: head.uri, version: "\(head.version)",
                            fields: head.headers.map { $0.name + ": " + $0.value }, keepAlive: head.isKeepAlive))
                case .body(var buffer):
                    body += buffer.readBytes(length: buffer.readableBytes) ?? []
                case .end:
                    if !body.isEmpty { events.append(.body(body)) }
                    body = []
                    events.append(.end)
                }
            }
        }
        for piece in pieces {
            do {
                try channel.writeInbound(ByteBuffer(bytes: piece))
                drain()
            } catch {
                drain()
                if !body.isEmpty { events.append(.body(body)) }
                events.append(.error(tooLarge: error as? HTTPParserError == .headerOverflow))
                _ = try? channel.finish()
                return events
            }
        }
        drain()
        if !body.isEmpty { events.append(.body(body)) }
        _ = try? channel.finish()
        return events
    }

    /// A small deterministic generator, so that a failure names a seed that reproduces it.
    struct Generator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    static let methods = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT", "BREW", "get", "GET "]
    static let targets = [
        "/", "/api1", "/v1/orders/5?x=1&y=%20", "*", "http://example.com/x", "/a b", "/%41", "example.com:443", "/api1#frag", "",
        "/\u{7F}", "/caf\u{e9}",
    ]
    static let versions = ["HTTP/1.1", "HTTP/1.0", "HTTP/1.2", "HTTP/2.0", "HTTP/0.9", "HTTP/1.1 ", "HTTPS/1.1", "http/1.1"]
    static let fields = [
        "Host: example.com", "token: secret-1", "X-API-Key: k", "Authorization: Bearer abc", "Connection: close",
        "Connection: keep-alive", "Connection: upgrade", "Upgrade: websocket", "X-Empty:", "X-Spaces:   padded   ",
        "X-Tab:\tv\t", "Content-Length: 0", "Content-Length: 5", "Content-Length: 5", "Content-Length: 6", "Content-Length: -1",
        "Content-Length: 1x", "Content-Length: 99999999999999999999", "Transfer-Encoding: chunked", "Transfer-Encoding: gzip",
        "Transfer-Encoding: gzip, chunked", "Transfer-Encoding: chunked, gzip", "Transfer-Encoding: Chunked",
        "X_Under: x", "Bad Name: v", " Leading: v", "Trailing : v", "X-Fold: a\r\n b", "X-Nul: a\u{0}b", "X-High: caf\u{e9}",
        ": empty-name", "Expect: 100-continue", "X-Colon: a:b", "x-lower: v", "X-Obs:\u{1}", "Cookie: a=b; c=d",
    ]

    static func request(_ random: inout Generator) -> [UInt8] {
        let method = methods.randomElement(using: &random)!
        let target = targets.randomElement(using: &random)!
        let version = random.next() % 4 == 0 ? versions.randomElement(using: &random)! : (random.next() % 3 == 0 ? "HTTP/1.0" : "HTTP/1.1")
        var lines = ["\(method) \(target) \(version)"]
        for _ in 0..<Int(random.next() % 6) { lines.append(fields.randomElement(using: &random)!) }
        var text = lines.joined(separator: "\r\n") + "\r\n\r\n"
        let joined = lines.joined(separator: "\n").lowercased()
        if joined.contains("transfer-encoding: chunked") || joined.contains(", chunked") {
            let chunks = ["5\r\nhello\r\n", "3;ext=1\r\nabc\r\n", "0\r\n\r\n", "0\r\nX-Trailer: t\r\n\r\n", "zz\r\n", "5\r\nhel\r\n"]
            for _ in 0..<Int(random.next() % 3) { text += chunks[0...1].randomElement(using: &random)! }
            text += chunks[2...].randomElement(using: &random)!
        } else if let range = joined.range(of: "content-length: "), let length = Int(joined[range.upperBound...].prefix { $0.isNumber }) {
            text += String(repeating: "b", count: min(length, 8))
        }
        return Array(text.utf8)
    }

    static func mutate(_ bytes: [UInt8], _ random: inout Generator) -> [UInt8] {
        var bytes = bytes
        guard !bytes.isEmpty else { return bytes }
        let specials: [UInt8] = [0, 9, 10, 13, 32, 58, 0x7F, 0xE9, 0x22, 0x2C, 0x3B]
        for _ in 0..<Int(1 + random.next() % 3) {
            let index = Int(random.next() % UInt64(bytes.count))
            switch random.next() % 5 {
            case 0: bytes[index] = specials.randomElement(using: &random)!
            case 1: bytes.insert(specials.randomElement(using: &random)!, at: index)
            case 2: bytes.remove(at: index)
            case 3: bytes[index] = UInt8(truncatingIfNeeded: random.next())
            default:
                // A bare LF where CRLF was.
                if let cr = bytes[index...].firstIndex(of: 13), cr + 1 < bytes.count, bytes[cr + 1] == 10 { bytes.remove(at: cr) }
            }
            if bytes.isEmpty { break }
        }
        return bytes
    }

    static func pieces(_ bytes: [UInt8], _ random: inout Generator) -> [[UInt8]] {
        var pieces: [[UInt8]] = []
        var rest = bytes[...]
        while !rest.isEmpty {
            let size = random.next() % 3 == 0 ? rest.count : Int(1 + random.next() % UInt64(rest.count))
            pieces.append(Array(rest.prefix(size)))
            rest = rest.dropFirst(size)
        }
        return pieces
    }

    /// A disagreement the data plane documents: it refuses a version NIOHTTP1 takes.
    static func isDocumentedStricterRefusal(gateway: [Event], nio: [Event]) -> Bool {
        guard case .error = gateway.last else { return false }
        let accepted = gateway.dropLast()
        guard nio.starts(with: accepted), nio.count > accepted.count, case .head(_, _, let version, _, _) = nio[accepted.count] else {
            return false
        }
        return version != "HTTP/1.0" && version != "HTTP/1.1"
    }

    @Test(arguments: 0..<8)
    func randomAndMutatedStreamsAreParsedAsNIOHTTP1ParsesThem(seed: UInt64) {
        var random = Generator(state: seed &* 7919)
        var disagreements: [String] = []
        for index in 0..<1500 {
            var stream: [UInt8] = []
            for _ in 0..<Int(1 + random.next() % 3) { stream += Self.request(&random) }
            if random.next() % 2 == 0 { stream = Self.mutate(stream, &random) }
            let split = Self.pieces(stream, &random)
            let ours = Self.gateway(split)
            let theirs = Self.nio(split)
            if ours != theirs && !Self.isDocumentedStricterRefusal(gateway: ours, nio: theirs) {
                disagreements.append(
                    "seed \(seed) case \(index): \(String(decoding: stream, as: UTF8.self).debugDescription)\n  ours:   \(ours)\n  NIO:    \(theirs)"
                )
            }
        }
        #expect(disagreements.isEmpty, "\(disagreements.count) disagreements, first: \(disagreements.prefix(3).joined(separator: "\n"))")
    }

    @Test func aHeadAboveTheBoundIsTooLargeForBoth() {
        let huge = Array(("GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + String(repeating: "a", count: 17 * 1024) + "\r\n\r\n").utf8)
        #expect(Self.gateway([huge]).last == .error(tooLarge: true))
        #expect(Self.nio([huge]).last == .error(tooLarge: true))
        let many = Array(("GET / HTTP/1.1\r\n" + (0..<101).map { "X-\($0): v\r\n" }.joined() + "\r\n").utf8)
        #expect(Self.gateway([many]).last == .error(tooLarge: true))
        #expect(Self.nio([many]).last == .error(tooLarge: true))
    }
}
