import Testing
import TollgateCore

@Suite struct JSONMembersTests {
    @Test(arguments: [
        (#"{}"#, [String]()),
        (#" { "a" : 1 , "b":[1,{"a":2}], "c":{"x":"}"} } "#, ["a", "b", "c"]),
        (#"{"name":"x","name":"y"}"#, ["name", "name"]),
        // One member written two ways is still one name.
        (#"{"scopes":[],"\u0073copes":["*"]}"#, ["scopes", "scopes"]),
        (#"{"\ud83d\ude00":true,"q\"uote":null}"#, ["\u{1F600}", "q\"uote"]),
    ])
    func namesTheMembersAsWritten(text: String, names: [String]) {
        #expect(JSONMembers.names(in: Array(text.utf8)) == names)
    }

    @Test(arguments: [#"[]"#, #""x""#, #"{"a":1"#, #"{"a"}"#, #"{"a":}"#, ""])
    func anythingButAnObjectHasNoNames(text: String) {
        #expect(JSONMembers.names(in: Array(text.utf8)) == nil)
    }

    @Test func findsTheFirstRepeat() {
        #expect(JSONMembers.firstRepeat(in: ["a", "b", "a", "b"]) == "a")
        #expect(JSONMembers.firstRepeat(in: ["a", "b"]) == nil)
    }
}
