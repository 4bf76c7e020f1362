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
    func putWhole(_ key: String, _ body: ByteBuffer, metadata: [String: String], options: WriteOptions) async throws -> WriteOutcome
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
        let parts = PartReader(source, size: partSize)
        // The caller's check ran while the part was read; nothing is sent before it says so.
        // Bound straight to a var: a second binding (a `let` copied into a var) would pin the first
        // part's storage until the whole object is uploaded, whatever the box below does (that
        // cost 16 MiB of peak RSS in S3 backup-push, four partitions each pinning ~5 MiB).
        guard case (var first, let ended, let firstHold)? = try await readFirstPart(parts, options: options, budget: budget) else {
            return .alreadyExists
        }
        if ended {
            defer { first = ByteBuffer() }
            do {
                let metadata = options.metadata.merging(options.lateMetadata?.value() ?? [:]) { $1 }
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
            let metadata = options.metadata.merging(options.lateMetadata?.value() ?? [:]) { $1 }
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

/// The first part of an upload, read under the memory budget: the whole
/// object if it ends within a part plus a little slack (or within the size the caller expects, up
/// to 16 MiB: a WAL segment lzop could not shrink), with `held` bytes of budget taken for it.
/// nil, with nothing held, when the caller's gate (its existence check, run while the part was
/// read) says not to write.
func readFirstPart(
    _ parts: PartReader, options: WriteOptions, budget: ByteBudget
) async throws -> (bytes: ByteBuffer, ended: Bool, held: Int)? {
    let size = parts.size
    let hinted = min(Int(clamping: options.sizeHint ?? 0), 16 << 20)
    let slack = max(size, hinted) + (1 << 20) - size
    let held = min(size + slack, budget.capacity)
    await budget.acquire(held)
    do {
        let (first, ended) = try await parts.first(slack: slack)
        if let gate = options.gate, try await !gate.mayProceed() {
            await budget.release(held)
            return nil
        }
        return (first, ended, held)
    } catch {
        await budget.release(held)
        throw error
    }
}

