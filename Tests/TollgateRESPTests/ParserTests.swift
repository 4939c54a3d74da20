import NIOCore
import Testing

@testable import TollgateRESP

/// Test fixtures: wire bytes and the value they decode to.
let replyFixtures: [(wire: String, value: RESPValue)] = [
    ("+OK\r\n", .simpleString("OK")),
    ("-ERR unknown command 'FOO'\r\n", .error("ERR unknown command 'FOO'")),
    (":0\r\n", .integer(0)),
    (":-42\r\n", .integer(-42)),
    (":9223372036854775807\r\n", .integer(.max)),
    (":-9223372036854775808\r\n", .integer(.min)),
    ("$5\r\nhello\r\n", .bulkString(ByteBuffer(string: "hello"))),
    ("$0\r\n\r\n", .bulkString(ByteBuffer())),
    ("$4\r\na\r\nb\r\n", .bulkString(ByteBuffer(string: "a\r\nb"))),
    ("$-1\r\n", .null),
    ("*-1\r\n", .null),
    ("*0\r\n", .array([])),
    ("_\r\n", .null),
    ("#t\r\n", .boolean(true)),
    ("#f\r\n", .boolean(false)),
    (",3.25\r\n", .double(3.25)),
    (",-1e10\r\n", .double(-1e10)),
    (",inf\r\n", .double(.infinity)),
    (",-inf\r\n", .double(-.infinity)),
    ("(3492890328409238509324850943850943825024385\r\n", .bigNumber("3492890328409238509324850943850943825024385")),
    ("!21\r\nSYNTAX invalid syntax\r\n", .error("SYNTAX invalid syntax")),
    ("=15\r\ntxt:Some string\r\n", .verbatimString(format: "txt", text: ByteBuffer(string: "Some string"))),
    ("*3\r\n:1\r\n$3\r\nfoo\r\n$-1\r\n", .array([.integer(1), .bulkString(ByteBuffer(string: "foo")), .null])),
    (
        "*2\r\n*3\r\n:1\r\n:2\r\n:3\r\n*2\r\n+Hello\r\n-World\r\n",
        .array([.array([.integer(1), .integer(2), .integer(3)]), .array([.simpleString("Hello"), .error("World")])])
    ),
    ("*2\r\n*0\r\n*1\r\n*1\r\n:7\r\n", .array([.array([]), .array([.array([.integer(7)])])])),
    (
        "%2\r\n+first\r\n:1\r\n$6\r\nsecond\r\n*2\r\n#t\r\n_\r\n",
        .map([.simpleString("first"): .integer(1), .bulkString(ByteBuffer(string: "second")): .array([.boolean(true), .null])])
    ),
    ("%0\r\n", .map([:])),
    ("~3\r\n+a\r\n+b\r\n:3\r\n", .set([.simpleString("a"), .simpleString("b"), .integer(3)])),
    (
        ">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n",
        .push([.bulkString(ByteBuffer(string: "message")), .bulkString(ByteBuffer(string: "ch")), .bulkString(ByteBuffer(string: "hi"))])
    ),
    // Attributes are skipped; the value after them is the reply (also inside aggregates).
    ("|1\r\n+key-popularity\r\n%1\r\n$1\r\na\r\n,0.19\r\n*2\r\n:2\r\n:3\r\n", .array([.integer(2), .integer(3)])),
    ("*2\r\n:1\r\n|1\r\n+ttl\r\n:3600\r\n:2\r\n", .array([.integer(1), .integer(2)])),
]

/// Decodes all complete values from `chunks`, feeding them one by one like socket reads.
func decodeAll(_ chunks: [ByteBuffer], limits: RESPDecoderLimits = RESPDecoderLimits()) throws -> [RESPValue] {
    var parser = RESPParser(limits: limits)
    var buffer = ByteBuffer()
    var values: [RESPValue] = []
    for var chunk in chunks {
        buffer.writeBuffer(&chunk)
        while let v = try parser.next(from: &buffer) { values.append(v) }
    }
    #expect(buffer.readableBytes == 0)
    return values
}

@Suite struct ParserTests {
    @Test(arguments: replyFixtures.indices)
    func decodesWholeReply(_ index: Int) throws {
        let f = replyFixtures[index]
        #expect(try decodeAll([ByteBuffer(string: f.wire)]) == [f.value])
    }

    @Test(arguments: replyFixtures.indices)
    func decodesReplySplitAtEveryByteBoundary(_ index: Int) throws {
        let f = replyFixtures[index]
        let bytes = Array(f.wire.utf8)
        // Every two-way split ...
        for cut in 0...bytes.count {
            let chunks = [ByteBuffer(bytes: bytes[..<cut]), ByteBuffer(bytes: bytes[cut...])]
            #expect(try decodeAll(chunks) == [f.value], "cut at \(cut)")
        }
        // ... and one byte per read.
        #expect(try decodeAll(bytes.map { ByteBuffer(bytes: [$0]) }) == [f.value])
    }

    @Test func decodesAllFixturesConcatenatedAtEverySplit() throws {
        let wire = Array(replyFixtures.map(\.wire).joined().utf8)
        let expected = replyFixtures.map(\.value)
        for cut in stride(from: 0, through: wire.count, by: 1) {
            #expect(try decodeAll([ByteBuffer(bytes: wire[..<cut]), ByteBuffer(bytes: wire[cut...])]) == expected)
        }
        #expect(try decodeAll(wire.map { ByteBuffer(bytes: [$0]) }) == expected)
    }

    @Test func decodesNaN() throws {
        let values = try decodeAll([ByteBuffer(string: ",nan\r\n")])
        guard case .double(let d) = values.first else { Issue.record("not a double"); return }
        #expect(d.isNaN)
    }

    @Test(arguments: [
        "?\r\n",  // unknown type
        ":12a\r\n",  // bad integer
        ":\r\n",  // empty integer
        ":99999999999999999999\r\n",  // overflow
        "$3\r\nabcd\r\n",  // payload longer than announced
        "$-2\r\n",  // negative length
        "*-2\r\n",  // negative count
        "+OK\n",  // LF without CR
        "#x\r\n",  // bad boolean
        ",abc\r\n",  // bad double
        "(12x\r\n",  // bad big number
        "_x\r\n",  // null with content
        "=2\r\nab\r\n",  // verbatim without format
    ])
    func rejectsMalformedInput(_ wire: String) {
        #expect {
            _ = try decodeAll([ByteBuffer(string: wire)])
        } throws: { ($0 as? RESPError)?.code == .protocolError }
    }

    @Test func enforcesLimits() throws {
        let limits = RESPDecoderLimits(maxBulkLength: 10, maxAggregateCount: 3, maxDepth: 2, maxLineLength: 16)
        for wire in ["$11\r\n", "*4\r\n", "%4\r\n", "*1\r\n*1\r\n*1\r\n:1\r\n", "+\(String(repeating: "a", count: 40))"] {
            #expect(throws: RESPError.self, "\(wire)") { _ = try decodeAll([ByteBuffer(string: wire)], limits: limits) }
        }
        // Within limits it still works.
        #expect(try decodeAll([ByteBuffer(string: "*1\r\n*1\r\n:1\r\n$10\r\n0123456789\r\n")], limits: limits).count == 2)
    }

    @Test func hostileSizesFailBeforeBuffering() {
        // A bulk header claiming 4 GiB must fail at the header, not wait for the payload.
        #expect(throws: RESPError.self) { _ = try decodeAll([ByteBuffer(string: "$4294967296\r\n")]) }
        #expect(throws: RESPError.self) { _ = try decodeAll([ByteBuffer(string: "*100000000\r\n")]) }
        let deep = String(repeating: "*1\r\n", count: 1000) + ":1\r\n"
        #expect(throws: RESPError.self) { _ = try decodeAll([ByteBuffer(string: deep)]) }
    }

    @Test func accessors() {
        #expect(RESPValue.integer(5).int == 5)
        #expect(RESPValue.bulkString(ByteBuffer(string: "12")).int == 12)
        #expect(RESPValue.bulkString(ByteBuffer(string: "x")).string == "x")
        #expect(RESPValue.simpleString("OK").string == "OK")
        #expect(RESPValue.null.isNull)
        #expect(RESPValue.array([.integer(1)]).array == [.integer(1)])
        #expect(RESPValue.boolean(true).bool == true)
        #expect(RESPValue.integer(0).bool == false)
        #expect(RESPValue.double(1.5).double == 1.5)
        let flat = RESPValue.array([.bulkString(ByteBuffer(string: "f")), .bulkString(ByteBuffer(string: "v"))])
        #expect(flat.stringMap?["f"]?.string == "v")
        #expect(RESPValue.map([.simpleString("a"): .integer(1)]).stringMap?["a"]?.int == 1)
    }
}
