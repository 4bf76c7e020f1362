#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import Testing
@testable import WALEEngine

/// Commands run on BlockingExecutor so that pipelines blocked in system calls do not hold the
/// cooperative pool (one thread per core) away from each other.
@Suite struct BlockingExecutorTests {
    /// Twelve tasks that each block until all twelve are running at once: on the cooperative
    /// pool of a small machine they could not all run, here each gets a thread.
    @Test func blockedTasksDoNotStarveEachOther() async {
        let executor = BlockingExecutor(maxThreads: 64)
        let width = 12
        final class Counter: Sendable { let value = Atomic<Int>(0) }
        let arrived = Counter()
        let met = await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<width {
                group.addTask(executorPreference: executor) {
                    arrived.value.add(1, ordering: .sequentiallyConsistent)
                    // Blocks the thread (no suspension point), for at most 10 s.
                    for _ in 0..<10_000 where arrived.value.load(ordering: .sequentiallyConsistent) < width { usleep(1000) }
                    return arrived.value.load(ordering: .sequentiallyConsistent) >= width
                }
            }
            var all = true
            for await ok in group { all = all && ok }
            return all
        }
        #expect(met)
        #expect(executor.threadCount >= width)
    }

    /// Threads are made only when every thread is busy: jobs that finish one after another reuse one.
    @Test func threadsAreReused() async {
        let executor = BlockingExecutor(maxThreads: 64)
        for i in 0..<50 {
            let r = await withTaskGroup(of: Int.self) { group in
                group.addTask(executorPreference: executor) { i * 2 }
                return await group.next()!
            }
            #expect(r == i * 2)
            // The job's result can arrive before its thread is back waiting for work (on a busy
            // machine, long before): wait for that, then the next job must reuse it.
            var spins = 0
            while executor.idleThreadCount < executor.threadCount && spins < 5000 {
                usleep(1000)
                spins += 1
            }
        }
        #expect(executor.threadCount == 1)
    }

    /// Child tasks inherit the preference (main.swift sets it once for the whole command).
    @Test func childTasksInheritThePreference() async {
        let executor = BlockingExecutor(maxThreads: 4)
        let onPool = await withTaskExecutorPreference(executor) {
            await withTaskGroup(of: Bool.self) { group in
                for _ in 0..<3 { group.addTask { executor.ownsCurrentThread } }
                return await group.reduce(true) { $0 && $1 }
            }
        }
        #expect(onPool)
        #expect(executor.threadCount >= 1)
    }
}
