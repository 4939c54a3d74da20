import TollgateAdmin
import TollgateHTTP

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// The open-file limit: a gateway holds one descriptor per connection, and distributions
/// start processes with a soft limit (often 1,024) far below the hard one.
enum DescriptorLimit {
    /// Raises the soft limit to the hard limit and returns the limit in force.
    static func raiseToHardLimit() -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 1024 }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        return Int(clamping: limit.rlim_cur)
    }
}

/// How `serve` shares the open-file limit: the data plane's connections, the control
/// plane's, and a reserve for everything else (the store's files and connections, event
/// loops, logs, the route file), so that no listener can take descriptors another needs.
struct DescriptorBudget {
    /// What the store, event loops and logs are kept.
    static let reserve = 64

    var limit: Int
    var dataPlane: Int
    var controlPlane: Int
    /// Set when the caps leave less than ``reserve``.
    var warnings: [String] = []

    /// The caps given, or their defaults: the data plane's as before (three quarters of the
    /// limit, keeping 128 or more), the control plane's 64 or half of what the data plane
    /// leaves, whichever is smaller.
    init(limit: Int, dataPlane: Int?, controlPlane: Int?) {
        self.limit = limit
        self.dataPlane = dataPlane ?? DataPlaneConfiguration.defaultMaxConnections(descriptorLimit: limit)
        self.controlPlane =
            controlPlane ?? min(AdminApplication.Configuration.defaultMaxConnections, max(4, (limit - self.dataPlane) / 2))
        let left = limit - self.dataPlane - self.controlPlane
        if left < Self.reserve {
            warnings.append(
                "the connection caps (data plane \(self.dataPlane), control plane \(self.controlPlane)) leave \(max(0, left)) of the \(limit) open files for the store and logs, under the \(Self.reserve) they need: lower --max-connections or --admin-max-connections, or raise the limit (ulimit -n)"
            )
        }
    }
}
