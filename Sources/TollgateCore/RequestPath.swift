/// Normalizes a request target into the path that routing, scopes and limits all see.
///
/// Anything that could make two components disagree about which path was asked for is
/// refused rather than repaired: dot segments, encoded slashes, dots and backslashes,
/// empty segments, control and non-ASCII bytes. So no trick can route a request to one API
/// while its scope check reads another.
///
/// Path parameters count too: Tomcat, Jetty and Spring drop everything from a segment's
/// first `;` before they resolve dot segments, so `/orders/..;/admin` is `/admin` to them.
/// A segment that is empty, `.` or `..` once its parameters (from a raw or `%3B` `;`) are
/// removed is refused; `x;v=1` stays a plain segment.
public enum RequestPath {
    /// The path without its leading slash (`""` for the root), or `nil` for a target that
    /// must be answered `400 bad_path`. The query string is not part of the path.
    public static func normalize(_ target: String) -> String? {
        var utf8 = target.utf8[...]
        guard utf8.first == UInt8(ascii: "/") else { return nil }
        if let query = utf8.firstIndex(where: { $0 == UInt8(ascii: "?") || $0 == UInt8(ascii: "#") }) {
            utf8 = utf8[..<query]
        }
        utf8 = utf8.dropFirst()
        if utf8.isEmpty { return "" }

        var path = [UInt8]()
        path.reserveCapacity(utf8.count)
        var segmentStart = 0
        var iterator = utf8.makeIterator()
        func endSegment() -> Bool {
            // The segment as an upstream that strips path parameters sees it.
            let segment = path[segmentStart...].prefix { $0 != UInt8(ascii: ";") }
            if segment.isEmpty || segment.elementsEqual([0x2E]) || segment.elementsEqual([0x2E, 0x2E]) { return false }
            return true
        }
        while let byte = iterator.next() {
            var decoded = byte
            if byte == UInt8(ascii: "%") {
                guard let high = iterator.next().flatMap(hexDigitValue), let low = iterator.next().flatMap(hexDigitValue) else {
                    return nil
                }
                decoded = high << 4 | low
                // An encoded separator or dot is how traversal hides from a proxy: never decode one.
                if decoded == UInt8(ascii: "/") || decoded == UInt8(ascii: ".") || decoded == UInt8(ascii: "%") { return nil }
            } else if byte == UInt8(ascii: "/") {
                guard endSegment() else { return nil }
                path.append(byte)
                segmentStart = path.count
                continue
            }
            if decoded <= 0x20 || decoded >= 0x7F || decoded == UInt8(ascii: "\\") { return nil }
            path.append(decoded)
        }
        guard endSegment() else { return nil }
        return String(decoding: path, as: UTF8.self)
    }
}
