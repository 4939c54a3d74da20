import NIOCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

extension TollgateError {
    /// A listener that could not bind, named with its options and a remedy that fits the
    /// cause: a port in use, an address no interface has, a host that does not resolve.
    ///
    /// - Parameters:
    ///   - listener: what failed to start, e.g. "the data plane".
    ///   - options: the command-line options that set its address, e.g. ("--host", "--port").
    public static func cannotListen(
        _ listener: String,
        host: String,
        port: Int,
        options: (host: String, port: String),
        error: any Error
    ) -> TollgateError {
        let address = "\(host.contains(":") ? "[\(host)]" : host):\(port)"
        let start = "\(listener) cannot listen on \(quote(address, limit: 300))"
        let message: String
        if let error = error as? IOError {
            switch error.errnoCode {
            case EADDRINUSE:
                message = "\(start): the port is in use: stop what is using it, or choose another \(options.port)"
            case EADDRNOTAVAIL:
                message =
                    "\(start): no network interface of this machine has that address: choose another \(options.host), e.g. 127.0.0.1 or 0.0.0.0"
            case EACCES, EPERM:
                message = "\(start): ports below 1024 need privileges: choose a port of 1024 or above with \(options.port)"
            default:
                message = "\(start): \(String(cString: strerror(error.errnoCode))): check \(options.host) and \(options.port)"
            }
        } else if error is SocketAddressError.UnknownHost {
            message =
                "\(start): \(quote(host, limit: 300)) is not an IP address or a host name this machine can resolve: check \(options.host)"
        } else {
            message = "\(start): \(error): check \(options.host) and \(options.port)"
        }
        return TollgateError(.invalidInput, message)
    }
}
