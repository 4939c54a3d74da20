import Foundation

/// Where the tests find things on disk.
public enum TestPaths {
    /// The `tollgate` binary that `swift build` put beside the test bundle, or the one
    /// `TOLLGATE_BINARY` names.
    public static var binary: String {
        if let path = ProcessInfo.processInfo.environment["TOLLGATE_BINARY"] { return path }
        let bundle = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var directory = bundle.deletingLastPathComponent()
        // On Darwin the runner sits inside the .xctest bundle; climb to the build folder.
        while directory.path.contains(".xctest") { directory.deleteLastPathComponent() }
        return directory.appendingPathComponent("tollgate").path
    }

    /// A fresh directory for one test's files.
    public static func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("tollgate-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }
}
