import Logging
import NIOCore
import Synchronization
import TollgateCore
import TollgateRESP

extension RedisKeyStore.Configuration {
    /// Parses a store URL: `redis://[USER:PASSWORD@]HOST[:PORT][/DB][?timeout=MS&...]`, the
    /// connection settings ``RESPConfiguration/init(url:password:base:)`` reads, plus the
    /// store's own `durable_writes=1`.
    ///
    /// - Parameter commandTimeout: the command timeout when the URL gives no `?timeout=`
    ///   (`serve --store-timeout`): the URL's, naming this store, wins.
    public init(url: String, password: String?, commandTimeout: TimeAmount) throws(RESPError) {
        var durable = false
        var connection = url
        // After the user info: a password may hold a "?".
        let hostStart = url.lastIndex(of: "@") ?? url.startIndex
        if let question = url[hostStart...].firstIndex(of: "?") {
            var kept: [Substring] = []
            for item in url[url.index(after: question)...].split(separator: "&") {
                guard item.hasPrefix("durable_writes=") else {
                    kept.append(item)
                    continue
                }
                switch item.dropFirst("durable_writes=".count) {
                case "1", "yes", "true": durable = true
                case "0", "no", "false": durable = false
                default: throw RESPError(.invalidURL, "query parameter 'durable_writes' must be 1 or 0, got '\(item.dropFirst(15))'")
                }
            }
            connection = String(url[..<question]) + (kept.isEmpty ? "" : "?" + kept.joined(separator: "&"))
        }
        self.init(
            redis: try RESPConfiguration(url: connection, password: password, base: RESPConfiguration(commandTimeout: commandTimeout)))
        durableWrites = durable
    }
}
