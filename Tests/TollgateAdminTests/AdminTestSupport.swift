import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import Testing
import TollgateAdmin
import TollgateCore
import TollgateTestSupport

/// Hummingbird's test answer (TollgateTestSupport has a `TestResponse` of its own).
typealias HBResponse = HummingbirdTesting.TestResponse

/// The admin token every admin test uses.
let adminToken = "admin-token-for-tests-0123456789"

/// `Authorization` for the admin API, plus any other fields.
func adminHeaders(_ token: String = adminToken, json: Bool = false) -> HTTPFields {
    var fields: HTTPFields = [.authorization: "Bearer \(token)"]
    if json { fields[.contentType] = "application/json" }
    return fields
}

/// An admin app over `store` with the test token, logging into `logs`.
func adminApp(
    store: some KeyStore,
    clock: some WallClock = SystemWallClock(),
    logs: LogCapture = LogCapture(),
    token: String? = adminToken
) throws -> some ApplicationProtocol {
    Application(
        router: AdminApplication.router(store: store, adminToken: try token.map { try AdminToken($0) }, clock: clock),
        configuration: .init(address: .hostname("127.0.0.1", port: 0)),
        logger: logs.logger
    )
}

/// A JSON answer's body as an object.
func jsonObject(_ response: HBResponse) throws -> [String: Any] {
    try #require(try JSONSerialization.jsonObject(with: Data(String(buffer: response.body).utf8)) as? [String: Any])
}

func jsonArray(_ response: HBResponse) throws -> [[String: Any]] {
    try #require(try JSONSerialization.jsonObject(with: Data(String(buffer: response.body).utf8)) as? [[String: Any]])
}

func body(_ text: String) -> ByteBuffer { ByteBuffer(string: text) }

extension HBResponse {
    var text: String { String(buffer: body) }
    var problem: [String: Any]? {
        guard headers[.contentType] == "application/problem+json" else { return nil }
        return try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
    }
    var problemCode: String? { problem?["code"] as? String }
    var problemField: String? { problem?["field"] as? String }
}

extension HTTPField.Name {
    static let link = HTTPField.Name("Link")!
    static let requestID = HTTPField.Name("Request-Id")!
}
