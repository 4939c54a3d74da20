import Hummingbird
import HummingbirdTesting
import Testing
import TollgateAdmin
import TollgateCore

@Suite struct AdminTests {
    @Test func healthAndReadinessAnswerWithoutAKey() async throws {
        let app = Application(router: AdminApplication.router(store: MemoryKeyStore()))
        try await app.test(.router) { client in
            try await client.execute(uri: "/healthz", method: .get) { response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body) == "{\"status\":\"ok\"}")
            }
            try await client.execute(uri: "/readyz", method: .get) { response in
                #expect(response.status == .ok)
            }
        }
    }

    @Test func errorsAreProblemJSON() async throws {
        let app = Application(router: AdminApplication.router(store: MemoryKeyStore()))
        try await app.test(.router) { client in
            try await client.execute(uri: "/nope", method: .get) { response in
                #expect(response.status == .notFound)
                #expect(response.headers[.contentType] == "application/problem+json")
                #expect(String(buffer: response.body).contains("\"code\":\"not_found\""))
            }
        }
    }
}
