import NIOCore

/// A command: its name and arguments, sent as a RESP array of bulk strings.
///
/// `RESPCommand("SET", "key", .bytes(value), "PX", 500)`. The command is a plain value so it
/// can be built on any thread and handed to a connection; encoding happens once, on the
/// connection's event loop, directly into that connection's reusable output buffer.
public struct RESPCommand: Sendable, Hashable {
    /// Name first, then arguments, exactly as sent.
    public var arguments: [RESPArgument]

    /// Builds a command from literals and values: `RESPCommand("INCRBY", "hits:\(key)", 1)`.
    public init(_ name: String, _ arguments: RESPArgument...) {
        self.arguments = [.string(name)]
        self.arguments.append(contentsOf: arguments)
    }

    /// Builds a command from an argument array assembled at run time (e.g. variable key lists).
    public init(_ name: String, arguments: [RESPArgument]) {
        self.arguments = [.string(name)]
        self.arguments.append(contentsOf: arguments)
    }

    /// The command name, e.g. for logging (arguments may hold secrets or user data, so this
    /// module logs only names).
    public var name: String { self.arguments.first?.description ?? "" }

    /// Writes the command's RESP encoding into `buffer`.
    public func encode(into buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt8(ascii: "*"))
        buffer.writeDecimal(self.arguments.count)
        buffer.writeCRLF()
        for argument in self.arguments {
            switch argument {
            case .string(let s):
                var s = s
                s.makeContiguousUTF8()
                buffer.writeInteger(UInt8(ascii: "$"))
                buffer.writeDecimal(s.utf8.count)
                buffer.writeCRLF()
                buffer.writeString(s)
            case .bytes(let b):
                buffer.writeInteger(UInt8(ascii: "$"))
                buffer.writeDecimal(b.readableBytes)
                buffer.writeCRLF()
                buffer.writeImmutableBuffer(b)
            case .integer(let i):
                buffer.writeInteger(UInt8(ascii: "$"))
                buffer.writeDecimal(ByteBuffer.decimalWidth(i))
                buffer.writeCRLF()
                buffer.writeDecimal(i)
            }
            buffer.writeCRLF()
        }
    }

    /// The command's encoding in a fresh buffer (handy for tests and logging tools).
    public var encoded: ByteBuffer {
        var buffer = ByteBuffer()
        self.encode(into: &buffer)
        return buffer
    }
}

extension RESPCommand: CustomStringConvertible {
    /// Only the name: arguments can be passwords (AUTH) or user data.
    public var description: String { "RESPCommand(\(self.name), \(self.arguments.count - 1) args)" }
}

extension ByteBuffer {
    @inline(__always)
    mutating func writeCRLF() {
        self.writeInteger(UInt16(0x0D0A))  // "\r\n" big-endian
    }

    /// Number of ASCII characters of `value` in decimal.
    @inline(__always)
    static func decimalWidth(_ value: Int) -> Int {
        var width = value < 0 ? 2 : 1
        var v = value.magnitude
        while v >= 10 {
            v /= 10
            width += 1
        }
        return width
    }

    /// Writes `value` in ASCII decimal without going through `String`.
    @inline(__always)
    mutating func writeDecimal(_ value: Int) {
        if value >= 0 && value < 10 {
            self.writeInteger(UInt8(truncatingIfNeeded: value) &+ UInt8(ascii: "0"))
            return
        }
        let width = Self.decimalWidth(value)
        self.writeWithUnsafeMutableBytes(minimumWritableBytes: width) { raw in
            var v = value.magnitude
            var i = width - 1
            repeat {
                raw[i] = UInt8(truncatingIfNeeded: v % 10) &+ UInt8(ascii: "0")
                v /= 10
                i -= 1
            } while v > 0
            if value < 0 { raw[0] = UInt8(ascii: "-") }
            return width
        }
    }
}
