#if canImport(Glibc)
import Glibc
#endif

/// Opens the next few files of a list before a reader gets to them and asks the kernel to read
/// them into the page cache (`POSIX_FADV_WILLNEED`), so that a cold cache serves many small files
/// with many reads in flight instead of one random read at a time (docs/design.md, "Small files
/// read ahead").
///
/// The reader calls `take(i)` for each file in order and gets the descriptor opened ahead, or nil
/// when it was not (the file was not to be read ahead, or opening it failed): then it opens the
/// file itself and handles the error as before, so reading ahead changes no outcome. Which files
/// are read ahead is the caller's choice (`path(i)` returns nil for the others). At most `depth`
/// descriptors are open at once; `closeAll` (or dropping the value through its owner's deinit)
/// closes those never taken.
public struct OpenAhead {
    /// Files opened ahead of the reader: 64 gained little over 32 (design.md), and a partition
    /// source holds at most this many descriptors.
    public static let defaultDepth = 32

    /// Whether a file of `size` bytes is one to read ahead: not empty, and below ColdFileReader's
    /// window (smaller files are read through the cache anyway; larger ones are judged window by
    /// window, which a read-ahead would spoil).
    public static func isSmall(_ size: Int64) -> Bool { size > 0 && size < ColdFileReader.window }

    private var slots: [Int32]
    /// Files below `filled` have been opened ahead (or passed over); those below `passed`
    /// taken or skipped by the reader.
    private var filled = 0
    private var passed = 0
    private let path: (Int) -> String?
    private let count: Int

    /// `count` files; `path(i)` is the i-th file's path when it should be read ahead.
    public init(count: Int, depth: Int = OpenAhead.defaultDepth, path: @escaping (Int) -> String?) {
        self.count = count
        self.path = path
        slots = [Int32](repeating: -1, count: max(1, depth))
    }

    /// The descriptor of file `index` if it was opened ahead (the caller owns it now), after
    /// opening the files up to `depth` ahead of it.
    public mutating func take(_ index: Int) -> Int32? {
        let depth = slots.count
        for skipped in passed..<max(passed, min(index, filled)) { release(skipped % depth) }
        passed = max(passed, index + 1)
        filled = max(filled, index)
        while filled < min(count, index + depth) {
            let slot = filled % depth
            release(slot)
            if let p = path(filled) {
                // Non-blocking, so a FIFO where a file was expected cannot hang the open (it has no
                // effect on a regular file); anything but a regular file is left to the reader.
                let f = open(p, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
                var st = stat()
                if f >= 0 && fstat(f, &st) == 0 && st.st_mode & S_IFMT == S_IFREG {
                    _ = posix_fadvise(f, 0, 0, Int32(POSIX_FADV_WILLNEED))
                    slots[slot] = f
                } else if f >= 0 {
                    close(f)
                }
            }
            filled += 1
        }
        guard index < filled, slots[index % depth] >= 0 else { return nil }
        defer { slots[index % depth] = -1 }
        return slots[index % depth]
    }

    private mutating func release(_ slot: Int) {
        if slots[slot] >= 0 { close(slots[slot]) }
        slots[slot] = -1
    }

    /// How many descriptors it holds (opened ahead, not yet taken).
    var held: Int { slots.lazy.filter { $0 >= 0 }.count }

    /// Closes every descriptor opened ahead and not taken.
    public mutating func closeAll() {
        for i in slots.indices { release(i) }
    }
}
