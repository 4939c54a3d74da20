import NIOCore
import Testing

@testable import TollgateRESP

@Suite struct EncoderTests {
    @Test func encodesStringsBytesAndIntegers() {
        let command = RESPCommand("SET", "key", .bytes(ByteBuffer(bytes: [0, 13, 10, 255])), "PX", 1500)
        let expected: [UInt8] =
            Array("*5\r\n$3\r\nSET\r\n$3\r\nkey\r\n$4\r\n".utf8) + [0, 13, 10, 255]
            + Array("\r\n$2\r\nPX\r\n$4\r\n1500\r\n".utf8)
        #expect(Array(command.encoded.readableBytesView) == expected)
    }

    @Test func encodesEdgeIntegersAndUnicode() {
        let command = RESPCommand("X", .integer(0), .integer(-7), .integer(Int.min), .integer(Int.max), "ü", "")
        let expected =
            "*7\r\n$1\r\nX\r\n$1\r\n0\r\n$2\r\n-7\r\n$20\r\n-9223372036854775808\r\n$19\r\n9223372036854775807\r\n$2\r\nü\r\n$0\r\n\r\n"
        #expect(String(buffer: command.encoded) == expected)
    }

    @Test func integersMatchStringConversion() {
        for value in [0, 1, 9, 10, 99, 100, -1, -10, 123_456_789, -987_654_321, Int.max, Int.min] {
            var buffer = ByteBuffer()
            buffer.writeDecimal(value)
            #expect(String(buffer: buffer) == String(value))
            #expect(ByteBuffer.decimalWidth(value) == String(value).utf8.count)
        }
    }

    @Test func descriptionHidesArguments() {
        let command = RESPCommand("AUTH", "user", "s3cret-pass")
        #expect(!"\(command)".contains("s3cret-pass"))
        #expect(command.name == "AUTH")
    }
}
