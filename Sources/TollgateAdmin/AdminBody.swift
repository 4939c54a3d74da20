import Foundation
import Hummingbird
import NIOCore
import TollgateCore

/// A request body read as one JSON object whose members are checked one by one, so that a
/// `400` names the member at fault: unknown members, wrong types and bad values alike.
///
/// Read by hand rather than through `Codable`: a decoding error's path is awkward to turn
/// into a field name, and an unknown or repeated member must be an error, not silently
/// dropped or overwritten.
struct AdminBody {
    /// The largest body accepted; admin bodies are a few hundred bytes.
    static let maximumSize = 64 * 1024

    private let members: [String: Any]

    /// Reads `request`'s body; an empty body is an empty object. Members not in `allowed`
    /// are refused.
    static func read(_ request: Request, context: some RequestContext, allowed: Set<String>) async throws -> AdminBody {
        var request = request
        let buffer = try await request.collectBody(upTo: maximumSize)
        return try AdminBody(buffer, allowed: allowed)
    }

    init(_ buffer: ByteBuffer, allowed: Set<String>) throws(AdminError) {
        if buffer.readableBytesView.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) {
            members = [:]
            return
        }
        let parsed: Any
        do {
            parsed = try JSONSerialization.jsonObject(with: Data(buffer.readableBytesView), options: [.fragmentsAllowed])
        } catch {
            throw AdminError.badField("body", "is not valid JSON: send one JSON object")
        }
        guard let object = parsed as? [String: Any] else {
            throw AdminError.badField("body", "must be a JSON object")
        }
        // Parsers disagree on which of two same-named members counts (this one keeps the
        // last): a body that says two things is refused rather than read one way.
        if let repeated = JSONMembers.names(in: buffer.readableBytesView).flatMap(JSONMembers.firstRepeat) {
            throw AdminError.badField(TollgateError.excerpt(repeated), "appears twice in the body: give each member once")
        }
        if let unknown = object.keys.sorted().first(where: { !allowed.contains($0) }) {
            throw AdminError.badField(
                TollgateError.excerpt(unknown),
                "is not a member this request takes; it takes \(allowed.sorted().joined(separator: ", "))")
        }
        members = object
    }

    func has(_ name: String) -> Bool { members[name] != nil }

    /// Whether the member is present as JSON `null`.
    func isNull(_ name: String) -> Bool { members[name] is NSNull }

    /// A string member; `nil` when absent or `null`.
    func string(_ name: String) throws(AdminError) -> String? {
        guard let value = members[name], !(value is NSNull) else { return nil }
        guard let text = value as? String, !isNumberOrBool(value) else { throw AdminError.badField(name, "must be a string") }
        return text
    }

    /// An array-of-strings member; `nil` when absent.
    func strings(_ name: String) throws(AdminError) -> [String]? {
        guard let value = members[name] else { return nil }
        guard let array = value as? [Any] else { throw AdminError.badField(name, "must be an array of strings") }
        var result: [String] = []
        for (index, element) in array.enumerated() {
            guard let text = element as? String, !isNumberOrBool(element) else {
                throw AdminError.badField("\(name)[\(index)]", "must be a string")
            }
            result.append(text)
        }
        return result
    }

    /// On Linux a bridged `NSNumber` can cast to `String`; numbers and booleans are never strings.
    private func isNumberOrBool(_ value: Any) -> Bool { value is NSNumber }
}

// MARK: - Fields shared by create and update

extension AdminBody {
    func scopes() throws(AdminError) -> [ScopePattern]? {
        guard let texts = try strings("scopes") else { return nil }
        var scopes: [ScopePattern] = []
        for (index, text) in texts.enumerated() {
            do {
                scopes.append(try ScopePattern(parsing: text))
            } catch {
                throw AdminError(error, field: "scopes[\(index)]")
            }
        }
        return scopes
    }

    func limits() throws(AdminError) -> [LimitSpec]? {
        guard let texts = try strings("limits") else { return nil }
        var limits: [LimitSpec] = []
        for (index, text) in texts.enumerated() {
            do {
                limits.append(try LimitSpec(parsing: text))
            } catch {
                throw AdminError(error, field: "limits[\(index)]")
            }
        }
        return limits
    }

    /// `expires_at`: a span, date or RFC 3339 time as on the CLI; `null` is no expiry.
    func expiry(now: Timestamp) throws(AdminError) -> Timestamp? {
        guard let text = try string("expires_at") else { return nil }
        let instant: Timestamp
        do {
            instant = try Timestamp(parsing: text, now: now)
        } catch {
            throw AdminError(error, field: "expires_at")
        }
        guard instant > now else {
            throw AdminError.badField("expires_at", "\(TollgateError.quote(text)) is not in the future: give a later time, e.g. '30d'")
        }
        return instant
    }
}
