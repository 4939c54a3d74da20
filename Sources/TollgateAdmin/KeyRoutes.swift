import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import TollgateCore

/// The `/admin/v1` routes: keys and usage, each a thin translation between HTTP and the
/// store, which applies every change in one step and refreshes this instance's cache.
struct KeyRoutes<Store: KeyStore, Clock: WallClock>: Sendable {
    let store: Store
    let clock: Clock
    /// Where exports run (see ``ExportLane``); inline without one.
    let exports: ExportLane?

    /// The most keys one `GET /admin/v1/keys` page holds, and its default size.
    static var maximumPageSize: Int { 1000 }

    func register(on group: RouterGroup<AdminRequestContext>) {
        group.post("keys", use: create)
        group.get("keys", use: list)
        group.get("keys/:id", use: show)
        group.patch("keys/:id", use: update)
        group.delete("keys/:id", use: revoke)
        group.get("keys/:id/usage", use: usage)
        group.post("keys/:id/usage/reset", use: resetUsage)
        group.post("keys/:id/rotate", use: rotate)
        group.get("usage", use: export)
    }

    // MARK: Keys

    @Sendable func create(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let body = try await AdminBody.read(request, context: context, allowed: ["name", "scopes", "limits", "expires_at"])
        let now = clock.now
        let draft = KeyDraft(
            name: try body.name() ?? "",
            scopes: try body.scopes() ?? [],
            limits: try body.limits() ?? [],
            expiresAt: try body.expiry(now: now)
        )
        let issued: (key: APIKey, secret: String)
        do {
            issued = try KeyIssuer.issue(draft, now: now)
        } catch {
            throw AdminError(error, field: Self.field(of: error))
        }
        try await store.createKey(issued.key)
        context.logger.notice(
            "key created through the admin API",
            metadata: ["key_id": "\(issued.key.id)", "remote": "\(context.remote)"])
        var response = jsonResponse(IssuedKey(report: KeyReport(issued.key, now: now), key: issued.secret), status: .created)
        response.headers[.location] = "/admin/v1/keys/\(issued.key.id)"
        return response
    }

    @Sendable func list(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let query = request.uri.queryParameters
        var limit = Self.maximumPageSize
        if let text = query["limit"] {
            guard let value = Int(String(text)), (1...Self.maximumPageSize).contains(value) else {
                throw AdminError.badField("limit", "must be a whole number from 1 to \(Self.maximumPageSize)")
            }
            limit = value
        }
        var after: KeyID? = nil
        if let text = query["after"] {
            do {
                after = try KeyID(validating: String(text))
            } catch {
                throw AdminError(error, field: "after")
            }
        }
        // One more than asked, to know whether another page follows.
        var keys = try await store.listKeys(after: after, limit: limit + 1)
        let more = keys.count > limit
        if more { keys.removeLast() }
        let now = clock.now
        var response = jsonResponse(keys.map { KeyReport($0, now: now) })
        if more, let last = keys.last {
            response.headers[.link] = "</admin/v1/keys?after=\(last.id)&limit=\(limit)>; rel=\"next\""
        }
        return response
    }

    /// Carries the record's `ETag`, for a later `If-Match`.
    @Sendable func show(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let id = try keyID(context)
        guard let stored = try await store.versionedKey(id: id) else { throw AdminError.keyNotFound(id.rawValue) }
        return EntityTag.tagged(jsonResponse(KeyReport(stored.key, now: clock.now)), stored)
    }

    @Sendable func update(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let id = try keyID(context)
        let body = try await AdminBody.read(request, context: context, allowed: ["name", "scopes", "limits", "expires_at"])
        let now = clock.now
        // Every field is checked before anything is written: nothing half-applied.
        let name = try body.name()
        let scopes = try body.scopes()
        let limits = try body.limits()
        let expiry = try body.expiry(now: now)
        do {
            try KeyIssuer.validate(KeyDraft(name: name ?? "", scopes: scopes ?? [], limits: limits ?? []), now: now)
        } catch {
            throw AdminError(error, field: Self.field(of: error))
        }
        // Only the fields the body names are written, in one step at the store: an edit of
        // other fields racing from another caller or instance is kept.
        let edit = KeyEdit(name: name, scopes: scopes, limits: limits, expiry: body.has("expires_at") ? KeyEdit.Expiry(expiry) : nil)
        let version = try await expectedVersion(request, id: id)
        guard let stored = try await store.editKey(id: id, edit, ifVersion: version) else { throw AdminError.keyNotFound(id.rawValue) }
        context.logger.notice("key updated through the admin API", metadata: ["key_id": "\(id)", "remote": "\(context.remote)"])
        return EntityTag.tagged(jsonResponse(KeyReport(stored.key, now: now)), stored)
    }

    @Sendable func revoke(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let id = try keyID(context)
        let version = try await expectedVersion(request, id: id)
        guard try await store.revokeKey(id: id, at: clock.now, ifVersion: version) != nil else {
            throw AdminError.keyNotFound(id.rawValue)
        }
        context.logger.notice("key revoked through the admin API", metadata: ["key_id": "\(id)", "remote": "\(context.remote)"])
        return Response(status: .noContent, headers: [.cacheControl: "no-store"])
    }

    /// A new secret for the same key; the old one works for `overlap` (default 24h), then is
    /// refused as revoked. A revoked key is `409`: its new secret would be refused too.
    @Sendable func rotate(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let id = try keyID(context)
        let body = try await AdminBody.read(request, context: context, allowed: ["overlap"])
        var text = RotationOverlap.defaultText
        if let given = try body.string("overlap") { text = given }
        let overlap: Int64
        do {
            overlap = try RotationOverlap.parse(text)
        } catch {
            throw AdminError(error, field: "overlap")
        }
        let now = clock.now
        let rotated: RotatedKey?
        do {
            rotated = try await store.rotate(id: id, overlapSeconds: overlap, now: now)
        } catch {
            throw error.code == .invalidInput
                ? AdminError(status: .conflict, code: "key_revoked", detail: error.message) : AdminError(error)
        }
        guard let rotated else { throw AdminError.keyNotFound(id.rawValue) }
        let key = rotated.key
        let secret = rotated.secret
        context.logger.notice(
            "key rotated through the admin API",
            metadata: ["key_id": "\(id)", "remote": "\(context.remote)", "previous_until": "\(key.previousDigestExpiresAt ?? now)"])
        return jsonResponse(
            IssuedKey(report: KeyReport(key, now: now), key: secret, previousKeyExpiresAt: key.previousDigestExpiresAt?.iso8601))
    }

    // MARK: Usage

    @Sendable func usage(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let key = try await existingKey(context)
        let usage = try await store.usage(id: key.id)
        return jsonResponse(UsageReport(key: key, usage: usage, now: clock.now))
    }

    /// Logged at `notice` with the caller's address, a request id (also in the answer's
    /// `Request-Id`) and the time: the admin token names no person, so this is the trail.
    @Sendable func resetUsage(_ request: Request, context: AdminRequestContext) async throws -> Response {
        _ = try await AdminBody.read(request, context: context, allowed: [])
        let key = try await existingKey(context)
        try await store.resetUsage(id: key.id)
        let requestID = makeCorrelationID()
        let now = clock.now
        context.logger.notice(
            "usage reset through the admin API",
            metadata: ["key_id": "\(key.id)", "remote": "\(context.remote)", "request_id": "\(requestID)", "at": "\(now)"])
        var response = jsonResponse(UsageReport(key: key, usage: try await store.usage(id: key.id), now: now))
        response.headers[.requestID] = requestID
        return response
    }

    /// Streams the export a page of keys at a time. The first page is read before the
    /// answer begins, so that a store that is down answers `503` rather than a cut `200`;
    /// a failure after that closes the connection without the chunked terminator.
    @Sendable func export(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let text = request.uri.queryParameters["format"].map(String.init) ?? "json"
        guard let format = UsageExport.Format(rawValue: text) else {
            throw AdminError.badField("format", "\(TollgateError.quote(text)) is not a format: use json, ndjson or csv")
        }
        let now = clock.now
        let first = try await UsageExport.readPage(store, after: nil, limit: UsageExport.pageSize, lane: exports)
        let store = self.store
        let exports = self.exports
        let logger = context.logger
        return Response(
            status: .ok,
            headers: [.contentType: format.contentType, .cacheControl: "no-store"],
            body: ResponseBody { writer in
                do {
                    try await UsageExport.write(store: store, format: format, now: now, firstPage: first, lane: exports) { buffer in
                        try await writer.write(buffer)
                    }
                } catch {
                    logger.error("usage export failed part way; the answer was cut off", metadata: ["error": "\(error)"])
                    throw error
                }
                try await writer.finish(nil)
            }
        )
    }

    // MARK: Helpers

    /// The path's key id; an id no key could have is answered as unknown.
    private func keyID(_ context: AdminRequestContext) throws(AdminError) -> KeyID {
        let text = context.parameters.get("id") ?? ""
        guard let id = try? KeyID(validating: text) else { throw AdminError.keyNotFound(text) }
        return id
    }

    /// The version an `If-Match` asks for: `nil` without one (or with `*`), which the store
    /// checks in the same step as its write. A list of tags is matched against the record
    /// as read now; a tag of no version of the key (weak, or not one this API made) never
    /// matches. A key that does not exist is answered `404`, whatever the `If-Match`.
    private func expectedVersion(_ request: Request, id: KeyID) async throws -> Int64? {
        guard let text = request.headers[values: .ifMatch].joined(separator: ",").nilIfBlank else { return nil }
        switch EntityTag.parseIfMatch(text) {
        case .any: return nil
        case .versions(let versions):
            if versions.count == 1, let version = versions.first { return version }
            guard let stored = try await store.versionedKey(id: id) else { throw AdminError.keyNotFound(id.rawValue) }
            return versions.contains(stored.version) ? stored.version : -1
        }
    }

    private func existingKey(_ context: AdminRequestContext) async throws -> APIKey {
        let id = try keyID(context)
        guard let key = try await store.key(id: id) else { throw AdminError.keyNotFound(id.rawValue) }
        return key
    }

    /// The request member a domain validation error concerns.
    static func field(of error: TollgateError) -> String? {
        switch error.code {
        case .invalidLimit: "limits"
        case .invalidScope: "scopes"
        case .invalidTime: "expires_at"
        case .invalidInput: "name"
        default: nil
        }
    }
}

extension AdminBody {
    /// `name`: a string; `null` is refused (an empty string clears it).
    func name() throws(AdminError) -> String? {
        if isNull("name") { throw AdminError.badField("name", "must be a string (\"\" for no name)") }
        return try string("name")
    }
}

extension HTTPField.Name {
    static let link = HTTPField.Name("Link")!
    static let requestID = HTTPField.Name("Request-Id")!
}

/// A successful JSON answer; never cached, since it may hold a secret or live counts.
func jsonResponse(_ value: some Encodable, status: HTTPResponse.Status = .ok) -> Response {
    Response(
        status: status,
        headers: [.contentType: "application/json", .cacheControl: "no-store"],
        body: .init(byteBuffer: encodeJSON(value))
    )
}

/// A key with its secret, as only the create and rotate answers carry it.
public struct IssuedKey: Encodable, Sendable {
    public var report: KeyReport
    /// The secret, shown this once.
    public var key: String
    /// After a rotation: until when the previous secret still works.
    public var previousKeyExpiresAt: String?

    public init(report: KeyReport, key: String, previousKeyExpiresAt: String? = nil) {
        self.report = report
        self.key = key
        self.previousKeyExpiresAt = previousKeyExpiresAt
    }

    enum CodingKeys: String, CodingKey {
        case key
        case previousKeyExpiresAt = "previous_key_expires_at"
    }

    public func encode(to encoder: any Encoder) throws {
        try report.encode(to: encoder)
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(key, forKey: .key)
        try container.encodeIfPresent(previousKeyExpiresAt, forKey: .previousKeyExpiresAt)
    }
}
