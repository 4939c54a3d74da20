import Foundation
import Testing
import TollgateTestSupport

/// Every error in one style, `tollgate: what is wrong; what to do`, with nothing before it:
/// a mistyped command line keeps ArgumentParser's usage after that first line.
@Suite struct CommandLineErrorTests {
    let cli: CLIStore

    init() throws {
        cli = try CLIStore()
    }

    /// Mistyped options and values: the first line says what is wrong and what to type.
    @Test(arguments: [
        (["usage", "--jsn"], "tollgate: unknown option '--jsn' for 'tollgate usage': did you mean '--json'?"),
        (["keys", "list", "--jsno"], "tollgate: unknown option '--jsno' for 'tollgate keys list': did you mean '--json'?"),
        (["keys", "create", "--limit", "-1/day"], "write --limit=-1/day"),
        (["serve", "--port", "eighty"], "'tollgate serve --help' lists the options"),
        (["keys", "update", "key_x"], "tollgate: nothing to change: give --name"),
        (["keys", "show"], "tollgate: missing expected argument"),
    ])
    func aMistypedCommandLineSaysWhatToDoFirstAndKeepsTheUsage(arguments: [String], first: String) async throws {
        let result = try await tollgate(arguments + ["--store", cli.store])
        #expect(result.status == 64)
        #expect(result.stdout.isEmpty)
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.first?.hasPrefix("tollgate: ") == true, "\(result.stderr)")
        #expect(lines.first?.contains(first.replacingOccurrences(of: "tollgate: ", with: "")) == true, "\(result.stderr)")
        #expect(!result.stderr.contains("Error:"), "ArgumentParser's own prefix is replaced")
        #expect(result.stderr.contains("Usage: tollgate"), "the usage follows")
    }

    /// Errors that are not about the command line are one line, whatever the store does.
    @Test(arguments: [
        (["keys", "list", "--store", "redis://127.0.0.1:1"], "cannot reach Redis"),
        (["keys", "list", "--store", "tollgate.sqlite"], "write sqlite:tollgate.sqlite"),
        (["keys", "create", "--limit", "99999999999999999999/day"], "is too large"),
        (["keys", "create", "--limit", "api1:10/minute:extra"], "'extra' after the last ':' is not N/PERIOD"),
        (["keys", "create", "--limit=-1/day"], "is negative"),
    ])
    func otherErrorsAreOneLine(arguments: [String], hint: String) async throws {
        let withStore = arguments.contains("--store") ? arguments : arguments + ["--store", cli.store]
        let result = try await tollgate(withStore)
        #expect(result.status == 1)
        #expect(result.stdout.isEmpty)
        #expect(result.stderr.hasPrefix("tollgate: "), "\(result.stderr)")
        #expect(result.stderr.split(separator: "\n").count == 1, "one line, no log line before it: \(result.stderr)")
        #expect(result.stderr.contains(hint), "\(result.stderr)")
        #expect(!result.stderr.contains("''"), "no doubled quotes")
    }

    /// `--help` names every store URL scheme.
    @Test func helpNamesEveryStore() async throws {
        let help = try await tollgate(["--help"])
        #expect(help.status == 0)
        for scheme in ["sqlite:PATH", "redis://", "memory:"] { #expect(help.stdout.contains(scheme), "\(scheme)") }
    }
}
