import NIOCore

/// An incremental RESP2/RESP3 reply decoder.
///
/// It consumes bytes as they arrive and keeps partially built aggregates on an explicit
/// stack, so a reply never has to be in memory in one piece before decoding starts and
/// every byte of a finished element is parsed exactly once, whatever the read sizes.
/// Only an incomplete header line or an incomplete bulk payload is left in the buffer to be
/// looked at again when more bytes arrive (a bulk header is remembered, not re-read).
///
/// Feed it with ``next(from:)`` until it returns `nil` ("need more data"). After it throws,
/// the stream is unrecoverable and the connection must be closed.
public struct RESPParser: Sendable {
    private enum AggregateKind: Sendable {
        case array, set, push, map, attribute
    }

    private struct Frame: Sendable {
        var kind: AggregateKind
        var remaining: Int
        var elements: [RESPValue]
    }

    private enum Blob: Sendable {
        case bulkString, bulkError, verbatim
    }

    private enum Step {
        case needMoreData
        case opened
        case value(RESPValue)
    }

    private static let cr = UInt8(ascii: "\r")
    private static let lf = UInt8(ascii: "\n")

    /// The limits this parser enforces.
    public let limits: RESPDecoderLimits
    private var stack: [Frame] = []
    private var pendingBlob: (kind: Blob, length: Int)?

    /// Creates a parser with no buffered state; use one per connection.
    public init(limits: RESPDecoderLimits = RESPDecoderLimits()) {
        self.limits = limits
    }

    /// Decodes the next complete top-level reply from `buffer`, consuming its bytes.
    ///
    /// - Returns: the reply, or `nil` when `buffer` holds no complete reply yet (the bytes
    ///   consumed so far are remembered; call again with the same buffer after appending).
    /// - Throws: ``RESPError`` with code ``RESPError/Code/protocolError``.
    public mutating func next(from buffer: inout ByteBuffer) throws(RESPError) -> RESPValue? {
        outer: while true {
            var value: RESPValue
            switch try self.step(&buffer) {
            case .needMoreData: return nil
            case .opened: continue outer
            case .value(let v): value = v
            }
            // Fold the finished value into the enclosing aggregates.
            while true {
                let top = self.stack.count - 1
                if top < 0 { return value }
                self.stack[top].elements.append(value)
                self.stack[top].remaining -= 1
                if self.stack[top].remaining > 0 { continue outer }
                let frame = self.stack.removeLast()
                switch frame.kind {
                case .attribute:
                    // Attributes describe the value that follows; it takes the attribute's place.
                    continue outer
                case .array: value = .array(frame.elements)
                case .set: value = .set(frame.elements)
                case .push: value = .push(frame.elements)
                case .map: value = .map(Self.pairs(frame.elements))
                }
            }
        }
    }

    private static func pairs(_ elements: [RESPValue]) -> [RESPValue: RESPValue] {
        var m = [RESPValue: RESPValue](minimumCapacity: elements.count / 2)
        var i = 0
        while i + 1 < elements.count {
            m[elements[i]] = elements[i + 1]
            i += 2
        }
        return m
    }

    private mutating func step(_ buffer: inout ByteBuffer) throws(RESPError) -> Step {
        if let blob = self.pendingBlob {
            return try self.readBlob(blob.kind, length: blob.length, &buffer)
        }
        guard let lineLength = try self.lineLength(buffer) else { return .needMoreData }
        // lineLength counts the type byte and the content, not the CRLF.
        let start = buffer.readerIndex
        let type = buffer.getInteger(at: start, as: UInt8.self)!
        let contentStart = start + 1
        let contentLength = lineLength - 1
        let result: Step
        switch type {
        case UInt8(ascii: "+"):
            result = .value(.simpleString(buffer.getString(at: contentStart, length: contentLength)!))
        case UInt8(ascii: "-"):
            result = .value(.error(buffer.getString(at: contentStart, length: contentLength)!))
        case UInt8(ascii: ":"):
            result = .value(.integer(try Self.integer(buffer, at: contentStart, length: contentLength)))
        case UInt8(ascii: "_"):
            guard contentLength == 0 else { throw Self.error("null with content") }
            result = .value(.null)
        case UInt8(ascii: "#"):
            guard contentLength == 1 else { throw Self.error("malformed boolean") }
            switch buffer.getInteger(at: contentStart, as: UInt8.self)! {
            case UInt8(ascii: "t"): result = .value(.boolean(true))
            case UInt8(ascii: "f"): result = .value(.boolean(false))
            default: throw Self.error("malformed boolean")
            }
        case UInt8(ascii: ","):
            let text = buffer.getString(at: contentStart, length: contentLength)!
            guard let d = Self.double(text) else { throw Self.error("malformed double") }
            result = .value(.double(d))
        case UInt8(ascii: "("):
            let text = buffer.getString(at: contentStart, length: contentLength)!
            guard Self.isBigNumber(text) else { throw Self.error("malformed big number") }
            result = .value(.bigNumber(text))
        case UInt8(ascii: "$"), UInt8(ascii: "!"), UInt8(ascii: "="):
            let length = try Self.integer(buffer, at: contentStart, length: contentLength)
            buffer.moveReaderIndex(forwardBy: lineLength + 2)
            if length == -1 && type == UInt8(ascii: "$") { return .value(.null) }
            guard length >= 0 else { throw Self.error("negative bulk length") }
            guard length <= self.limits.maxBulkLength else {
                throw Self.error("bulk length \(length) exceeds limit \(self.limits.maxBulkLength)")
            }
            let kind: Blob = type == UInt8(ascii: "$") ? .bulkString : (type == UInt8(ascii: "!") ? .bulkError : .verbatim)
            return try self.readBlob(kind, length: Int(length), &buffer)
        case UInt8(ascii: "*"), UInt8(ascii: "~"), UInt8(ascii: ">"), UInt8(ascii: "%"), UInt8(ascii: "|"):
            let count = try Self.integer(buffer, at: contentStart, length: contentLength)
            buffer.moveReaderIndex(forwardBy: lineLength + 2)
            if count == -1 && type == UInt8(ascii: "*") { return .value(.null) }
            guard count >= 0 else { throw Self.error("negative aggregate count") }
            guard count <= self.limits.maxAggregateCount else {
                throw Self.error("aggregate count \(count) exceeds limit \(self.limits.maxAggregateCount)")
            }
            let kind: AggregateKind
            switch type {
            case UInt8(ascii: "*"): kind = .array
            case UInt8(ascii: "~"): kind = .set
            case UInt8(ascii: ">"): kind = .push
            case UInt8(ascii: "%"): kind = .map
            default: kind = .attribute
            }
            let elementCount = (kind == .map || kind == .attribute) ? Int(count) * 2 : Int(count)
            if elementCount == 0 {
                switch kind {
                case .array: return .value(.array([]))
                case .set: return .value(.set([]))
                case .push: return .value(.push([]))
                case .map: return .value(.map([:]))
                case .attribute: return .opened  // empty attribute: nothing to attach, read on
                }
            }
            guard self.stack.count < self.limits.maxDepth else {
                throw Self.error("nesting deeper than \(self.limits.maxDepth)")
            }
            var elements: [RESPValue] = []
            elements.reserveCapacity(Swift.min(elementCount, 64))
            self.stack.append(Frame(kind: kind, remaining: elementCount, elements: elements))
            return .opened
        default:
            throw Self.error("unknown type byte 0x\(String(type, radix: 16))")
        }
        buffer.moveReaderIndex(forwardBy: lineLength + 2)
        return result
    }

    private mutating func readBlob(_ kind: Blob, length: Int, _ buffer: inout ByteBuffer) throws(RESPError) -> Step {
        guard buffer.readableBytes >= length + 2 else {
            self.pendingBlob = (kind, length)
            return .needMoreData
        }
        self.pendingBlob = nil
        let end = buffer.readerIndex + length
        guard buffer.getInteger(at: end, as: UInt8.self) == Self.cr,
            buffer.getInteger(at: end + 1, as: UInt8.self) == Self.lf
        else { throw Self.error("bulk payload not terminated by CRLF") }
        let payload = buffer.readSlice(length: length)!
        buffer.moveReaderIndex(forwardBy: 2)
        switch kind {
        case .bulkString:
            return .value(.bulkString(payload))
        case .bulkError:
            return .value(.error(String(buffer: payload)))
        case .verbatim:
            guard length >= 4, payload.getInteger(at: payload.readerIndex + 3, as: UInt8.self) == UInt8(ascii: ":") else {
                throw Self.error("malformed verbatim string")
            }
            let format = payload.getString(at: payload.readerIndex, length: 3)!
            return .value(.verbatimString(format: format, text: payload.getSlice(at: payload.readerIndex + 4, length: length - 4)!))
        }
    }

    /// Length of the line at the reader index up to (excluding) CRLF, or nil if incomplete.
    private func lineLength(_ buffer: ByteBuffer) throws(RESPError) -> Int? {
        let limit = self.limits.maxLineLength
        let searched = Swift.min(buffer.readableBytes, limit + 2)
        let newline = buffer.withUnsafeReadableBytes { raw in
            UnsafeRawBufferPointer(rebasing: raw[0..<searched]).firstIndex(of: Self.lf)
        }
        guard let newline else {
            if buffer.readableBytes >= limit + 2 { throw Self.error("line longer than \(limit) bytes") }
            return nil
        }
        guard newline >= 2, buffer.getInteger(at: buffer.readerIndex + newline - 1, as: UInt8.self) == Self.cr else {
            throw Self.error("line not terminated by CRLF")
        }
        return newline - 1
    }

    private static func integer(_ buffer: ByteBuffer, at index: Int, length: Int) throws(RESPError) -> Int64 {
        let parsed: Int64? = buffer.withUnsafeReadableBytes { raw -> Int64? in
            let offset = index - buffer.readerIndex
            guard length > 0 else { return nil }
            var i = offset
            let end = offset + length
            var negative = false
            if raw[i] == UInt8(ascii: "-") {
                negative = true
                i += 1
                guard i < end else { return nil }
            }
            var value: Int64 = 0
            while i < end {
                let digit = raw[i] &- UInt8(ascii: "0")
                guard digit < 10 else { return nil }
                let (m, o1) = value.multipliedReportingOverflow(by: 10)
                let (a, o2) = negative ? m.subtractingReportingOverflow(Int64(digit)) : m.addingReportingOverflow(Int64(digit))
                guard !o1, !o2 else { return nil }
                value = a
                i += 1
            }
            return value
        }
        guard let parsed else { throw Self.error("malformed integer") }
        return parsed
    }

    private static func double(_ text: String) -> Double? {
        switch text {
        case "inf", "+inf": return .infinity
        case "-inf": return -.infinity
        case "nan", "-nan": return .nan
        default:
            guard let first = text.utf8.first,
                first == UInt8(ascii: "-") || first == UInt8(ascii: "+") || first == UInt8(ascii: ".")
                    || (first >= UInt8(ascii: "0") && first <= UInt8(ascii: "9"))
            else {
                return nil
            }
            return Double(text)
        }
    }

    private static func isBigNumber(_ text: String) -> Bool {
        var utf8 = text.utf8[...]
        if utf8.first == UInt8(ascii: "-") || utf8.first == UInt8(ascii: "+") { utf8 = utf8.dropFirst() }
        return !utf8.isEmpty && utf8.allSatisfy { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
    }

    private static func error(_ message: String) -> RESPError {
        RESPError(.protocolError, message)
    }
}
