import Foundation
import TollgateCore

/// A `keys import` file, read in chunks of whole lines so that a large one is never held
/// whole. Standard input is copied to an unlinked temporary file first, because an import
/// reads its input twice: once to check every line, then to store.
final class ImportFile: Sendable {
    /// How the file is named in messages: its path, quoted, or "standard input".
    let name: String
    private let descriptor: Int32
    /// Size and modification time when opened, to notice a file changed between the passes.
    private let identity: (size: Int64, modified: timespec)

    init(path: String) throws(TollgateError) {
        if path == "-" {
            name = "standard input"
            descriptor = try Self.spoolStandardInput()
        } else {
            name = TollgateError.quote(path, limit: 1024)
            descriptor = open(path, O_RDONLY | O_CLOEXEC)
            guard descriptor >= 0 else {
                throw TollgateError(.invalidInput, "cannot read \(name): check the path and its permissions")
            }
        }
        guard let identity = Self.identity(descriptor) else {
            close(descriptor)
            throw TollgateError(.invalidInput, "cannot read \(name): check the path and its permissions")
        }
        self.identity = identity
    }

    deinit { close(descriptor) }

    /// Whether the file still has the size and modification time it had when opened.
    var isUnchanged: Bool {
        guard let now = Self.identity(descriptor) else { return false }
        return now.size == identity.size && now.modified.tv_sec == identity.modified.tv_sec
            && now.modified.tv_nsec == identity.modified.tv_nsec
    }

    /// Reads the file from its start, a chunk of whole lines at a time.
    func lines(chunkSize: Int = 4 << 20) -> LineChunks {
        LineChunks(file: self, chunkSize: chunkSize)
    }

    fileprivate func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) throws(TollgateError) -> Int {
        while true {
            let count = pread(descriptor, buffer.baseAddress, buffer.count, off_t(offset))
            if count >= 0 { return count }
            if errno != EINTR {
                throw TollgateError(.invalidInput, "cannot read \(name): \(String(cString: strerror(errno)))")
            }
        }
    }

    private static func identity(_ descriptor: Int32) -> (size: Int64, modified: timespec)? {
        var status = stat()
        guard fstat(descriptor, &status) == 0 else { return nil }
        return (Int64(status.st_size), status.st_mtim)
    }

    private static func spoolStandardInput() throws(TollgateError) -> Int32 {
        let directory = ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        var template = Array((directory + "/tollgate-import-XXXXXX").utf8CString)
        let descriptor = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard descriptor >= 0 else {
            throw TollgateError(
                .invalidInput,
                "cannot keep standard input in a temporary file in \(TollgateError.quote(directory)): set TMPDIR to a writable directory, or give the file's path instead of -"
            )
        }
        // Gone from the directory at once: only this process can read or change it.
        template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 1)
        defer { buffer.deallocate() }
        while true {
            let count = Foundation.read(0, buffer.baseAddress, buffer.count)
            if count == 0 { return descriptor }
            if count < 0 {
                if errno == EINTR { continue }
                close(descriptor)
                throw TollgateError(.invalidInput, "cannot read standard input: \(String(cString: strerror(errno)))")
            }
            var written = 0
            while written < count {
                let result = write(descriptor, buffer.baseAddress! + written, count - written)
                if result < 0 {
                    if errno == EINTR { continue }
                    close(descriptor)
                    throw TollgateError(
                        .invalidInput,
                        "cannot keep standard input in a temporary file in \(TollgateError.quote(directory)) (\(String(cString: strerror(errno)))): free some space or set TMPDIR, or give the file's path instead of -"
                    )
                }
                written += result
            }
        }
    }
}

/// Whole lines of an ``ImportFile``, a chunk at a time, each line numbered from 1 as a text
/// editor numbers it (an empty last piece after the final newline counts, as a blank line).
struct LineChunks {
    /// The bytes of some whole lines, and where each starts and ends in them (no newline).
    struct Chunk {
        var bytes: [UInt8]
        var lines: [Range<Int>]
        /// The number of `lines[0]`.
        var firstLine: Int
    }

    private let file: ImportFile
    private let chunkSize: Int
    private var offset: Int64 = 0
    /// The start of a line the last chunk could not finish.
    private var carry: [UInt8] = []
    private var nextLine = 1
    private var finished = false

    fileprivate init(file: ImportFile, chunkSize: Int) {
        self.file = file
        self.chunkSize = chunkSize
    }

    /// The next chunk, or `nil` after the last line. A line longer than a chunk makes a
    /// chunk of its own, as long as the line.
    mutating func next() throws(TollgateError) -> Chunk? {
        guard !finished else { return nil }
        var bytes = carry
        carry = []
        var atEnd = false
        while true {
            let start = bytes.count
            bytes.reserveCapacity(start + chunkSize)
            bytes.append(contentsOf: repeatElement(0, count: chunkSize))
            let result = bytes.withUnsafeMutableBytes { buffer in
                Result { () throws(TollgateError) -> Int in
                    try file.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[start...]), at: offset)
                }
            }
            let read = try result.get()
            bytes.removeLast(chunkSize - read)
            offset += Int64(read)
            atEnd = read == 0
            // Stop at a chunk that holds a newline, or at the end of the file.
            if atEnd || bytes[start...].contains(UInt8(ascii: "\n")) { break }
        }
        var lines: [Range<Int>] = []
        var lineStart = 0
        for index in bytes.indices where bytes[index] == UInt8(ascii: "\n") {
            lines.append(lineStart..<index)
            lineStart = index + 1
        }
        if atEnd {
            lines.append(lineStart..<bytes.count)
            finished = true
        } else {
            carry = Array(bytes[lineStart...])
            bytes.removeSubrange(lineStart...)
        }
        let chunk = Chunk(bytes: bytes, lines: lines, firstLine: nextLine)
        nextLine += lines.count
        return chunk
    }
}
