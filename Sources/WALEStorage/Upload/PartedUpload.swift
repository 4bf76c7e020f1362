import NIOCore
import WALECore

/// A store that writes large objects in parts (S3 multipart, Azure blocks, Swift SLO segments,
/// GCS resumable chunks). It supplies the requests; `partedWrite` supplies everything else: the
/// existence gate, the first part read under the memory budget, one request when the object fits
/// it (so metadata known only at the end goes with it), the parts in flight under the budget,
/// and the abort on failure.
protocol PartedUploadTarget: ObjectStore {
    associatedtype Session: PartSession
    /// Bytes per part (the last one fewer).
    var partSize: Int { get }
    var partsInFlight: Int { get }
    /// Upload bytes buffered in memory at once, across every upload of this store.
    var budget: ByteBudget { get }
    /// The whole object in one request; `metadata` includes the late metadata. With
    /// `options.ifAbsent` it is created only if absent (`.alreadyExists` otherwise).
    func putWhole(_ key: String, _ body: any RequestBody, metadata: [String: String], options: WriteOptions) async throws -> WriteOutcome
    /// Starts a parted upload (`options.metadata` only: the late metadata is not known yet).
    func begin(_ key: String, options: WriteOptions) async throws -> Session
}

protocol PartSession: Sendable {
    associatedtype Part: Sendable
    /// Uploads part `number` (from 1); each part is retried on its own by the store.
    func put(part number: Int, _ body: ByteBuffer) async throws -> Part
    /// Makes the object visible from its parts in order; `metadata` includes the late metadata
    /// (for stores that can set it here).
    func commit(_ parts: [Part], metadata: [String: String]) async throws -> WriteOutcome
    /// Removes what an unfinished upload left (best effort; never throws).
    func abort() async
}

extension PartedUploadTarget {
    /// See `PartedUploadTarget`.
    func partedWrite(_ key: String, from source: any ByteSource, options: WriteOptions) async throws -> WriteOutcome {
        if options.ifAbsent, options.gate == nil, try await info(key) != nil { return .alreadyExists }
        var (source, options) = (source, options)
        if let directory = options.spoolDirectory, let spool = SpoolFile(directory: directory) {
            switch try await spoolWhole(source, into: spool, options: options) {
            case .refused:
                return .alreadyExists
            case .spooled(let metadata) where spool.byteCount <= singleRequestLimit(partSize: partSize, options: options):
                return try await putWhole(key, spool, metadata: options.metadata.merging(metadata) { $1 }, options: options)
            case .spooled:
                // Larger than one request (not a WAL file): its parts are read back from the
                // file under the memory budget as usual; the gate has spoken.
                (source, options.gate, options.reread) = (spool.source(), nil, nil)
            case .failed(let error):
                // The disk could not take it (full, say): in memory after all, from the start.
                guard let reread = options.reread else { throw error }
                let again = try reread()
                (source, options.lateMetadata) = (again.source, again.lateMetadata)
            }
        }
        var parts = PartReader(source, size: partSize)
        var lateMetadata = options.lateMetadata
        // The caller's check ran while the part was read; nothing is sent before it says so.
        // Bound straight to a var: a second binding (a `let` copied into a var) would pin the first
        // part's storage until the whole object is uploaded, whatever the box below does (that
        // cost 16 MiB of peak RSS in S3 backup-push, four partitions each pinning ~5 MiB).
        var read = try await readFirstPart(parts, options: options, budget: budget, growing: options.reread != nil)
        if case .short = read, let reread = options.reread {
            // Memory ran short while a body that can be read again grew: once more from the
            // start, holding the most it can need (waited for while holding nothing).
            let again = try reread()
            (parts, lateMetadata) = (PartReader(again.source, size: partSize), again.lateMetadata)
            read = try await readFirstPart(parts, options: options, budget: budget, growing: false)
        }
        guard case .read(var first, let ended, let firstHold) = read else {
            return .alreadyExists
        }
        read = .refused  // or it would pin the first part's storage as well
        if ended {
            defer { first = ByteBuffer() }
            do {
                let metadata = options.metadata.merging(lateMetadata?.value() ?? [:]) { $1 }
                let outcome = try await putWhole(key, first, metadata: metadata, options: options)
                await budget.release(firstHold)
                return outcome
            } catch {
                await budget.release(firstHold)
                throw error
            }
        }
        // Keep only the first part's share: an upload never holds budget while it waits for more
        // (only parts in flight hold it, and they finish on their own), so uploads cannot deadlock.
        // The carried-over slack (at most 1 MiB past a part, more only for a known-size WAL file
        // above 16 MiB) is briefly outside the count.
        await budget.release(max(0, firstHold - partSize))
        let session: Session
        do {
            session = try await begin(key, options: options)
        } catch {
            await budget.release(partSize)
            throw error
        }
        // Handed over in a box: this frame's copy would otherwise pin the first part's storage
        // until the whole object is uploaded.
        let box = PartBox(first)
        first = ByteBuffer()
        do {
            let uploaded = try await putParts(session, first: box, parts: parts)
            let metadata = options.metadata.merging(lateMetadata?.value() ?? [:]) { $1 }
            return try await session.commit(uploaded, metadata: metadata)
        } catch {
            await session.abort()
            throw error
        }
    }

    /// The parts (the first one given, the rest read from `parts`), several in flight, each
    /// holding its share of the budget until it is uploaded; their answers in part order.
    private func putParts(_ session: Session, first: PartBox, parts: PartReader) async throws -> [Session.Part] {
        let budget = self.budget
        let held = partSize
        var done: [(Int, Session.Part)] = []
        try await withThrowingTaskGroup(of: (Int, Session.Part).self) { group in
            var number = 1
            var inFlight = 0
            var part: ByteBuffer? = first.take()
            // No binding of the part's buffer: one would live on through the wait for budget and
            // the read of the next part, an extra part per upload beyond the budget.
            while let size = part?.readableBytes, size > 0 {
                if inFlight >= partsInFlight {
                    do {
                        if let d = try await group.next() {
                            done.append(d)
                            inFlight -= 1
                        }
                    } catch {
                        await budget.release(held)  // this part never went up
                        throw error
                    }
                }
                let n = number
                // The task takes the buffer out of the box, so it is freed when the part is done,
                // before its budget is given back (a finished child task's captures can live until
                // the group collects it).
                let box = PartBox(part!)
                part = nil
                group.addTask {
                    do {
                        let answer = try await session.put(part: n, box.take())
                        await budget.release(held)
                        return (n, answer)
                    } catch {
                        await budget.release(held)
                        throw error
                    }
                }
                inFlight += 1
                number += 1
                await budget.acquire(held)
                let next: ByteBuffer
                do { next = try await parts.next() } catch {
                    await budget.release(held)
                    throw error
                }
                if next.readableBytes == 0 { await budget.release(held) }
                part = next.readableBytes == 0 ? nil : next
            }
            for try await d in group { done.append(d) }
        }
        return done.sorted { $0.0 < $1.0 }.map(\.1)
    }
}

/// What spooling a body to a file gave.
enum Spooled {
    /// All of it, with its late metadata.
    case spooled([String: String])
    /// The caller's gate said not to write.
    case refused
    /// Writing the file failed; the source is partly read.
    case failed(WALEError)
}

/// Reads the whole body into `spool`, then asks the caller's gate (as `readFirstPart` does once the
/// bytes are ready). A failure to read the source is thrown; a failure to write the file is
/// returned, so that the caller can start again in memory.
func spoolWhole(_ source: any ByteSource, into spool: SpoolFile, options: WriteOptions) async throws -> Spooled {
    while let chunk = try await source.next() {
        do { try spool.append(chunk) } catch let e as WALEError { return .failed(e) }
    }
    if let gate = options.gate, try await !gate.mayProceed() { return .refused }
    return .spooled(options.lateMetadata?.value() ?? [:])
}

/// The most bytes an object may have to go up in one request: a part and 1 MiB, or the size the
/// caller expects (up to 16 MiB: a WAL segment lzop could not shrink) and 1 MiB.
func singleRequestLimit(partSize: Int, options: WriteOptions) -> Int {
    max(partSize, min(Int(clamping: options.sizeHint ?? 0), 16 << 20)) + (1 << 20)
}

/// What reading the first part of an upload gave.
enum FirstPart {
    /// The bytes (the whole object if `ended`), with `held` bytes of budget taken for them.
    case read(ByteBuffer, ended: Bool, held: Int)
    /// The caller's gate said not to write; nothing held.
    case refused
    /// Growing, the body needed memory that was not free; nothing held, the bytes read dropped.
    case short
}

/// The first part of an upload, read under the memory budget: the whole object if it ends within
/// a part plus a little slack (or within the size the caller expects, up to 16 MiB: a WAL segment
/// lzop could not shrink).
///
/// By default the most that can be needed is taken before reading. `growing` (a body that can be
/// read again): one part and 1 MiB are taken first and more only as the bytes arrive, if free at
/// once. A WAL segment after lzop is anything from a few hundred KB (a switched, mostly empty one)
/// to 16 MiB (random data; the benchmark's pgbench WAL is ~10.8 MB), so segments that compress
/// well are sent several at once where the most (17 MiB) would take the whole budget. Waiting for more while holding some could deadlock
/// uploads that all grow, so when none is free the answer is `.short` and the caller starts again
/// without growing.
func readFirstPart(_ parts: PartReader, options: WriteOptions, budget: ByteBudget, growing: Bool) async throws -> FirstPart {
    let size = parts.size
    let slack = singleRequestLimit(partSize: size, options: options) - size
    let most = min(size + slack, budget.capacity)
    var held = growing ? min(most, size + (1 << 20)) : most
    await budget.acquire(held)
    do {
        let read = try await parts.first(slack: slack) { bytes in
            guard bytes > held, held < most else { return true }
            let more = min(most, (bytes + (1 << 20) - 1) & ~((1 << 20) - 1)) - held
            guard await budget.tryAcquire(more) else { return false }
            held += more
            return true
        }
        guard let (first, ended) = read else {
            await budget.release(held)
            return .short
        }
        if let gate = options.gate, try await !gate.mayProceed() {
            await budget.release(held)
            return .refused
        }
        return .read(first, ended: ended, held: held)
    } catch {
        await budget.release(held)
        throw error
    }
}
