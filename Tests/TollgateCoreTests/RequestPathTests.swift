import Testing
import TollgateCore

@Suite struct RequestPathTests {
    @Test(arguments: [
        ("/", ""), ("/api1", "api1"), ("/api1?x=1", "api1"), ("/api1?../api2", "api1"), ("/api1/x", "api1/x"),
        ("/api%31", "api1"), ("/a%7Eb", "a~b"), ("/api1#frag", "api1"),
        // Path parameters on a plain segment stay: only what they hide is refused.
        ("/v1/orders/x;v=1", "v1/orders/x;v=1"), ("/v1/orders;jsessionid=1/x", "v1/orders;jsessionid=1/x"),
        ("/a%3Bb", "a;b"), ("/a...;x", "a...;x"),
    ])
    func normalizes(target: String, path: String) {
        #expect(RequestPath.normalize(target) == path)
    }

    @Test(arguments: [
        "/api1/../api2", "/..", "/.", "/./api1", "/api1/.", "/%2e%2e/api1", "/%2E/api1", "/api1%2fapi2", "/api1%2F..%2Fapi2",
        "//api1", "/api1//x", "/api1/", "/api1%5capi2", "/api1\\..\\api2", "/api%", "/api%zz", "/api%00", "/a b",
        "api1", "http://host/api1", "*", "", "/api1%252e", "/caf\u{e9}",
        // Dot segments behind path parameters, as Tomcat, Jetty and Spring resolve them.
        "/v1/orders/..;/admin", "/v1/orders/.;/x", "/v1/orders/..%3b/admin", "/v1/orders/..%3B/admin", "/v1/orders/..;x=1/admin",
        "/v1/orders/.;", "/v1/orders/..;", "/;/api1", "/api1/;x", "/%3B/api1",
    ])
    func refuses(target: String) {
        #expect(RequestPath.normalize(target) == nil, "'\(target)'")
    }
}
