import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing
import TollgateCore
import TollgateTestSupport

@testable import TollgateAdmin

/// The OpenAPI document and the routes agree: every admin route is documented, and every
/// documented operation answers with a documented status and content type.
@Suite struct AdminDocumentTests {
    /// `METHOD /path` of each operation in the document.
    static func documentedOperations() throws -> [String: [String: Any]] {
        let document = try #require(try JSONSerialization.jsonObject(with: Data(OpenAPIDocument.json.utf8)) as? [String: Any])
        #expect(document["openapi"] as? String == "3.1.0")
        let paths = try #require(document["paths"] as? [String: [String: Any]])
        var operations: [String: [String: Any]] = [:]
        for (path, item) in paths {
            for method in ["get", "post", "put", "patch", "delete"] {
                if let operation = item[method] as? [String: Any] { operations["\(method.uppercased()) \(path)"] = operation }
            }
        }
        return operations
    }

    @Test func everyAdminRouteIsDocumentedAndEveryOperationIsARoute() throws {
        let router = AdminApplication.router(store: MemoryKeyStore(), adminToken: try AdminToken(adminToken))
        let routes = Set(router.routes.map { "\($0.method) \($0.path)" }.filter { $0.contains(" /admin/") })
        let documented = Set(try Self.documentedOperations().keys)
        #expect(routes == documented)
        #expect(routes.count == 10)
    }

    @Test func everyDocumentedOperationAnswersAsDocumented() async throws {
        let store = MemoryKeyStore()
        let app = try adminApp(store: store)
        try await app.test(.router) { client in
            let operations = try Self.documentedOperations()
            for (name, operation) in operations.sorted(by: { $0.key < $1.key }) {
                let parts = name.split(separator: " ")
                let method = HTTPRequest.Method(String(parts[0]))!
                let path = String(parts[1])
                let responses = try #require(operation["responses"] as? [String: Any])
                let needsBody = method == .post || method == .patch
                let open = (operation["security"] as? [Any])?.isEmpty == true

                func check(_ uri: String, headers: HTTPFields, expecting status: HTTPResponse.Status? = nil) async throws {
                    let response = try await client.execute(uri: uri, method: method, headers: headers, body: needsBody ? body("{}") : nil)
                    let documented = responses[String(response.status.code)] as? [String: Any]
                    #expect(documented != nil, "\(name) answered \(response.status.code), which is not documented")
                    if let status { #expect(response.status == status, "\(name)") }
                    let resolved = try Self.resolve(documented ?? [:])
                    if let content = resolved["content"] as? [String: Any] {
                        let type = response.headers[.contentType].map { String($0.prefix { $0 != ";" }) } ?? ""
                        #expect(
                            content[type] != nil, "\(name) \(response.status.code) answered \(type), documented \(content.keys.sorted())")
                    } else {
                        #expect(response.body.readableBytes == 0, "\(name) \(response.status.code) has a body its document does not")
                    }
                }

                // Each operation on a key of its own, so that a revocation spoils no other.
                let key = try await makeKey(in: store, limits: ["10/day"]).key
                try await check(path.replacingOccurrences(of: "{id}", with: key.id.rawValue), headers: adminHeaders())
                if path.contains("{id}") {
                    try await check(
                        path.replacingOccurrences(of: "{id}", with: "key_unknown"), headers: adminHeaders(), expecting: .notFound)
                }
                if !open {
                    try await check(path.replacingOccurrences(of: "{id}", with: key.id.rawValue), headers: [:], expecting: .unauthorized)
                }
            }
        }
    }

    /// A response object with its `$ref` followed.
    static func resolve(_ response: [String: Any]) throws -> [String: Any] {
        guard let reference = response["$ref"] as? String else { return response }
        let document = try #require(try JSONSerialization.jsonObject(with: Data(OpenAPIDocument.json.utf8)) as? [String: Any])
        let name = String(reference.split(separator: "/").last ?? "")
        let components = try #require(document["components"] as? [String: Any])
        let responses = try #require(components["responses"] as? [String: Any])
        return try #require(responses[name] as? [String: Any])
    }

    /// An unexpected error is a 500 problem whose correlation id is also in the log line.
    @Test func anUnexpectedErrorIs500WithACorrelationIDInTheLog() async throws {
        struct Boom: Error {}
        let logs = LogCapture()
        let router = Router(context: AdminRequestContext.self)
        router.add(middleware: ProblemMiddleware())
        router.get("boom") { _, _ -> Response in throw Boom() }
        let app = Application(router: router, logger: logs.logger)
        try await app.test(.router) { client in
            let response = try await client.execute(uri: "/boom", method: .get)
            #expect(response.status == .internalServerError)
            #expect(response.problemCode == "internal_error")
            let id = try #require(response.problem?["correlation_id"] as? String)
            #expect((response.problem?["detail"] as? String)?.contains(id) == true)
            let line = try #require(logs.all.first { $0.contains("control plane request failed") })
            #expect(line.contains("correlation_id=\(id)"))
            #expect(line.contains("Boom"))
        }
    }
}
