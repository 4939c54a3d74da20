import NIOCore

/// An address or a CIDR block (`10.0.0.0/8`, `::1`), as `trusted_proxies` lists them.
///
/// Addresses are kept as 16 bytes, IPv4 as IPv4-mapped IPv6 (`::ffff:a.b.c.d`), so that a
/// peer on a dual-stack socket matches the IPv4 blocks written for it.
public struct IPNetwork: Sendable, Hashable, CustomStringConvertible {
    /// The block's first address, its host bits zero.
    let bytes: [UInt8]
    /// Leading bits that must match, counted in the 16-byte form (IPv4 `/8` is 96 + 8).
    let prefixBits: Int
    public let description: String

    /// Parses `ADDRESS` or `ADDRESS/BITS`; `nil` if it is neither.
    public init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let address = parts.first, let (bytes, isV4) = Self.parse(String(address)) else { return nil }
        let maximum = isV4 ? 32 : 128
        var bits = maximum
        if parts.count == 2 {
            guard let value = Int(parts[1]), (0...maximum).contains(value), parts[1].allSatisfy(\.isNumber) else { return nil }
            bits = value
        }
        prefixBits = bits + (isV4 ? 96 : 0)
        self.bytes = Self.masked(bytes, bits: prefixBits)
        description = text
    }

    /// Whether `address` lies in the block.
    public func contains(_ address: SocketAddress) -> Bool {
        guard let candidate = Self.bytes(of: address) else { return false }
        return Self.masked(candidate, bits: prefixBits) == bytes
    }

    static func masked(_ bytes: [UInt8], bits: Int) -> [UInt8] {
        var out = bytes
        for index in 0..<16 {
            let keep = max(0, min(8, bits - index * 8))
            out[index] &= keep == 8 ? 0xFF : UInt8(truncatingIfNeeded: 0xFF << (8 - keep))
        }
        return out
    }

    /// The 16-byte form of a text address, and whether it was IPv4.
    static func parse(_ text: String) -> ([UInt8], Bool)? {
        guard !text.isEmpty, let address = try? SocketAddress(ipAddress: text, port: 0), let bytes = bytes(of: address) else {
            return nil
        }
        if case .v4 = address { return (bytes, true) }
        return (bytes, false)
    }

    /// The 16-byte form of a socket's address; `nil` for a Unix socket. Read from the
    /// `sockaddr` bytes (`sin_addr` at offset 4, `sin6_addr` at 8, on Linux and BSD alike).
    static func bytes(of address: SocketAddress) -> [UInt8]? {
        switch address {
        case .v4:
            return address.withSockAddr { pointer, size in
                guard size >= 8 else { return nil }
                let raw = UnsafeRawBufferPointer(start: pointer, count: size)
                return [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF] + raw[4..<8]
            }
        case .v6:
            return address.withSockAddr { pointer, size in
                guard size >= 24 else { return nil }
                return Array(UnsafeRawBufferPointer(start: pointer, count: size)[8..<24])
            }
        case .unixDomainSocket:
            return nil
        }
    }
}
