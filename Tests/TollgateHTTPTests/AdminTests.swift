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
}
