import ArgumentParser
import Foundation
import NIOCore
import TollgateCore

/// Runs a command body, turning a ``TollgateError`` into one line on stderr and exit 1.
func reportingErrors(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let error as TollgateError {
        printError(error.message)
        throw ExitCode.failure
    } catch let error as IOError where error.errnoCode == EADDRINUSE {
        printError("an address is in use (\(error)): choose another --port or --admin-port, or stop what listens there")
        throw ExitCode.failure
    }
}

/// Writes a line to stdout at once, unbuffered: a supervisor or test reading a running
/// server's output sees it without waiting for a buffer to fill.
func emit(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

func printError(_ message: String) {
    FileHandle.standardError.write(Data("tollgate: \(message)\n".utf8))
}

/// Prints one JSON document on stdout, as every `--json` output is.
func printJSON(_ value: some Encodable) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    let data = try encoder.encode(value)
    FileHandle.standardOutput.write(data + Data("\n".utf8))
}

/// A new key as `keys create --json` prints it: the listing fields and the secret.
struct CreatedKey: Encodable {
    var report: KeyReport
    var key: String

    enum CodingKeys: String, CodingKey { case key }

    func encode(to encoder: any Encoder) throws {
        try report.encode(to: encoder)
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(key, forKey: .key)
    }
}

/// Prints rows under a header in columns as wide as their widest cell, two spaces apart.
func printTable(_ header: [String], _ rows: [[String]]) {
    var widths = header.map(\.count)
    for row in rows {
        for (column, cell) in row.enumerated() { widths[column] = max(widths[column], cell.count) }
    }
    for row in [header] + rows {
        let cells = row.enumerated().map { column, cell in
            column == row.count - 1 ? cell : cell + String(repeating: " ", count: widths[column] - cell.count + 2)
        }
        print(cells.joined())
    }
}
