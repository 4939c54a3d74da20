#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// TCP connections to a loopback port that never send a byte, opened without waiting for
/// the server to accept them: what a connection flood looks like to a listener.
public final class IdleConnections: Sendable {
    public let descriptors: [Int32]

    public init(port: Int, count: Int) {
        var descriptors: [Int32] = []
        for _ in 0..<count {
            #if canImport(Glibc)
                let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            #else
                let descriptor = socket(AF_INET, SOCK_STREAM, 0)
            #endif
            guard descriptor >= 0 else { break }
            _ = fcntl(descriptor, F_SETFL, fcntl(descriptor, F_GETFL) | O_NONBLOCK)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(port).bigEndian)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            _ = withUnsafePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            descriptors.append(descriptor)
        }
        self.descriptors = descriptors
    }

    /// How many of them the server has closed.
    public var closedByServer: Int { descriptors.indices.filter(isClosedByServer).count }

    /// Whether the `index`th connection was closed by the server: a read sees its end, or
    /// a reset (a connection still waiting to be accepted reads nothing yet).
    public func isClosedByServer(_ index: Int) -> Bool {
        var byte: UInt8 = 0
        let count = recv(descriptors[index], &byte, 1, Int32(MSG_DONTWAIT))
        return count == 0 || (count < 0 && errno == ECONNRESET)
    }

    deinit {
        for descriptor in descriptors { close(descriptor) }
    }
}
